// The quick start's database: PGlite (PostgreSQL compiled to wasm) behind its socket server on loopback,
// seeded with the demo schema. No server to install — but a demo only: for real targets configure a resource.
import { readFile } from "node:fs/promises";
import { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

export interface EmbeddedDatabase {
  host: string;
  port: number;
  stop(): Promise<void>;
}

export async function startEmbeddedDatabase(opts: { port?: number } = {}): Promise<EmbeddedDatabase> {
  const db = await PGlite.create();
  await db.exec(await readFile(new URL("./seed.sql", import.meta.url), "utf8"));
  const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: opts.port ?? 0, maxConnections: 32 });
  await server.start();
  const { port } = (server as unknown as { server: { address(): { port: number } } }).server.address();
  return {
    host: "127.0.0.1",
    port,
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}
