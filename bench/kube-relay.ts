// The floor for bench:kubernetes: a bare HTTPS relay in Node in front of the API server, with the same keep-alive
// agent and credentials the gateway uses, and nothing else — no token check, attributes, policy, impersonation,
// audit record or masking. What pamgate costs beyond it is pamgate's. It authenticates nobody: bench only.
import { Agent, createServer, request } from "node:https";
import { pipeline } from "node:stream";
import type { KubeApiServer } from "../test/helpers/kube-apiserver.js";

export async function startKubeRelay(api: KubeApiServer): Promise<{ port: number; close(): Promise<void> }> {
  const serving = api.issueServingCert("bench-relay");
  const agent = new Agent({
    keepAlive: true,
    ca: api.caPem,
    cert: api.admin.certPem,
    key: api.admin.keyPem,
    maxSockets: 256,
  });
  const server = createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    const headers = { ...req.headers };
    delete headers.host;
    delete headers.connection;
    const up = request(
      { host: api.host, port: api.port, method: req.method, path: req.url, headers, agent },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        pipeline(upRes, res, () => {});
      },
    );
    up.on("error", () => res.destroy());
    pipeline(req, up, () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise((resolve) => {
        agent.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
