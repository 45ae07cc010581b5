// Bytes between the client's channel and the target's, with backpressure both ways (a side that stops reading
// pauses the other, so a slow client holds memory flat), EOF and close in both directions, and the exit status or
// signal passed back as the target reported it. Observers see every chunk (recordings); they never hold data up.
import type { Duplex, Readable, Writable } from "node:stream";
import type { ClientChannel, ServerChannel } from "ssh2";

export interface RelayObservers {
  /** client → target (stdin, keystrokes) */
  input?(data: Buffer): void;
  /** target → client, stdout */
  output?(data: Buffer): void;
  /** target → client, stderr */
  stderr?(data: Buffer): void;
}

export interface RelayEnd {
  code: number | null;
  signal: string | null;
}

/** Copies `from` to `to` with backpressure; `observe` sees each chunk first. */
export function pump(from: Readable, to: Writable, observe?: (data: Buffer) => void): void {
  from.on("data", (data: Buffer) => {
    observe?.(data);
    if (!to.write(data)) {
      from.pause();
      to.once("drain", () => from.resume());
    }
  });
  from.resume(); // the client channel is paused until its decision (session-channel.ts)
}

/**
 * Relays a session channel (exec, shell, subsystem) until the target closes it or the client goes away.
 * Resolves with how the target's program ended.
 */
export function relaySession(
  client: ServerChannel,
  upstream: ClientChannel,
  observers: RelayObservers = {},
): Promise<RelayEnd> {
  pump(client, upstream, observers.input);
  pump(upstream, client, observers.output);
  pump(upstream.stderr, client.stderr, observers.stderr);
  return sessionEnd(client, upstream);
}

/**
 * The end of a session channel relayed by the caller (relaySession, the SFTP relay): the client's EOF goes
 * upstream, the target's exit status or signal comes back, and both channels close. Resolves with how the target's
 * program ended.
 */
export function sessionEnd(client: ServerChannel, upstream: ClientChannel): Promise<RelayEnd> {
  return new Promise((resolve) => {
    const end: RelayEnd = { code: null, signal: null };
    client.on("end", () => upstream.end());
    // The client's side is ended once the target's stdout and stderr have both ended (all their data written to
    // the client) AND its exit status is passed on — in whichever order they come. Not at the exit status alone:
    // sshd sends it as soon as the program exits, which can be before the last of its output (ending there lost
    // that output: an approved exec's whole stdout, once, on a loaded CI machine). Not at EOF alone: ssh2 sends
    // exit-status only on a channel still open for writing, and for a quick `true` the EOF comes first. A target
    // that closes without an exit status is handled by `finish` below.
    let waiting = 3; // stdout EOF, stderr EOF, exit status
    const arrived = () => {
      if (--waiting === 0) client.end();
    };
    upstream.once("end", arrived);
    upstream.stderr.once("end", arrived);
    upstream.once("exit", (code: number | null, signal?: string, core?: boolean, desc?: string) => {
      end.code = code;
      end.signal = signal ?? null;
      if (code !== null) client.exit(code);
      else if (signal) client.exit(signal, Boolean(core), desc ?? "");
      arrived();
    });
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      upstream.close();
      // Close only once what was written has left (end() flushes first), or output would be cut off.
      if (client.writableFinished) client.close();
      else {
        client.once("finish", () => client.close());
        client.end();
      }
      resolve(end);
    };
    upstream.on("close", finish);
    client.on("close", finish);
    upstream.on("error", finish);
    client.on("error", finish);
  });
}

/** Relays a forwarding channel (direct-tcpip): plain bytes both ways. */
export function relayStream(a: Duplex, b: Duplex): Promise<void> {
  return new Promise((resolve) => {
    pump(a, b);
    pump(b, a);
    a.on("end", () => b.end());
    b.on("end", () => a.end());
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      a.destroy();
      b.destroy();
      resolve();
    };
    for (const s of [a, b]) {
      s.on("close", finish);
      s.on("error", finish);
    }
  });
}
