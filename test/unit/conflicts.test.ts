// Conflict copies (docs/format.md §3.3): which foreign lower names are a sync
// tool's copy of an encrypted or long name (a vector for each tool's
// pattern, and names that look alike but are not), the cleartext names they
// get, and the filesystem showing, opening, renaming and deleting them on a
// real lower directory (no FUSE: CryptFs directly).

import { constants } from "node:fs";
import { copyFile, mkdtemp, readdir, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Keyring } from "../../src/crypto/keys.js";
import {
  conflictCopyName,
  mayNameConflictCopy,
  nameConflictCopies,
  parseConflictCopy,
  sidecarCandidates,
} from "../../src/format/conflicts.js";
import { dirIdEntryName } from "../../src/format/dir-ids.js";
import { classifyLowerEntry, encryptName, lowerEntryFor } from "../../src/format/names.js";
import { CryptFs } from "../../src/fs/crypt-fs.js";
import { classifyListing } from "../../src/fs/lower/layout.js";
import { directLowerOps } from "../../src/fs/lower/ops.js";
import type { Place } from "../../src/fs/types.js";
import { Fsck } from "../../src/volume/fsck.js";

/** A genuine-looking encrypted name (43 base64url characters) and a long-name hash. */
const E = "ARUIK4JRomt_bpMXwbiSgKHjJPw6JG35gyE1HcJONic";
const H = "GtjY2iaYQQvq1xJDobIPXm0BqJp6Y80ahuj7U6-FWG0";
const L = `cm.L.${H}`;

describe("parseConflictCopy: each tool's suffix", () => {
  const vectors: [entry: string, tool: string, mark: string][] = [
    [`${E}..path1`, "rclone-bisync", " (conflict path1)"],
    [`${E}..path2`, "rclone-bisync", " (conflict path2)"],
    [`${E}.conflict1`, "rclone-bisync", " (conflict 1)"],
    [`${E}.conflict12`, "rclone-bisync", " (conflict 12)"],
    [
      `${E}.sync-conflict-20261202-171300-ABCDEF7`,
      "syncthing",
      ".sync-conflict-20261202-171300-ABCDEF7",
    ],
    [
      `${E} (Anna's conflicted copy 2026-12-02)`,
      "parenthesized",
      " (Anna's conflicted copy 2026-12-02)",
    ],
    [
      `${E} (conflicted copy 2026-12-02 171300)`,
      "parenthesized",
      " (conflicted copy 2026-12-02 171300)",
    ],
    [
      `${E} (SFConflict anna@example.org 2026-12-02-17-13-00)`,
      "parenthesized",
      " (SFConflict anna@example.org 2026-12-02-17-13-00)",
    ],
    [`${E} (Case Conflict)`, "parenthesized", " (Case Conflict)"],
    [`${E} (1)`, "copy-number", " (1)"],
    [`${E} (23)`, "copy-number", " (23)"],
  ];
  it.each(vectors)("%s is a %s copy with mark %j", (entry, tool, mark) => {
    expect(classifyLowerEntry(entry)).toEqual({ kind: "foreign" });
    const copy = parseConflictCopy(entry)!;
    expect(copy).toMatchObject({ entry, original: E, kind: "name", tool, mark, shape: "appended" });
    expect(E + copy.suffix).toBe(entry);
  });

  it("long names: the suffix after the hash (rclone) or before it, as an extension (Syncthing, Dropbox)", () => {
    expect(parseConflictCopy(`${L}..path2`)).toMatchObject({
      original: L,
      kind: "long-name",
      shape: "appended",
      mark: " (conflict path2)",
    });
    const inserted = parseConflictCopy(`cm.L.sync-conflict-20261202-171300-ABCDEF7.${H}`)!;
    expect(inserted).toMatchObject({ original: L, kind: "long-name", shape: "inserted" });
    expect(sidecarCandidates(inserted)).toEqual([
      `${L}.n`,
      `${L}.sync-conflict-20261202-171300-ABCDEF7.n`,
    ]);
    expect(parseConflictCopy(`cm.L (Anna's conflicted copy 2026-12-02).${H}`)).toMatchObject({
      original: L,
      shape: "inserted",
      tool: "parenthesized",
    });
    expect(sidecarCandidates(parseConflictCopy(`${L}..path1`)!)).toEqual([
      `${L}.n`,
      `${L}.n..path1`,
    ]);
  });

  it("a long name's sidecar is no orphan while a copy of its entry reads its name from it", () => {
    expect(classifyListing([`${L}.n`, `${L}..path1`, `${L}..path2`]).orphanSidecars).toEqual([]);
    expect(classifyListing([`${L}.n`, `${E}..path1`]).orphanSidecars).toEqual([`${L}.n`]);
  });

  it.each([
    E, // an encrypted name itself
    L, // a long-name entry
    `${L}.n`, // its sidecar
    `${L}.n..path1`, // the sidecar's copy is not an entry's copy
    `${E}.tmp-0123456789ab`, // a temporary file
    `${E}..path3`,
    `${E}.conflict0`,
    `${E}.sync-conflict-2026120-171300-ABCDEF7`,
    `${E}.sync-conflict-20261202-171300-abcdef7`,
    `${E} (0)`,
    `${E} (copy)`,
    `${E}(1)`,
    `${E} (1) (1)`,
    "cm.d.0NHS09TV1tfY2drb3N3e3zKrjQ3pswMfPcr7xTIju_w..path1", // an ID entry's copy: foreign
    "cryptmount.conf..path1",
    "desktop.ini",
    `${E.slice(1)}..path1`, // 42 characters: not base64url of whole bytes
    `${"A".repeat(172)}..path1`, // longer than any stored encrypted name
  ])("%s is no conflict copy of an entry", (entry) => {
    expect(parseConflictCopy(entry)).toBeUndefined();
  });
});

