import { createWriteStream } from "node:fs";
import pino, { type Logger, type Level } from "pino";

export type { Logger };

export interface LogOptions {
  /** "warn" unless --verbose ("info") or --debug ("debug"). */
  readonly level?: Level;
  /** Append JSON lines to this file instead of writing to stderr. */
  readonly file?: string;
  /** Force JSON even on a terminal (background servers). */
  readonly json?: boolean;
}

const LEVEL_NAMES: Record<number, string> = {
  10: "trace",
  20: "debug",
  30: "info",
  40: "warn",
  50: "error",
  60: "fatal",
};

/** One readable line per record for people at a terminal: "warn: message key=value". */
function humanLine(json: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { level, msg, time: _t, pid: _p, hostname: _h, ...rest } = record;
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ");
  return `cryptmount ${LEVEL_NAMES[level as number] ?? "log"}: ${String(msg ?? "")}${fields ? " " + fields : ""}\n`;
}

/**
 * Logs through pino: quiet by default (warnings and errors only), JSON when
 * stderr is not a terminal or a log file is given, one human line otherwise.
 */
export function createLogger(options: LogOptions = {}): Logger {
  const level = options.level ?? "warn";
  const base = { base: undefined, level };
  if (options.file) return pino(base, createWriteStream(options.file, { flags: "a", mode: 0o600 }));
  if (options.json || !process.stderr.isTTY)
    return pino(base, pino.destination({ fd: 2, sync: true }));
  return pino(base, { write: (line: string) => process.stderr.write(humanLine(line)) });
}
