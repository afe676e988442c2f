/**
 * Checks that a lower directory can hold what the format needs, before
 * `init` or `mount` writes anything to it. Network and object-store
 * filesystems (an `rclone mount` without a write cache, a FUSE bridge to a
 * bucket) can look like directories and still drop empty files (directory
 * IDs, format.md §12.1), refuse long names (§10: lower names up to 171
 * characters),
 * refuse to open a file for reading and writing or to write into its middle
 * (content blocks are rewritten in place, §7), lose a file written and
 * closed, or fail to rename over an existing file (config updates, §5.5).
 * Such a lower would lose data later, so it is refused up front with
 * EXIT.lowerUnsuitable; `--no-probe` skips the checks.
 *
 * The checks run in a fresh subdirectory of the lower (or, for `init` of a
 * directory that does not exist yet, of its nearest existing parent, which is
 * where it will be created) and remove it afterwards, whatever happened.
 */
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, readdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { EXIT, UserError } from "../errors.js";

/** Prefix of the probe's temporary directory (fsck reports a leftover one as a foreign entry). */
export const PROBE_PREFIX = ".cryptmount-probe-";

export interface ProbeFailure {
  /** What was checked, as the message says it. */
  readonly check: string;
  /** What went wrong: an errno code or what was seen instead. */
  readonly detail: string;
}

class CheckFailed extends Error {
  constructor(readonly failure: ProbeFailure) {
    super(`${failure.check}: ${failure.detail}`);
  }
}

function errnoOf(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ?? (e instanceof Error ? e.message : String(e));
}

/** Runs `step`; any error or false result fails `check`. */
async function check(name: string, step: () => Promise<string | true>): Promise<void> {
  let outcome: string | true;
  try {
    outcome = await step();
  } catch (err) {
    throw new CheckFailed({ check: name, detail: errnoOf(err) });
  }
  if (outcome !== true) throw new CheckFailed({ check: name, detail: outcome });
}

