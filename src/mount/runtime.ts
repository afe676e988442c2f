import { lstat, mkdir, readdir, readFile, unlink } from "node:fs/promises";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { writeFileAtomic } from "../atomic.js";
import { EXIT, UserError } from "../errors.js";

/**
 * What `cryptmount status` reads: one small JSON file per live mount in a
 * runtime directory, written by the server that owns the mount and removed
 * when it ends. No secrets.
 */
export interface MountRecord {
  readonly lower: string;
  readonly mountpoint: string;
  readonly pid: number;
  readonly keySource: string;
  readonly since: string;
  readonly readOnly: boolean;
  readonly allowOther: boolean;
}

export function runtimeDir(): string {
  if (process.env.CRYPTMOUNT_RUNTIME_DIR) return process.env.CRYPTMOUNT_RUNTIME_DIR;
  if (process.getuid?.() === 0) return "/run/cryptmount";
  return join(process.env.XDG_RUNTIME_DIR ?? "/tmp", `cryptmount-${process.getuid?.() ?? 0}`);
}

/**
 * Why `dir` is not a private directory of ours (a symlink, another owner,
 * group or world writable), or undefined when it is. A directory in /tmp
 * could have been made by anyone, who could then forge or remove records.
 */
async function notPrivate(dir: string): Promise<string | undefined> {
  const st = await lstat(dir);
  if (!st.isDirectory()) return "not a directory";
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) return `owned by uid ${st.uid}, not ${uid}`;
  if ((st.mode & 0o022) !== 0) return `mode ${(st.mode & 0o7777).toString(8)} lets others write`;
  return undefined;
}

/**
 * The runtime directory, created 0700 if missing; a derived one (not named by
 * CRYPTMOUNT_RUNTIME_DIR) that is not private to us is refused.
 */
export async function ensureRuntimeDir(
  dir = runtimeDir(),
  mustBePrivate = !process.env.CRYPTMOUNT_RUNTIME_DIR,
): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (mustBePrivate) {
    const problem = await notPrivate(dir);
    if (problem)
      throw new UserError(
        `${dir}: refusing the runtime directory (${problem}); remove it, or set CRYPTMOUNT_RUNTIME_DIR`,
        EXIT.failure,
      );
  }
  return dir;
}

/** The record of the mount at `mountpoint` in `dir` (another user's runtime directory, for root). */
export function recordPath(mountpoint: string, dir = runtimeDir()): string {
  return join(dir, createHash("sha256").update(mountpoint).digest("hex").slice(0, 16) + ".json");
}

export async function writeRecord(record: MountRecord): Promise<void> {
  await ensureRuntimeDir();
  await writeFileAtomic(recordPath(record.mountpoint), JSON.stringify(record) + "\n", 0o644);
}

export async function removeRecord(mountpoint: string): Promise<void> {
  await unlink(recordPath(mountpoint)).catch(() => undefined);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Live mounts' records; none from a derived runtime directory that is not private to us (they could be forged). */
export async function listRecords(
  dir = runtimeDir(),
  mustBePrivate = !process.env.CRYPTMOUNT_RUNTIME_DIR,
): Promise<MountRecord[]> {
  if (mustBePrivate) {
    const problem = await notPrivate(dir).catch(() => "missing");
    if (problem) return [];
  }
  const names = await readdir(dir).catch(() => [] as string[]);
  const records: MountRecord[] = [];
  for (const name of names.filter((n) => n.endsWith(".json"))) {
    try {
      const record = JSON.parse(await readFile(join(dir, name), "utf8")) as MountRecord;
      if (alive(record.pid)) records.push(record);
      else await unlink(join(dir, name)).catch(() => undefined);
    } catch {
      /* a record being replaced; skip it */
    }
  }
  return records;
}
