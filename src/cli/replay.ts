// `pamgate replay <session-id>`: plays a recorded terminal session in this terminal with its timing (pauses
// capped, --speed to go faster), or prints a statement/request session's transcript as a readable psql-like log
// (its JSON lines with --json). `--cast` prints
// a terminal session as an asciicast v2 file instead (`pamgate replay ID --cast > s.cast; asciinema play s.cast`),
// `--raw` its output exactly as the target sent it, byte for byte, without timing (`pamgate replay ID --raw > out`;
// bytes that were not UTF-8 are U+FFFD in the .cast, and exact here).
import { spoolRecords } from "../audit/reader.js";
import {
  castFile,
  loadRecording,
  playTerminal,
  postgresRecordingRecords,
  recordedBytes,
  recordingFile,
} from "../audit/replay.js";
import { formatTranscript } from "../audit/transcript-format.js";
import { CliError, parse } from "./args.js";

export async function replayCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    "replay",
    argv,
    {
      spool: { type: "string" },
      postgres: { type: "string" },
      table: { type: "string" },
      speed: { type: "string" },
      "idle-cap": { type: "string" },
      cast: { type: "boolean" },
      raw: { type: "boolean" },
      json: { type: "boolean" },
      "show-input": { type: "boolean" },
    },
    1,
  );
  const sessionId = positionals[0];
  if (!sessionId) {
    throw new CliError(
      "usage: pamgate replay <session-id> [--spool DIR | --postgres URL [--table T]] [--speed N] [--idle-cap S] [--cast | --raw] [--json] [--show-input]\n" +
        "  (no option)   play a terminal session with its timing, or print a transcript like psql\n" +
        "  --cast        print a terminal session as an asciicast v2 file (asciinema play, any player)\n" +
        "  --raw         print a terminal session's output bytes exactly as the target sent them, no timing\n" +
        "  --json        print a transcript as its JSON lines",
    );
  }
  if (values.cast && values.raw) throw new CliError("replay: give --cast or --raw, not both");
  const speed = values.speed === undefined ? 1 : Number(values.speed);
  if (!(speed > 0)) throw new CliError(`replay: --speed must be a positive number, not "${values.speed}"`);
  const idleCap = values["idle-cap"] === undefined ? undefined : Number(values["idle-cap"]);
  if (idleCap !== undefined && !(idleCap >= 0)) {
    throw new CliError(`replay: --idle-cap must be a number of seconds, not "${values["idle-cap"]}"`);
  }
  let records: AsyncIterable<Parameters<typeof loadRecording>[0] extends AsyncIterable<infer R> ? R : never>;
  let source: string;
  if (values.postgres) {
    const table = values.table ?? "pamgate_audit";
    records = postgresRecordingRecords(values.postgres, table, sessionId);
    source = `table ${table}`;
  } else {
    const dir = values.spool ?? process.env.PAMGATE_AUDIT_DIR;
    if (!dir)
      throw new CliError("replay: --spool DIR or --postgres URL is required (or set PAMGATE_AUDIT_DIR)");
    records = spoolRecords(dir);
    source = dir;
  }
  const rec = await loadRecording(records, sessionId);
  if (!rec) {
    process.stderr.write(`pamgate: no recording of session ${sessionId} in ${source}\n`);
    return 1;
  }
  if (rec.missing_parts.length > 0) {
    process.stderr.write(`pamgate: warning: recording parts ${rec.missing_parts.join(", ")} are missing\n`);
  }
  if (!rec.complete)
    process.stderr.write("pamgate: note: the recording has no final part (still running?)\n");
  if (values.raw && rec.format !== "asciicast-v2")
    throw new CliError(`replay: --raw is for terminal recordings; ${sessionId} is a transcript (try --json)`);
  if (rec.format !== "asciicast-v2") {
    // a statement/request transcript: readable, or its JSON lines with --json
    process.stdout.write(values.json ? recordingFile(rec) : formatTranscript(rec));
    return 0;
  }
  if (values.cast) {
    process.stdout.write(castFile(rec) as string); // the same text the web console's loadCast serves
    return 0;
  }
  if (values.raw) {
    const bytes = recordedBytes(rec, "o");
    await new Promise<void>((resolve, reject) =>
      process.stdout.write(bytes, (err) => (err ? reject(err) : resolve())),
    );
    return 0;
  }
  await playTerminal(rec, process.stdout, { speed, idleCap, showInput: values["show-input"] });
  return 0;
}
