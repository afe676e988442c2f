import { mkdir, readdir, readFile, unlink } from "node:fs/promises";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { writeFileAtomic } from "../atomic.js";

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

function recordPath(mountpoint: string): string {
  return join(
    runtimeDir(),
    createHash("sha256").update(mountpoint).digest("hex").slice(0, 16) + ".json",
  );
}

export async function writeRecord(record: MountRecord): Promise<void> {
  await mkdir(runtimeDir(), { recursive: true, mode: 0o700 });
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

export async function listRecords(): Promise<MountRecord[]> {
  const dir = runtimeDir();
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