describe("conflict copy names", () => {
  it("put the mark before the extension", () => {
    expect(conflictCopyName("report.txt", " (conflict path2)")).toBe("report (conflict path2).txt");
    expect(conflictCopyName("archive.tar.gz", " (1)")).toBe("archive.tar (1).gz");
    expect(conflictCopyName(".bashrc", " (conflict path1)")).toBe(".bashrc (conflict path1)");
    expect(conflictCopyName("notes", ".sync-conflict-20261202-171300-ABCDEF7")).toBe(
      "notes.sync-conflict-20261202-171300-ABCDEF7",
    );
    expect(conflictCopyName("a.b c", " (1)")).toBe("a.b c (1)");
    expect(conflictCopyName("trailing.", " (1)")).toBe("trailing. (1)");
  });

  it("shorten the stem, whole code points, to stay within 255 bytes", () => {
    const name = "é".repeat(125) + ".txt"; // 254 bytes
    const copy = conflictCopyName(name, " (conflict path1)");
    expect(Buffer.byteLength(copy)).toBeLessThanOrEqual(255);
    expect(copy).toMatch(/^é+ \(conflict path1\)\.txt$/);
  });

  it("never take a name of the directory or of an earlier copy, in lower-name order", () => {
    const names = nameConflictCopies(new Set(["report.txt", "report (conflict path1).txt"]), [
      { entry: "B..path1", name: "report.txt", mark: " (conflict path1)" },
      { entry: "A..path1", name: "report.txt", mark: " (conflict path1)" },
    ]);
    expect([...names]).toEqual([
      ["A..path1", "report (conflict path1) (2).txt"],
      ["B..path1", "report (conflict path1) (3).txt"],
    ]);
  });

  it("mayNameConflictCopy holds for every name they give", () => {
    for (const mark of [" (conflict path1)", " (1)", ".sync-conflict-20261202-171300-ABCDEF7"])
      expect(mayNameConflictCopy(conflictCopyName("x.txt", mark))).toBe(true);
    expect(mayNameConflictCopy("report.txt")).toBe(false);
  });
});

