// Authenticated directory IDs (docs/format.md §12, format version 2) through
// the namespace and CryptFs in process (no FUSE): forged ID entries planted
// in the lower directory are ignored for listings, lookups and new names and
// logged once per directory without cleartext names; genuine merges still
// read; a version-1 volume takes the bare v1 IDs and is read-only.

import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { readdir, rename, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { Keyring } from "../../src/crypto/keys.js";
import { dirIdEntryName, dirIdTag, parseDirIdEntry, readDirIds } from "../../src/format/dir-ids.js";
import {
  DIR_ID_PREFIX,
  classifyLowerEntry,
  encryptName,
  v1DirIdEntryName,
} from "../../src/format/names.js";
import { CryptFs } from "../../src/fs/crypt-fs.js";
import { toErrno, type ErrnoName } from "../../src/fs/errors.js";
import { directLowerOps, inodeKey } from "../../src/fs/lower/ops.js";
import { LowerDirectory, Namespace } from "../../src/fs/namespace.js";
import type { Directory, Place } from "../../src/fs/types.js";
import { Fsck } from "../../src/volume/fsck.js";

const temps: string[] = [];
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

const keyring = () =>
  new Keyring(Buffer.alloc(16, 1), 1, new Map([[1, Buffer.alloc(32, 2)]]), Buffer.alloc(32, 3));
const ZERO_ID = Buffer.alloc(16);
/** A v2-form entry with a made-up tag: what someone without the keys can plant. */
const planted = (id: Buffer) =>
  DIR_ID_PREFIX + Buffer.concat([id, randomBytes(16)]).toString("base64url");
const O_WRONLY = 0o1;
const O_EXCL = 0o200;

function lowerRoot(): string {
  const root = mkdtempSync(join(tmpdir(), "cm-dirids-"));
  temps.push(root);
  return root;
}

function capture(): { log: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: pino({ level: "warn" }, { write: (s: string) => lines.push(s) }), lines };
}

// --- the filesystem by cleartext path: the only part that depends on CryptFs's API ---

const silent = pino({ level: "silent" });

function mount(root: string, log: pino.Logger = silent, formatVersion?: number): Promise<CryptFs> {
  return CryptFs.open(root, keyring(), 4096, log, directLowerOps, { formatVersion });
}

async function dirAt(fs: CryptFs, path: string): Promise<Directory> {
  let dir: Directory = fs.root;
  for (const name of path.split("/").filter(Boolean)) {
    const entry = await fs.lookup({ parent: dir, name });
    if (!entry.dir) throw new Error(`${path}: not a directory`);
    dir = entry.dir;
  }
  return dir;
}

async function placeOf(fs: CryptFs, path: string): Promise<Place> {
  const cut = path.lastIndexOf("/");
  return { parent: await dirAt(fs, path.slice(0, cut)), name: path.slice(cut + 1) };
}

async function mkdirAt(fs: CryptFs, path: string): Promise<void> {
  await fs.mkdir(await placeOf(fs, path), 0o755);
}

async function touch(fs: CryptFs, path: string): Promise<void> {
  const fh = await fs.create(await placeOf(fs, path), 0o644, O_WRONLY | O_EXCL);
  await fs.write(fh, Buffer.from(path), 0);
  await fs.release(fh);
}

async function names(fs: CryptFs, path: string): Promise<string[]> {
  return (await fs.list(await dirAt(fs, path))).map((e) => e.name).sort();
}

/** Namespace.createDirId on lower directory `lowerDir` of a volume of `formatVersion`. */
async function createDirIdIn(
  _root: string,
  lowerDir: string,
  formatVersion: number,
): Promise<Buffer> {
  const fd = await directLowerOps.openRoot(lowerDir);
  const dir = new LowerDirectory(fd, inodeKey(await directLowerOps.fstat(fd)), "/", false);
  try {
    return await new Namespace(keyring(), silent, directLowerOps, formatVersion).createDirId(dir);
  } finally {
    await directLowerOps.close(fd);
  }
}

