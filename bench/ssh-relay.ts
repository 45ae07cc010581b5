// The physical floor for bench:ssh: a bare SSH relay built from the same parts as pamgate's SSH gateway (an ssh2
// Server in front, an ssh2 Client to the target, src/proxy/ssh/relay.ts between them) and nothing else: any
// password is accepted, no token check, no policy, no certificate, no audit record, no recording. Whatever pamgate
// costs beyond this is pamgate's; what this costs beyond direct is the second SSH hop in Node. Never use it outside
// the bench: it authenticates nobody.
import { readFileSync } from "node:fs";
import ssh2, { type ClientChannel, type Connection, type ServerChannel } from "ssh2";
import { relaySession } from "../src/proxy/ssh/relay.js";

export interface BareRelay {
  port: number;
  close(): Promise<void>;
}

export interface BareRelayTarget {
  host: string;
  port: number;
  user: string;
  /** A private key the target's sshd authorizes for `user`. */
  privateKeyFile: string;
}

export async function startBareRelay(hostKeyFile: string, target: BareRelayTarget): Promise<BareRelay> {
  const privateKey = readFileSync(target.privateKeyFile);
  const server = new ssh2.Server({ hostKeys: [readFileSync(hostKeyFile)] }, (client: Connection) => {
    client.on("error", () => {});
    client.on("authentication", (ctx) => {
      if (ctx.method === "keyboard-interactive")
        return ctx.prompt([{ prompt: "anything: ", echo: false }], () => ctx.accept());
      if (ctx.method === "password") return ctx.accept();
      ctx.reject(["keyboard-interactive", "password"]);
    });
    client.on("session", (accept) => {
      const session = accept();
      // One upstream connection per session channel, like pamgate (which signs a certificate per channel).
      const upstream =
        (start: (up: ssh2.Client, cb: (err: Error | undefined, ch: ClientChannel) => void) => void) =>
        (acceptChannel: () => ServerChannel) => {
          const channel = acceptChannel();
          channel.pause();
          const up = new ssh2.Client();
          up.on("error", () => channel.close());
          up.on("ready", () =>
            start(up, (err, upChannel) => {
              if (err) {
                channel.exit(255);
                channel.close();
                return up.end();
              }
              void relaySession(channel, upChannel).then(() => up.end());
            }),
          );
          up.connect({ host: target.host, port: target.port, username: target.user, privateKey });
        };
      session.on("exec", (acceptChannel, _reject, info) =>
        upstream((up, cb) => up.exec(info.command, cb))(acceptChannel),
      );
      session.on("subsystem", (acceptChannel, _reject, info) =>
        upstream((up, cb) => up.subsys(info.name, cb))(acceptChannel),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
