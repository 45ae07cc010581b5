// The small part of oidc-provider (v9, untyped JavaScript; @types/oidc-provider is not installed) that the
// development issuer uses.
declare module "oidc-provider" {
  import type { IncomingMessage, ServerResponse } from "node:http";

  export interface OidcClient {
    clientId: string;
  }

  export interface OidcSession {
    accountId?: string;
    grantIdFor(clientId: string): string | undefined;
    grantIdFor(clientId: string, grantId: string): void;
  }

  export interface OidcContext {
    oidc: {
      client?: OidcClient;
      params?: Record<string, unknown>;
      session?: OidcSession;
    };
    body: unknown;
    status: number;
  }

  export interface ResourceServerInfo {
    scope: string;
    audience?: string;
    accessTokenTTL?: number;
    accessTokenFormat?: "opaque" | "jwt";
    jwt?: { sign?: { alg?: string; kid?: string } };
  }

  export interface ResourceServer {
    identifier(): string;
  }

  export interface AccessToken {
    accountId?: string;
    clientId?: string;
    kind: string;
    jti?: string;
    expiresIn?: number;
    readonly expiration: number;
    resourceServer?: ResourceServer;
    save(): Promise<string>;
  }

  export interface TokenLike {
    kind: string;
    accountId?: string;
    clientId?: string;
  }

  export type Configuration = Record<string, unknown>;

  export interface Grant {
    jti?: string;
    addOIDCScope(scope: string): void;
    addResourceScope(resource: string, scope: string): void;
    save(): Promise<string>;
  }

  export interface InteractionDetails {
    uid: string;
    params: Record<string, unknown>;
    prompt: { name: string };
    session?: { accountId?: string; uid?: string };
  }

  export class Provider {
    constructor(issuer: string, configuration?: Configuration);
    readonly issuer: string;
    proxy: boolean;
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    registerGrantType(
      name: string,
      handler: (ctx: OidcContext) => Promise<void>,
      params?: string | string[] | Set<string>,
      dupes?: string | string[] | Set<string>,
    ): void;
    readonly AccessToken: new (fields: {
      accountId: string;
      client: OidcClient;
      gty?: string;
      scope?: string;
    }) => AccessToken;
    readonly ResourceServer: new (
      identifier: string,
      info: ResourceServerInfo,
    ) => ResourceServer;
    on(event: string, listener: (...args: unknown[]) => void): this;
    readonly Grant: (new (fields: {
      accountId: string;
      clientId: string;
    }) => Grant) & {
      find(id: string): Promise<Grant | undefined>;
    };
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<InteractionDetails>;
    interactionFinished(
      req: IncomingMessage,
      res: ServerResponse,
      result: Record<string, unknown>,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<void>;
  }

  export class OIDCProviderError extends Error {
    constructor(status: number, message: string);
    error_description?: string;
  }

  export const errors: {
    /** Its constructor takes no description: the response always says "grant request is invalid". */
    InvalidGrant: new () => OIDCProviderError;
    /** Any error code, with a description the client sees. */
    CustomOIDCProviderError: new (
      error: string,
      description: string,
    ) => OIDCProviderError;
    InvalidRequest: new (description?: string) => OIDCProviderError;
    InvalidTarget: new (description?: string) => OIDCProviderError;
  };

  export default Provider;
}