// ---------------------------------------------------------------------------------------

async function errno(promise: Promise<unknown>): Promise<ErrnoName | undefined> {
  try {
    await promise;
    return undefined;
  } catch (err) {
    return toErrno(err);
  }
}

/** Lower path of a top-level cleartext entry. */
const lowerOf = (root: string, name: string) =>
  join(root, encryptName(keyring().volume.names, keyring().volume.rootDirId, name));

/** The lower subdirectories of `root` whose names are encrypted names. */
async function lowerDirs(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(root, { withFileTypes: true }))
    if (e.isDirectory() && classifyLowerEntry(e.name).kind === "name") out.push(join(root, e.name));
  return out;
}

describe("dir-ids module", () => {
  const key = keyring().volume.dirIds;

  it("an entry names 16 bytes of ID and 16 of tag, 43 characters after cm.d.", () => {
    const id = randomBytes(16);
    const entry = dirIdEntryName(key, id);
    expect(entry.length).toBe(DIR_ID_PREFIX.length + 43);
    expect(classifyLowerEntry(entry)).toEqual({
      kind: "dir-id",
      form: "v2",
      id,
      tag: dirIdTag(key, id),
    });
    expect(parseDirIdEntry(key, entry)).toEqual({ id });
  });

  it("refuses the v1 form, a made-up tag, and a tag made under another key", () => {
    const id = randomBytes(16);
    const otherKey = keyring().volume.names.subarray(0, 32);
    expect(parseDirIdEntry(key, v1DirIdEntryName(id))).toEqual({ forged: true });
    expect(parseDirIdEntry(key, planted(id))).toEqual({ forged: true });
    expect(parseDirIdEntry(key, dirIdEntryName(otherKey, id))).toEqual({ forged: true });
    expect(parseDirIdEntry(key, "desktop.ini")).toBeUndefined();
    expect(parseDirIdEntry(key, dirIdEntryName(key, id) + ".sync-conflict-x")).toBeUndefined();
  });

  it("readDirIds sorts and deduplicates, and only version 1 takes the bare form", () => {
    const a = Buffer.alloc(16, 0xaa);
    const b = Buffer.alloc(16, 0x0b);
    const names = [dirIdEntryName(key, a), dirIdEntryName(key, b), v1DirIdEntryName(a)];
    expect(readDirIds(key, 2, names)).toEqual({ ids: [b, a], forged: [v1DirIdEntryName(a)] });
    expect(readDirIds(key, 1, names)).toEqual({ ids: [b, a], forged: [] });
    expect(() => dirIdTag(key, Buffer.alloc(15))).toThrow(RangeError);
  });
});