async function writeSynced(path: string, data: Buffer, flags = "wx"): Promise<void> {
  const handle = await open(path, flags, 0o600);
  try {
    if (data.length > 0) await handle.write(data, 0, data.length, 0);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function sameContent(path: string, expected: Buffer): Promise<string | true> {
  const got = await readFile(path);
  return got.equals(expected)
    ? true
    : `read back ${got.length} bytes that differ from what was written`;
}

/** The checks themselves, in `dir` (which exists and is empty). */
async function runChecks(dir: string): Promise<void> {
  const empty = join(dir, "empty");
  await check("an empty file survives close", async () => {
    await writeSynced(empty, Buffer.alloc(0));
    const s = await stat(empty);
    if (!s.isFile() || s.size !== 0) return `it is ${s.size} bytes`;
    return (await readdir(dir)).includes("empty") ? true : "it is not listed";
  });

  const data = randomBytes(3 * 4096 + 17);
  const file = join(dir, "data");
  await check("a written file reads back after fsync and close", async () => {
    await writeSynced(file, data);
    return sameContent(file, data);
  });

  await check("a file opens for reading and writing and takes a write in its middle", async () => {
    const patch = randomBytes(100);
    const handle = await open(file, "r+");
    try {
      await handle.write(patch, 0, patch.length, 4096 + 5);
      await handle.sync();
    } finally {
      await handle.close();
    }
    patch.copy(data, 4096 + 5);
    return sameContent(file, data);
  });

  // Lower names are at most 171 characters (format.md §10). Not 255: the
  // format never writes longer names, and some object-store gateways refuse
  // them (s3rver, which stores a key as a file name plus a 15-byte suffix,
  // crashes on one); only a sync client's conflict copy could be longer.
  await check("a name of 171 characters", async () => {
    const name = "n".repeat(171);
    await writeSynced(join(dir, name), Buffer.from("x"));
    return (await readdir(dir)).includes(name) ? true : "it is not listed";
  });

  await check("rename over an existing file replaces it", async () => {
    const next = Buffer.from("new content");
    const temp = join(dir, "next.tmp");
    await writeSynced(temp, next);
    await rename(temp, file);
    const names = await readdir(dir);
    if (names.includes("next.tmp")) return "the old name is still there";
    return sameContent(file, next);
  });

  await check("a subdirectory is created, listed and removed", async () => {
    const sub = join(dir, "sub");
    await mkdir(sub, { mode: 0o700 });
    await writeSynced(join(sub, "id"), Buffer.alloc(0));
    const listed = (await readdir(sub)).includes("id");
    await rm(sub, { recursive: true });
    return listed ? true : "a file in it is not listed";
  });
}

/**
 * The directory the checks run in: `lower`, or where it will be created;
 * undefined when there is none (init and mount then say what is wrong).
 */
async function probeBase(lower: string, mayNotExist: boolean): Promise<string | undefined> {
  let at = lower;
  for (;;) {
    try {
      return (await stat(at)).isDirectory() ? at : undefined;
    } catch (err) {
      const parent = dirname(at);
      if (!mayNotExist || errnoOf(err) !== "ENOENT" || parent === at) return undefined;
      at = parent;
    }
  }
}

/**
 * Runs the checks; the failed one, or undefined when the lower is fit or
 * when there is no directory to probe, or it is not writable for a reason
 * other than a read-only filesystem (the command reports those itself).
 */
export async function probeLower(
  lower: string,
  options: { mayNotExist?: boolean } = {},
): Promise<ProbeFailure | undefined> {
  const base = await probeBase(lower, Boolean(options.mayNotExist));
  if (base === undefined) return undefined;
  const dir = join(base, PROBE_PREFIX + randomBytes(6).toString("hex"));
  try {
    await mkdir(dir, { mode: 0o700 });
  } catch (err) {
    // A read-only filesystem cannot hold a volume; permissions and the like
    // are the command's own errors, reported as they always were.
    if (errnoOf(err) !== "EROFS") return undefined;
    return { check: "a directory can be created", detail: "EROFS" };
  }
  try {
    await runChecks(dir);
    return undefined;
  } catch (err) {
    if (err instanceof CheckFailed) return err.failure;
    throw err;
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** What the CLI passes: commander's `--no-probe` (probe: false) and mount's `-o no_probe`. */
export interface ProbeOptions {
  probe?: boolean;
  options?: readonly string[];
  readOnly?: boolean;
}

function probeDisabled(opts: ProbeOptions): boolean {
  if (opts.probe === false) return true;
  return (opts.options ?? []).some((o) => o.split(",").includes("no_probe"));
}

/**
 * The hook `init` and `mount` call before writing anything: refuses an
 * unfit lower with a one-line message and EXIT.lowerUnsuitable. A read-only
 * mount writes nothing and is not probed.
 */
export async function requireFitLower(
  command: "init" | "mount",
  lower: string,
  opts: ProbeOptions,
): Promise<void> {
  if (probeDisabled(opts)) return;
  // init refuses a non-empty directory anyway; never write into one.
  if (command === "init" && (await readdir(lower).catch(() => [])).length > 0) return;
  if (command === "mount" && (opts.readOnly || (opts.options ?? []).some(isReadOnlyOption))) return;
  const failure = await probeLower(lower, { mayNotExist: command === "init" });
  if (!failure) return;
  const hint =
    command === "mount"
      ? "mount it with --ro to only read it, or skip this check with --no-probe"
      : "skip this check with --no-probe";
  throw new UserError(
    `${lower}: this directory cannot hold a cryptmount volume: check "${failure.check}" failed (${failure.detail}); ` +
      `on an rclone mount use --vfs-cache-mode writes (docs/lower-s3.md); ${hint}`,
    EXIT.lowerUnsuitable,
  );
}

function isReadOnlyOption(option: string): boolean {
  return option.split(",").includes("ro");
}
