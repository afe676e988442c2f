import type { Level } from "pino";
import {
  ARGON2_DEFAULT,
  ARGON2_MINIMUM,
  argon2BoundsProblem,
  type Argon2Params,
} from "../format/config.js";
import type { SecretSource } from "../keys/secret-input.js";
import { createLogger, type Logger } from "../log.js";
import { EXIT, UserError } from "../errors.js";

/** Options shared by commands: key sources and logging. */
export interface CommonOptions extends SecretSource {
  verbose?: boolean;
  debug?: boolean;
  logFile?: string;
}

export function loggerFor(options: CommonOptions, json = false): Logger {
  const level: Level = options.debug ? "debug" : options.verbose ? "info" : "warn";
  return createLogger({ level, ...(options.logFile ? { file: options.logFile } : {}), json });
}

/** mount(8)-style "-o a,b=c" options, merged from every -o given. */
export function parseMountOptions(values: readonly string[]): Map<string, string | true> {
  const out = new Map<string, string | true>();
  for (const value of values) {
    for (const item of value.split(",")) {
      if (!item) continue;
      const eq = item.indexOf("=");
      if (eq < 0) out.set(item, true);
      else out.set(item.slice(0, eq), item.slice(eq + 1));
    }
  }
  return out;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function positiveInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0)
      throw new UserError(`${name} must be a positive integer`, EXIT.usage);
    return n;
  };
}

export function argon2FromOptions(options: {
  kdfMemory?: number;
  kdfIterations?: number;
  kdfParallelism?: number;
}): Argon2Params {
  const params: Argon2Params = {
    algorithm: "argon2id",
    memoryKiB: options.kdfMemory ?? ARGON2_DEFAULT.memoryKiB,
    iterations: options.kdfIterations ?? ARGON2_DEFAULT.iterations,
    parallelism: options.kdfParallelism ?? ARGON2_DEFAULT.parallelism,
  };
  if (
    params.memoryKiB < ARGON2_MINIMUM.memoryKiB ||
    params.iterations < ARGON2_MINIMUM.iterations
  ) {
    throw new UserError(
      `Argon2 parameters below the minimum (memory ${ARGON2_MINIMUM.memoryKiB} KiB, ${ARGON2_MINIMUM.iterations} iterations)`,
      EXIT.usage,
    );
  }
  // Refused before Argon2 ever runs on them (and a config with them would not load).
  const problem = argon2BoundsProblem(params);
  if (problem) throw new UserError(`Argon2 parameters too high: ${problem}`, EXIT.usage);
  return params;
}
