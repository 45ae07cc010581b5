// node-postgres ships its SCRAM client and password hashing under pg/lib/crypto (exported via "./lib/*") but
// without type declarations; these are the parts the upstream connector uses.
declare module "pg/lib/crypto/sasl" {
  interface ScramSession {
    mechanism: string;
    response: string;
    message: string;
    serverSignature?: string;
  }
  const sasl: {
    startSession(mechanisms: string[]): ScramSession;
    continueSession(session: ScramSession | null, password: string, serverData: string): Promise<void>;
    finalizeSession(session: ScramSession | null, serverData: string): void;
  };
  export default sasl;
}

declare module "pg/lib/crypto/utils" {
  const utils: {
    postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string>;
  };
  export default utils;
}