describe("conflict copies through the filesystem", () => {
  const log = pino({ level: "silent" });
  const ring = () =>
    new Keyring(Buffer.alloc(16, 1), 1, new Map([[1, Buffer.alloc(32, 2)]]), Buffer.alloc(32, 3));
  let lower: string;
  beforeEach(async () => {
    lower = await mkdtemp(join(tmpdir(), "cm-conflicts-"));
  });
  afterEach(async () => {
    await rm(lower, { recursive: true, force: true });
  });

  async function write(fs: CryptFs, place: Place, text: string): Promise<void> {
    const fh = await fs.create(place, 0o644, constants.O_WRONLY | constants.O_TRUNC);
    await fs.write(fh, Buffer.from(text), 0);
    await fs.release(fh);
  }
  async function read(fs: CryptFs, place: Place): Promise<string> {
    const fh = await fs.open(place, constants.O_RDONLY);
    try {
      return (await fs.read(fh, 1 << 16, 0)).toString();
    } finally {
      await fs.release(fh);
    }
  }
  const names = async (fs: CryptFs) => (await fs.list(fs.root)).map((e) => e.name).sort();

  it("shows both sides of a bisync conflict, reads and writes them; a rename to a plain name resolves one", async () => {
    const keyring = ring();
    let fs = await CryptFs.open(lower, keyring, 4096, log, directLowerOps);
    const at = (name: string): Place => ({ parent: fs.root, name });
    await write(fs, at("report.txt"), "from A");
    const long = "l".repeat(150) + ".txt";
    await write(fs, at(long), "long from A");
    await fs.destroy();
    const e = encryptName(keyring.volume.names, keyring.volume.rootDirId, "report.txt");
    const le = lowerEntryFor(encryptName(keyring.volume.names, keyring.volume.rootDirId, long));
    // What bisync leaves: both sides renamed away, the other side's bytes under ..path2.
    await copyFile(join(lower, e), join(lower, `${e}..path2`));
    await rename(join(lower, e), join(lower, `${e}..path1`));
    await rename(join(lower, le.entry), join(lower, `${le.entry}..path1`));
    await rename(join(lower, `${le.entry}.n`), join(lower, `${le.entry}.n..path1`));
    await writeFile(join(lower, "AAAA..path1"), "not ours"); // does not authenticate: hidden

    fs = await CryptFs.open(lower, keyring, 4096, log, directLowerOps);
    const longCopy = "l".repeat(150) + " (conflict path1).txt";
    expect(await names(fs)).toEqual(
      [longCopy, "report (conflict path1).txt", "report (conflict path2).txt"].sort(),
    );
    expect(await read(fs, at("report (conflict path2).txt"))).toBe("from A");
    expect(await read(fs, at(longCopy))).toBe("long from A");
    const attr = await fs.getattr(at("report (conflict path1).txt"));
    expect(attr.size).toBe(6);
    await expect(fs.getattr(at("report (conflict path3).txt"))).rejects.toMatchObject({
      errno: "ENOENT",
    });
    await write(fs, at("report (conflict path2).txt"), "edited copy");
    expect(await read(fs, at("report (conflict path2).txt"))).toBe("edited copy");

    const report = await new Fsck(lower, keyring, 4096).run();
    const copies = report.problems.filter((p) => p.code === "CONFLICT_COPY");
    expect(copies.map((p) => [p.path, p.original]).sort()).toEqual(
      [
        [`/${longCopy}`, `/${long}`],
        ["/report (conflict path1).txt", "/report.txt"],
        ["/report (conflict path2).txt", "/report.txt"],
      ].sort(),
    );
    expect(report.problems.filter((p) => p.severity === "error")).toEqual([]);
    expect(report.problems.map((p) => p.code)).toContain("FOREIGN_ENTRY");

    // Resolve: keep path2 as report.txt (one lower rename), delete path1.
    await fs.rename(at("report (conflict path2).txt"), at("report.txt"), 0);
    await fs.unlink(at("report (conflict path1).txt"));
    await fs.rename(at(longCopy), at(long), 0);
    expect(await names(fs)).toEqual([long, "report.txt"].sort());
    expect(await read(fs, at("report.txt"))).toBe("edited copy");
    expect(await read(fs, at(long))).toBe("long from A");
    const left = (await readdir(lower)).sort();
    expect(left).toContain(e);
    expect(left).toContain(le.entry);
    // The sidecar's copy is foreign: the filesystem never removes it on its own.
    expect(left).toContain(`${le.entry}.n..path1`);
    expect(left).toContain("AAAA..path1");
    await fs.destroy();
  });

  it("a copy beside its original (Syncthing) gets the tool's own name; a name taken by a file gets a number", async () => {
    const keyring = ring();
    const fs = await CryptFs.open(lower, keyring, 4096, log, directLowerOps);
    const at = (name: string): Place => ({ parent: fs.root, name });
    await write(fs, at("notes.md"), "mine");
    await write(fs, at("notes (1).md"), "a file of that name");
    const e = encryptName(keyring.volume.names, keyring.volume.rootDirId, "notes.md");
    await copyFile(join(lower, e), join(lower, `${e}.sync-conflict-20261202-171300-ABCDEF7`));
    await copyFile(join(lower, e), join(lower, `${e} (1)`));
    expect(await names(fs)).toEqual(
      [
        "notes (1) (2).md",
        "notes (1).md",
        "notes.md",
        "notes.sync-conflict-20261202-171300-ABCDEF7.md",
      ].sort(),
    );
    expect(await read(fs, at("notes (1).md"))).toBe("a file of that name");
    expect(await read(fs, at("notes (1) (2).md"))).toBe("mine");
    // Choosing the copy over the original: a rename onto it.
    await fs.rename(at("notes.sync-conflict-20261202-171300-ABCDEF7.md"), at("notes.md"), 0);
    expect(await names(fs)).toEqual(["notes (1) (2).md", "notes (1).md", "notes.md"]);
    await fs.destroy();
  });

  it("of two entries with one name in a merged directory, the one lookups miss shows as a duplicate", async () => {
    const keyring = ring();
    const fs = await CryptFs.open(lower, keyring, 4096, log, directLowerOps);
    const created = await fs.mkdir({ parent: fs.root, name: "new" }, 0o755);
    const dir = created.dir!;
    const at = (name: string): Place => ({ parent: dir, name });
    await write(fs, at("same.txt"), "host A's");
    const dirEntry = encryptName(keyring.volume.names, keyring.volume.rootDirId, "new");
    const [mine] = (await readdir(join(lower, dirEntry))).filter((n) => !n.startsWith("cm.d."));
    // Host B made "new" too, with its own ID, and a "same.txt" in it (content is not bound to names).
    const otherId = Buffer.alloc(16, 0xff); // larger than any: host A's entry keeps the name
    await writeFile(join(lower, dirEntry, dirIdEntryName(keyring.volume.dirIds, otherId)), "");
    const theirs = encryptName(keyring.volume.names, otherId, "same.txt");
    await copyFile(join(lower, dirEntry, mine!), join(lower, dirEntry, theirs));
    fs.releaseDir(dir);
    const again = (await fs.lookup({ parent: fs.root, name: "new" })).dir!;
    const there = (name: string): Place => ({ parent: again, name });
    expect((await fs.list(again)).map((e) => e.name).sort()).toEqual([
      "same (duplicate).txt",
      "same.txt",
    ]);
    await write(fs, there("same (duplicate).txt"), "host B's");
    expect(await read(fs, there("same.txt"))).toBe("host A's");
    expect(await read(fs, there("same (duplicate).txt"))).toBe("host B's");
    const report = await new Fsck(lower, keyring, 4096).run();
    expect(report.problems.filter((p) => p.code === "DUPLICATE_NAME")).toEqual([
      expect.objectContaining({
        path: "/new/same (duplicate).txt",
        original: "/new/same.txt",
        lower: `${dirEntry}/${theirs}`,
      }),
    ]);
    // Keeping both: one rename, to a name of the canonical ID.
    await fs.rename(there("same (duplicate).txt"), there("same from B.txt"), 0);
    expect((await fs.list(again)).map((e) => e.name).sort()).toEqual([
      "same from B.txt",
      "same.txt",
    ]);
    expect(await read(fs, there("same from B.txt"))).toBe("host B's");
    fs.releaseDir(again);
    await fs.destroy();
  });

  it("lookups of names that may be a copy's cost one listing while the kernel trusts names, then the directory's stamp decides", async () => {
    const keyring = ring();
    let lists = 0;
    const counting = new Proxy(directLowerOps, {
      get(target, key: keyof typeof directLowerOps) {
        if (key === "list")
          return (fd: Parameters<typeof target.list>[0]) => (lists++, target.list(fd));
        return target[key];
      },
    });
    let now = 1_000_000;
    const clock = vi.spyOn(performance, "now").mockImplementation(() => now);
    try {
      const fs = await CryptFs.open(lower, keyring, 4096, log, counting);
      const at = (name: string): Place => ({ parent: fs.root, name });
      await write(fs, at("photo.jpg"), "the photo");
      lists = 0;
      for (let i = 1; i <= 100; i++)
        await expect(fs.getattr(at(`photo (${i}).jpg`))).rejects.toMatchObject({ errno: "ENOENT" });
      expect(lists).toBe(1);
      // Later, with nothing changed in the directory: its stamp says so, no listing.
      now += 5000;
      await expect(fs.getattr(at("photo (1).jpg"))).rejects.toMatchObject({ errno: "ENOENT" });
      expect(lists).toBe(1);
      // A sync adds a copy: the next lookup after the trusted time finds it.
      const e = encryptName(keyring.volume.names, keyring.volume.rootDirId, "photo.jpg");
      await copyFile(join(lower, e), join(lower, `${e} (1)`));
      now += 5000;
      expect((await fs.getattr(at("photo (1).jpg"))).size).toBe(9);
      expect(lists).toBe(2);
      await fs.destroy();
    } finally {
      clock.mockRestore();
    }
  });
});