describe("planted IDs in a version-2 volume", () => {
  it("are ignored: new names in two directories keep their own IDs, so equal names stay unequal below", async () => {
    const root = lowerRoot();
    const fs = await mount(root);
    await mkdirAt(fs, "/a");
    await mkdirAt(fs, "/b");
    // The attack of format v1: the same, smallest possible ID planted everywhere.
    for (const dir of await lowerDirs(root)) {
      await writeFile(join(dir, planted(ZERO_ID)), "");
      await writeFile(join(dir, v1DirIdEntryName(ZERO_ID)), "");
    }
    const { log, lines } = capture();
    const fresh = await mount(root, log);
    await touch(fresh, "/a/same.txt");
    await touch(fresh, "/b/same.txt");
    const [x, y] = await lowerDirs(root);
    const encrypted = async (d: string) =>
      (await readdir(d)).filter((n) => classifyLowerEntry(n).kind === "name");
    const ex = await encrypted(x!);
    const ey = await encrypted(y!);
    expect(ex).toHaveLength(1);
    expect(ey).toHaveLength(1);
    expect(ex[0]).not.toBe(ey[0]);
    expect(await names(fresh, "/a")).toEqual(["same.txt"]);
    // Logged once per directory, at warn level, without cleartext names.
    await names(fresh, "/a");
    await names(fresh, "/b");
    const warnings = lines.map((l) => JSON.parse(l) as { level: number; msg: string; dir: string });
    const forged = warnings.filter((w) => w.msg.includes("forged directory ID"));
    expect(forged).toHaveLength(2);
    expect(forged.every((w) => w.level === 40)).toBe(true);
    expect(lines.join("\n")).not.toMatch(/same\.txt|"\/a"|"\/b"/);
  });

  it("an entry moved in under a planted copy of its old directory's ID does not decode", async () => {
    const root = lowerRoot();
    const fs = await mount(root);
    await mkdirAt(fs, "/a");
    await mkdirAt(fs, "/b");
    await touch(fs, "/a/secret.txt");
    const from = lowerOf(root, "a");
    const to = lowerOf(root, "b");
    const idOfFrom = readDirIds(keyring().volume.dirIds, 2, await readdir(from)).ids[0]!;
    const entry = (await readdir(from)).find((n) => classifyLowerEntry(n).kind === "name")!;
    await rename(join(from, entry), join(to, entry));
    // A v1-style plant of the source's ID (bare form) is refused in v2.
    await writeFile(join(to, v1DirIdEntryName(idOfFrom)), "");
    const fresh = await mount(root);
    expect(await names(fresh, "/a")).toEqual([]);
    expect(await names(fresh, "/b")).toEqual([]);
  });

  it("a genuine merge (two genuine IDs) still reads under both", async () => {
    const root = lowerRoot();
    const fs = await mount(root);
    await mkdirAt(fs, "/m");
    await touch(fs, "/m/one.txt");
    const [m] = await lowerDirs(root);
    // The other machine's twin: its own ID, and a file under it, merged in by sync.
    const other = Buffer.alloc(16, 0xff); // larger: the first machine's ID stays canonical
    await writeFile(join(m!, dirIdEntryName(keyring().volume.dirIds, other)), "");
    const fresh = await mount(root);
    expect(readDirIds(keyring().volume.dirIds, 2, await readdir(m!)).ids).toHaveLength(2);
    await touch(fresh, "/m/two.txt");
    expect(await names(fresh, "/m")).toEqual(["one.txt", "two.txt"]);
  });

  it("createDirId writes the v2 form; a directory with only planted IDs gets a genuine one", async () => {
    const root = lowerRoot();
    const fs = await mount(root);
    await mkdirAt(fs, "/d");
    const [d] = await lowerDirs(root);
    const ids = (await readdir(d!)).filter((n) => classifyLowerEntry(n).kind === "dir-id");
    expect(ids).toHaveLength(1);
    expect(parseDirIdEntry(keyring().volume.dirIds, ids[0]!)).toHaveProperty("id");
    // Replace the genuine ID by a plant: the directory has no ID now, and the next name mints one.
    await rename(join(d!, ids[0]!), join(d!, planted(ZERO_ID)));
    const fresh = await mount(root);
    await touch(fresh, "/d/new.txt");
    const after = readDirIds(keyring().volume.dirIds, 2, await readdir(d!));
    expect(after.ids).toHaveLength(1);
    expect(after.ids[0]).not.toEqual(ZERO_ID);
    expect(await names(fresh, "/d")).toEqual(["new.txt"]);
  });
});

