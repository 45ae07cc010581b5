// The cluster behind a kubernetes resource, reached with the gateway's own credentials from a kubeconfig loaded by
// @kubernetes/client-node's KubeConfig (client certificates, bearer tokens, exec plugins, CA data — whatever the
// file says). Each forwarded request is sent as the gateway, impersonating the verified requester.
import { Agent, type RequestOptions } from "node:https";
import { KubeConfig } from "@kubernetes/client-node";
import { errorText } from "../../util/errors.js";
import type { KubernetesUpstreamConfig } from "./config.js";

/** How long credentials from the kubeconfig are reused before KubeConfig is asked again (exec plugins refresh). */
const CREDENTIALS_TTL_MS = 60_000;

export class KubeUpstream {
  readonly server: URL;
  private readonly kc = new KubeConfig();
  private cached: { at: number; options: Promise<RequestOptions> } | null = null;
  /** Keep-alive connections to the API server, shared by every client's requests. */
  private agent: Agent | null = null;

  constructor(
    readonly name: string,
    config: KubernetesUpstreamConfig,
  ) {
    try {
      this.kc.loadFromFile(config.kubeconfig);
      if (config.context) this.kc.setCurrentContext(config.context);
    } catch (err) {
      throw new Error(`resource ${name}: cannot load kubeconfig ${config.kubeconfig}: ${errorText(err)}`);
    }
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new Error(`resource ${name}: kubeconfig ${config.kubeconfig} has no current cluster`);
    this.server = new URL(cluster.server);
    if (this.server.protocol !== "https:")
      throw new Error(`resource ${name}: the cluster server ${cluster.server} is not https`);
  }

  /**
   * TLS settings and headers (Authorization) for a request to the API server, with the keep-alive agent; or, for
   * an upgrade (exec, attach, port-forward: the socket is handed over, never reused), without one.
   */
  async requestOptions(upgrade = false): Promise<RequestOptions> {
    const now = Date.now();
    if (!this.cached || now - this.cached.at > CREDENTIALS_TTL_MS) {
      const options = (async () => {
        const o: RequestOptions = {};
        await this.kc.applyToHTTPSOptions(o);
        const tls = { ca: o.ca, cert: o.cert, key: o.key, rejectUnauthorized: o.rejectUnauthorized };
        this.agent?.destroy();
        this.agent = new Agent({ ...tls, keepAlive: true, maxSockets: 256 });
        return { ...tls, headers: { ...(o.headers ?? {}) }, auth: o.auth };
      })();
      this.cached = { at: now, options };
      options.catch(() => {
        this.cached = null;
      });
    }
    const base = await this.cached.options;
    return {
      ...base,
      protocol: "https:",
      hostname: this.server.hostname,
      port: this.server.port || 443,
      ...(upgrade ? { agent: false } : { agent: this.agent ?? undefined }),
    };
  }

  /** The API server's path for a client path (the kubeconfig's server URL may have a path prefix). */
  path(clientPath: string): string {
    const prefix = this.server.pathname.replace(/\/$/, "");
    return prefix + clientPath;
  }

  close(): void {
    this.agent?.destroy();
    this.agent = null;
  }
}
