// npm run bench:pg-masking — the gateway's upstream → client path alone, without a database or sockets: a
// synthetic result like bench/postgres.ts's masking run (rows of id, name, ssn, email, city; ssn `partial`,
// email `hash`) is fed through a ProxySession in 64 KiB chunks, as a server's socket delivers it. Prints one
// JSON line of nanoseconds per row for a masked SELECT, the same SELECT unmasked, and a masked COPY TO STDOUT.
// The client side is a real loopback socket (Node's stream costs count) read by a sink that discards.
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { fakeSession, rowDescription } from "../test/helpers/pg-session.js";

const ROWS = Number(process.env.BENCH_ROWS ?? 1_000_000);
const CHUNK = 64 * 1024;
const OID = 16384;
const COLUMNS = ["id", "name", "ssn", "email", "city"];
const masks = [
  { field: "public.bench_people.ssn", strategy: "partial" as const },
  { field: "public.bench_people.email", strategy: "hash" as const },
];
const origins = Object.fromEntries(COLUMNS.map((c, i) => [`${OID}/${i + 1}`, `public.bench_people.${c}`]));

function values(g: number): string[] {
  return [String(g), `name ${g}`, String(g).padStart(9, "0"), `user${g}@example.com`, `city ${g % 100}`];
}

/** ROWS DataRows (or CopyData text rows) followed by CommandComplete and ReadyForQuery, as one buffer. */
function stream(copy: boolean): Buffer {
  const parts: Buffer[] = [];
  let block = Buffer.allocUnsafe(1 << 20);
  let pos = 0;
  const room = (n: number) => {
    if (pos + n <= block.length) return;
    parts.push(block.subarray(0, pos));
    block = Buffer.allocUnsafe(1 << 20);
    pos = 0;
  };
  for (let g = 1; g <= ROWS; g++) {
    const vals = values(g);
    room(256);
    const start = pos;
    if (copy) {
      block[pos] = 0x64;
      pos += 5;
      pos += block.write(`${vals.join("\t")}\n`, pos);
    } else {
      block[pos] = 0x44;
      block.writeInt16BE(vals.length, pos + 5);
      pos += 7;
      for (const v of vals) {
        const n = block.write(v, pos + 4);
        block.writeInt32BE(n, pos);
        pos += 4 + n;
      }
    }
    block.writeInt32BE(pos - start - 1, start + 1);
  }
  parts.push(block.subarray(0, pos));
  const tag = `${copy ? "COPY" : "SELECT"} ${ROWS}\0`;
  const cc = Buffer.alloc(5 + tag.length);
  cc[0] = 0x43;
  cc.writeInt32BE(4 + tag.length, 1);
  cc.write(tag, 5);
  parts.push(cc, Buffer.from([0x5a, 0, 0, 0, 5, 0x49]));
  return Buffer.concat(parts);
}

function copyOutResponse(): Buffer {
  const b = Buffer.alloc(8 + 2 * COLUMNS.length);
  b[0] = 0x48;
  b.writeInt32BE(b.length - 1, 1);
  b.writeInt16BE(COLUMNS.length, 6);
  return b;
}

/** A loopback connection whose far end discards; `done` resolves once a ReadyForQuery frame ends a read. */
async function sinkSocket(): Promise<{ socket: Socket; done: Promise<number>; close: () => void }> {
  let received = 0;
  let finish: (n: number) => void = () => {};
  const done = new Promise<number>((r) => {
    finish = r;
  });
  const server = createServer((peer) => {
    peer.on("data", (c: Buffer) => {
      received += c.length;
      const n = c.length;
      if (n >= 6 && c[n - 6] === 0x5a && c.readInt32BE(n - 5) === 5) finish(received);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const socket = connect((server.address() as { port: number }).port, "127.0.0.1");
  await once(socket, "connect");
  return {
    socket,
    done,
    close: () => {
      socket.destroy();
      server.close();
    },
  };
}

async function run(label: string, withMasks: boolean, copy: boolean): Promise<number> {
  const sink = await sinkSocket();
  const s = await fakeSession({
    masks: withMasks ? masks : [],
    origins,
    tables: { "public.bench_people": COLUMNS.map((c) => `public.bench_people.${c}`) },
    clientSocket: sink.socket,
  });
  await s.query(
    copy ? "COPY public.bench_people TO STDOUT" : `SELECT ${COLUMNS.join(", ")} FROM bench_people`,
  );
  const head = copy
    ? copyOutResponse()
    : rowDescription(
        COLUMNS.map((name, i) => ({ name, tableOid: OID, column: i + 1, typeOid: i ? 25 : 23 })),
      );
  await s.fromServer(head);
  const body = stream(copy);
  const start = process.hrtime.bigint();
  for (let o = 0; o < body.length; o += CHUNK) {
    // Backpressure as a real server socket has it: no reads while the proxy has paused it.
    if (s.upstream.paused) await once(s.upstream, "resume");
    s.upstream.emit("data", body.subarray(o, o + CHUNK));
  }
  const received = await Promise.race([
    sink.done,
    new Promise<number>((_, reject) => {
      setTimeout(
        () => reject(new Error(`${label}: no ReadyForQuery reached the client in 60 s`)),
        60_000,
      ).unref();
    }),
  ]);
  const ns = Number(process.hrtime.bigint() - start);
  if (received < body.length * 0.8) throw new Error(`${label}: only ${received} bytes out`);
  s.session.close("bench done");
  sink.close();
  return Math.round(ns / ROWS);
}

const result: Record<string, unknown> = { bench: "pg-masking", rows: ROWS, chunk: CHUNK };
// Warm up (JIT), then measure.
await run("warm-up", true, false);
result.select_masked_ns_per_row = await run("select masked", true, false);
result.select_unmasked_ns_per_row = await run("select unmasked", false, false);
result.copy_masked_ns_per_row = await run("copy masked", true, true);
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