describe("a version-1 volume", () => {
  it("reads bare v1 IDs and is read-only: no write, and no v2 entry, ever", async () => {
    const root = lowerRoot();
    // Write it as v1 would: v1-form ID entries (the v2 build cannot make one, so do it by hand).
    const v2 = await mount(root);
    await mkdirAt(v2, "/d");
    await touch(v2, "/d/f.txt");
    const [d] = await lowerDirs(root);
    const entry = (await readdir(d!)).find((n) => classifyLowerEntry(n).kind === "dir-id")!;
    const kind = classifyLowerEntry(entry);
    await rename(
      join(d!, entry),
      join(d!, v1DirIdEntryName(kind.kind === "dir-id" ? kind.id : ZERO_ID)),
    );
    const before = await readdir(d!);

    const v1 = await mount(root, silent, 1);
    expect(await names(v1, "/d")).toEqual(["f.txt"]);
    expect(await errno(mkdirAt(v1, "/e"))).toBe("EROFS");
    expect(await errno(touch(v1, "/d/g.txt"))).toBe("EROFS");
    await expect(createDirIdIn(root, d!, 1)).rejects.toMatchObject({ code: "EROFS" });
    expect(await readdir(d!)).toEqual(before);
    // The same lower read as version 2: the bare ID does not count.
    const asV2 = await mount(root);
    expect(await names(asV2, "/d")).toEqual([]);
  });
});

describe("fsck of directory IDs", () => {
  async function volumeWithTwoDirs(): Promise<{ root: string; a: string; b: string }> {
    const root = lowerRoot();
    const fs = await mount(root);
    await mkdirAt(fs, "/a");
    await mkdirAt(fs, "/b");
    await touch(fs, "/a/1.txt");
    await touch(fs, "/b/2.txt");
    return { root, a: lowerOf(root, "a"), b: lowerOf(root, "b") };
  }

  it("FORGED_DIR_ID for planted entries and the v1 form; --repair removes them", async () => {
    const { root, a } = await volumeWithTwoDirs();
    await writeFile(join(a, planted(ZERO_ID)), "");
    await writeFile(join(a, v1DirIdEntryName(ZERO_ID)), "");
    const report = await new Fsck(root, keyring(), 4096, { repair: true }).run();
    const forged = report.problems.filter((p) => p.code === "FORGED_DIR_ID");
    expect(forged).toHaveLength(2);
    expect(forged.every((p) => p.severity === "error" && p.repaired)).toBe(true);
    expect(forged.map((p) => p.path)).toEqual(["/a", "/a"]);
    const again = await new Fsck(root, keyring(), 4096).run();
    expect(again.problems).toEqual([]);
  });

  it("a forged entry that is the only trace of a lost ID is reported, not removed", async () => {
    const { root, a } = await volumeWithTwoDirs();
    const genuine = (await readdir(a)).find((n) => classifyLowerEntry(n).kind === "dir-id")!;
    const kind = classifyLowerEntry(genuine);
    // As after a v1 writer re-created the entry in the old form.
    await rename(
      join(a, genuine),
      join(a, v1DirIdEntryName(kind.kind === "dir-id" ? kind.id : ZERO_ID)),
    );
    const report = await new Fsck(root, keyring(), 4096, { repair: true }).run();
    expect(report.problems.map((p) => p.code).sort()).toEqual(["FORGED_DIR_ID", "MISSING_DIR_ID"]);
    expect(report.problems.find((p) => p.code === "FORGED_DIR_ID")?.repaired).toBeUndefined();
    expect((await readdir(a)).some((n) => classifyLowerEntry(n).kind === "dir-id")).toBe(true);
  });

  it("DUPLICATE_DIR_ID for a genuine ID copied into another directory, not repaired", async () => {
    const { root, a, b } = await volumeWithTwoDirs();
    const genuine = (await readdir(a)).find((n) => classifyLowerEntry(n).kind === "dir-id")!;
    await writeFile(join(b, genuine), "");
    const report = await new Fsck(root, keyring(), 4096, { repair: true }).run();
    const dup = report.problems.filter((p) => p.code === "DUPLICATE_DIR_ID");
    expect(dup).toHaveLength(1);
    expect(dup[0]).toMatchObject({ severity: "error" });
    expect(dup[0]!.repaired).toBeUndefined();
    expect(report.problems.map((p) => p.code).sort()).toEqual([
      "DUPLICATE_DIR_ID",
      "MERGED_DIR_IDS",
    ]);
    expect(await readdir(b)).toContain(genuine);
  });
});
