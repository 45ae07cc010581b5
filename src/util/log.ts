// Structured logs (pino, the logger fastify uses too) to stderr, so stdout stays free for command output.
import { pino } from "pino";

export type Logger = pino.Logger;

export function createLogger(level = process.env.PAMGATE_LOG_LEVEL ?? "info"): Logger {
  return pino({ level, base: { service: "pamgate" } }, pino.destination(2));
}

/** A logger that drops everything, for tests and library use. */
export const silentLogger: Logger = pino({ level: "silent" });
