import { lstat, mkdir, readFile, unlink, readdir } from "node:fs/promises";
import { writeFileAtomic } from "../atomic.js";
import { EXIT, UserError } from "../errors.js";
import { REGISTRY_DIR, recordFile } from "./paths.js";

/** What `home setup` registered for a user (no secret): /etc/cryptmount/home/USER.json. */
export interface HomeRecord {
  readonly version: 1;
  readonly user: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
  /** HOMEPARENT/.cryptmount/USER */
  readonly volumeDir: string;
  readonly lower: string;
  readonly mountpoint: string;
  readonly private: boolean;
  /** The id of the passphrase slot labelled "login password". */
  readonly loginSlot: number;
  /** The mountpoint's mode before setup, restored by `home remove`. */
  readonly mountpointMode: number;
  readonly created: string;
  /** A migration backup kept until `home confirm`. */
  readonly backup?: string;
}

function isRecord(value: unknown): value is HomeRecord {
  const r = value as Partial<HomeRecord> | null;
  return (
    typeof r === "object" &&
    r !== null &&
    r.version === 1 &&
    typeof r.user === "string" &&
    typeof r.uid === "number" &&
    typeof r.gid === "number" &&
    typeof r.home === "string" &&
    typeof r.lower === "string" &&
    typeof r.mountpoint === "string" &&
    typeof r.loginSlot === "number"
  );
}

export async function readRecord(user: string): Promise<HomeRecord | undefined> {
  let text: string;
  try {
    // Trusted only as root wrote it (the PAM module checks the same).
    const st = await lstat(recordFile(user));
    if (!st.isFile() || st.uid !== 0 || (st.mode & 0o022) !== 0)
      throw new UserError(
        `${recordFile(user)}: not a regular file owned by root and writable only by root; refusing it`,
        EXIT.failure,
      );
    text = await readFile(recordFile(user), "utf8");
  } catch (err) {
    if (err instanceof UserError) throw err;
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new UserError(
      `${recordFile(user)}: cannot read (${(err as NodeJS.ErrnoException).code})`,
      EXIT.io,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!isRecord(parsed) || parsed.user !== user)
    throw new UserError(`${recordFile(user)}: not a valid cryptmount home record`, EXIT.failure);
  return parsed;
}

export async function writeRecord(record: HomeRecord): Promise<void> {
  await mkdir(REGISTRY_DIR, { recursive: true, mode: 0o755 });
  await writeFileAtomic(recordFile(record.user), JSON.stringify(record, null, 2) + "\n", 0o644);
}

export async function removeRecord(user: string): Promise<void> {
  await unlink(recordFile(user)).catch(() => undefined);
}

export async function listRecordUsers(): Promise<string[]> {
  const names = await readdir(REGISTRY_DIR).catch(() => [] as string[]);
  return names.filter((n) => n.endsWith(".json")).map((n) => n.slice(0, -5));
}
