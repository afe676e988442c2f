// cryptmount fsck: reports nothing on a clean volume and finds each injected
// fault with the right code, cleartext path (or lower path when the name is
// damaged) and block index; --repair fixes only what is safe.
//
// One pristine volume (block size 4096) is built once; every test injects
// its fault into a copy of the lower directory (cp -a keeps the same keys).

import {
  lstat,
  readFile,
  readdir,
  rename,
  rm,
  symlink,
  truncate,
  writeFile,
} from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CHECK_RECORD_NAME } from "../../src/format/check-record.js";
import {
  HEADER_SIZE,
  Sandbox,
  haveFuse,
  newLowerEntries,
  pyOk,
  q,
  runOk,
  seededBytes,
  sh,
  sandboxSuite,
} from "../helpers/volume.js";
import {
  BLOCK_OVERHEAD,
  checksumTree,
  cli,
  fsck,
  flipBit,
  initVolume,
  lowerSnapshot,
  mountVolume,
  sha256Hex,
  swapRanges,
  tamperName,
  unmountVolume,
  writeNamed,
  type FsckProblem,
} from "../helpers/volume-tools.js";

const BS = 4096;
const SEALED = BS + BLOCK_OVERHEAD;
const blockAt = (index: number) => HEADER_SIZE + index * SEALED;
const LONG = "L".repeat(200) + ".txt";

/** Cleartext files of the pristine volume. */
const FILES: Record<string, Buffer> = {
  "docs/report.txt": seededBytes("report", 3 * BS + 100), // blocks 0..3
  "docs/header.txt": seededBytes("header", 1000),
  "docs/victim.txt": seededBytes("victim", 10),
  "sub/a.txt": seededBytes("sub-a", 5000),
  "sub/b.txt": seededBytes("sub-b", 0),
  "trunc.bin": seededBytes("trunc", 4 * BS), // exactly 4 full blocks
  "swap.bin": seededBytes("swap", 3 * BS + 50),
  [`long/${LONG}`]: seededBytes("long", 300),
  "empty.txt": Buffer.alloc(0),
};

let sb: Sandbox;
let pristine: string;
/** Cleartext path -> lower path (relative) of every file. */
const lowerOf = new Map<string, string>();
let pristineSnapshot: Record<string, string>;

describe.skipIf(!haveFuse)("fsck", () => {
  sandboxSuite("vfsck", async (s) => {
    sb = s;
    pristine = (await initVolume(sb, ["--block-size", String(BS), "--no-recovery"])).lower;
    const m = await mountVolume(sb, pristine);
    for (const [path, data] of Object.entries(FILES)) {
      const created = await newLowerEntries(pristine, () =>
        writeNamed(m.mountpoint, { [path]: data }),
      );
      // The content file is the deepest new entry that is not a dir ID or a sidecar.
      const file = created
        .filter((p) => !/(^|\/)cm\.d\./.test(p) && !p.endsWith(".n"))
        .sort((a, b) => b.split("/").length - a.split("/").length)[0];
      expect(file, path).toBeDefined();
      lowerOf.set(path, file!);
    }
    const sums = await checksumTree(m.mountpoint);
    expect(sums).toEqual(
      Object.fromEntries(Object.entries(FILES).map(([p, d]) => [p, sha256Hex(d)])),
    );
    await unmountVolume(sb, m);
    pristineSnapshot = lowerSnapshot(pristine);
  });

  /** A copy of the pristine volume to damage. */
  async function copy(): Promise<string> {
    const dir = sb.path("damaged");
    await runOk("cp", ["-a", pristine, dir]);
    return dir;
  }

  /** The lower's files and their hashes, fsck's check record left out (§3.4). */
  function snapshot(volume: string): Record<string, string> {
    return Object.fromEntries(
      Object.entries(lowerSnapshot(volume)).filter(([p]) => p !== CHECK_RECORD_NAME),
    );
  }

  const lowerPath = (volume: string, clear: string) => join(volume, lowerOf.get(clear)!);
  const dirOf = (p: string) => p.slice(0, p.lastIndexOf("/"));

  async function expectProblems(
    volume: string,
    expected: Partial<FsckProblem>[],
    exitCode = 7,
  ): Promise<FsckProblem[]> {
    const { code, report, stderr } = await fsck(sb, volume);
    expect(code, stderr + JSON.stringify(report.problems, null, 2)).toBe(exitCode);
    expect(report.clean).toBe(exitCode === 0);
    expect(report.problems).toHaveLength(expected.length);
    for (const e of expected) expect(report.problems).toContainEqual(expect.objectContaining(e));
    return report.problems;
  }

  it("a clean volume: exit 0, no problems, every file counted", async () => {
    const { code, report } = await fsck(sb, pristine);
    expect(code).toBe(0);
    expect(report.clean).toBe(true);
    expect(report.problems).toEqual([]);
    expect(report.files).toBe(Object.keys(FILES).length);
    expect(report.directories).toBe(4); // root, docs, sub, long
    expect(report.bytes).toBe(Object.values(FILES).reduce((n, d) => n + d.length, 0));
    // The text report says so too.
    const text = await cli(sb, ["fsck", "--passfile", sb.passfile, pristine]);
    expect(text.code).toBe(0);
    expect(text.stdout.trim().split("\n")).toHaveLength(1);
    expect(text.stdout).toMatch(
      /^9 files \(\d checked, \d unchanged since the last check\), 4 directories, 0 symlinks, 0 special files, \d+ bytes checked in [\d.]+ s \(\d+ MB\/s\): clean$/m,
    );
    // fsck without --repair writes nothing but its check record.
    expect(snapshot(pristine)).toEqual(pristineSnapshot);
  });

  it("a bit flip in a content block: BLOCK_AUTH with the block index and cleartext path", async () => {
    const v = await copy();
    await flipBit(lowerPath(v, "docs/report.txt"), blockAt(1) + 12 + 100, 3);
    await expectProblems(v, [
      {
        severity: "error",
        code: "BLOCK_AUTH",
        path: "/docs/report.txt",
        lower: lowerOf.get("docs/report.txt")!,
        block: 1,
      },
    ]);
    const text = await cli(sb, ["fsck", "--passfile", sb.passfile, v]);
    expect(text.code).toBe(7);
    expect(text.stdout).toMatch(/^error: \/docs\/report\.txt block 1: .*\[BLOCK_AUTH\]$/m);
  });

  // Regression: a read whose range spanned a corrupt block used to return
  // the intact prefix as a short read; the kernel's page cache takes that for
  // end of file and shrinks the cached size, so `cat` copied a truncated file
  // without an error. The man page promises EIO for the bad block and the
  // other blocks intact.
  it("through a mount, a corrupt block reads as EIO, the others read, and the size does not shrink", async () => {
    const v = await copy();
    await flipBit(lowerPath(v, "docs/report.txt"), blockAt(1) + 12 + 100, 3);
    const m = await mountVolume(sb, v);
    const file = join(m.mountpoint, "docs/report.txt");
    const out = await pyOk(
      String.raw`
import errno, json, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
res = []
for i in range(4):
    try:
        res.append(os.pread(fd, 4096, i * 4096).hex())
    except OSError as e:
        res.append(errno.errorcode[e.errno])
print(json.dumps({"blocks": res, "size": os.fstat(fd).st_size}))
`,
      [file],
    );
    const { blocks, size } = JSON.parse(out) as { blocks: string[]; size: number };
    const original = FILES["docs/report.txt"]!;
    const cat = await sh(`cat ${q(file)} > /dev/null`);
    await unmountVolume(sb, m);
    expect(blocks[0]).toBe(original.subarray(0, BS).toString("hex"));
    expect(blocks[2]).toBe(original.subarray(2 * BS, 3 * BS).toString("hex"));
    expect(blocks[3]).toBe(original.subarray(3 * BS).toString("hex"));
    expect(size).toBe(original.length);
    expect(cat.code).not.toBe(0);
    expect(cat.stderr).toMatch(/Input\/output error/);
    expect(blocks[1]).toBe("EIO");
  });

  it("a bit flip in a file header: HEADER_AUTH", async () => {
    const v = await copy();
    await flipBit(lowerPath(v, "docs/header.txt"), 24 + 4 + 12 + 5); // inside slot A's wrapped key
    await expectProblems(v, [
      {
        severity: "error",
        code: "HEADER_AUTH",
        path: "/docs/header.txt",
        lower: lowerOf.get("docs/header.txt")!,
      },
    ]);
    // A flip in the file ID (authenticated as associated data) is caught too.
    const w = await copy();
    await flipBit(lowerPath(w, "docs/header.txt"), 8 + 3);
    await expectProblems(w, [{ severity: "error", code: "HEADER_AUTH", path: "/docs/header.txt" }]);
  });

  it("a damaged encrypted name: NAME_AUTH with the lower path (no cleartext path)", async () => {
    const v = await copy();
    const lower = lowerOf.get("docs/victim.txt")!;
    const base = lower.slice(lower.lastIndexOf("/") + 1);
    const tampered = `${dirOf(lower)}/${tamperName(base)}`;
    await rename(join(v, lower), join(v, tampered));
    const [problem] = await expectProblems(v, [
      { severity: "error", code: "NAME_AUTH", lower: tampered },
    ]);
    expect(problem!.path).toBeUndefined();
    const text = await cli(sb, ["fsck", "--passfile", sb.passfile, v]);
    expect(text.stdout).toContain(`(lower) ${tampered}`);
  });

  it("a deleted directory ID entry (cm.d.*): MISSING_DIR_ID for that directory", async () => {
    const v = await copy();
    const subLower = dirOf(lowerOf.get("sub/a.txt")!);
    const ids = (await readdir(join(v, subLower))).filter((n) => n.startsWith("cm.d."));
    expect(ids).toHaveLength(1);
    await rm(join(v, subLower, ids[0]!));
    await expectProblems(v, [
      { severity: "error", code: "MISSING_DIR_ID", path: "/sub", lower: subLower },
    ]);
  });

  it("planted directory IDs (made-up tag, bare v1 form): FORGED_DIR_ID; --repair removes them", async () => {
    const v = await copy();
    const subLower = dirOf(lowerOf.get("sub/a.txt")!);
    const zero = Buffer.alloc(16);
    const planted = [
      "cm.d." + Buffer.concat([zero, Buffer.alloc(16, 7)]).toString("base64url"),
      "cm.d." + zero.toString("base64url"),
    ];
    for (const n of planted) await writeFile(join(v, subLower, n), "");
    await expectProblems(
      v,
      planted.map((n) => ({
        severity: "error",
        code: "FORGED_DIR_ID",
        path: "/sub",
        lower: `${subLower}/${n}`,
      })),
    );
    const { code, report } = await fsck(sb, v, ["--repair"]);
    expect(code).toBe(0);
    expect(report.problems.every((p) => p.repaired)).toBe(true);
    expect(snapshot(v)).toEqual(pristineSnapshot);
    await expectProblems(v, [], 0);
  });

  it("a genuine ID copied into another directory: DUPLICATE_DIR_ID, not repaired", async () => {
    const v = await copy();
    const subLower = dirOf(lowerOf.get("sub/a.txt")!);
    const docsLower = dirOf(lowerOf.get("docs/report.txt")!);
    const [id] = (await readdir(join(v, subLower))).filter((n) => n.startsWith("cm.d."));
    await writeFile(join(v, docsLower, id!), "");
    const expected: Partial<FsckProblem>[] = [
      { severity: "error", code: "DUPLICATE_DIR_ID" },
      { severity: "warning", code: "MERGED_DIR_IDS", path: "/docs" },
    ];
    await expectProblems(v, expected);
    const { code, report } = await fsck(sb, v, ["--repair"]);
    expect(code).toBe(7);
    expect(report.problems.find((p) => p.code === "DUPLICATE_DIR_ID")?.repaired).toBeFalsy();
    expect(await readdir(join(v, docsLower))).toContain(id);
  });

  // Full blocks are never final (the final block holds size mod block size,
  // empty for trunc.bin), so any cut at a sealed-block boundary leaves a file
  // without its final block.
  it("a file truncated at a block boundary: TRUNCATED", async () => {
    const v = await copy();
    await truncate(lowerPath(v, "trunc.bin"), blockAt(2)); // keep blocks 0 and 1 of 4 full + final
    await expectProblems(v, [
      {
        severity: "error",
        code: "TRUNCATED",
        path: "/trunc.bin",
        lower: lowerOf.get("trunc.bin")!,
      },
    ]);
    // A file whose final block is partial, cut after its full blocks.
    const w = await copy();
    await truncate(lowerPath(w, "docs/report.txt"), blockAt(3));
    await expectProblems(w, [{ severity: "error", code: "TRUNCATED", path: "/docs/report.txt" }]);
    // Down to the header alone.
    const x = await copy();
    await truncate(lowerPath(x, "trunc.bin"), HEADER_SIZE);
    await expectProblems(x, [{ severity: "error", code: "TRUNCATED", path: "/trunc.bin" }]);
  });

  it("two blocks swapped within a file: BLOCK_AUTH for both", async () => {
    const v = await copy();
    await swapRanges(lowerPath(v, "swap.bin"), blockAt(0), blockAt(1), SEALED);
    await expectProblems(v, [
      { severity: "error", code: "BLOCK_AUTH", path: "/swap.bin", block: 0 },
      { severity: "error", code: "BLOCK_AUTH", path: "/swap.bin", block: 1 },
    ]);
  });

  it("a deleted long-name sidecar: LONG_NAME_MISSING for the hashed entry", async () => {
    const v = await copy();
    const entry = lowerOf.get(`long/${LONG}`)!;
    expect(entry).toMatch(/\/cm\.L\.[A-Za-z0-9_-]{43}$/);
    await rm(join(v, entry + ".n"));
    const [problem] = await expectProblems(v, [
      { severity: "error", code: "LONG_NAME_MISSING", lower: entry },
    ]);
    expect(problem!.path).toBeUndefined();
  });

  it("an orphan sidecar: warning ORPHAN_SIDECAR (exit 0), removed by --repair, user data untouched", async () => {
    const v = await copy();
    const entry = lowerOf.get(`long/${LONG}`)!;
    const orphan = `${dirOf(entry)}/cm.L.${"A".repeat(43)}.n`;
    await writeFile(join(v, orphan), "orphan sidecar of an entry that is gone\n");
    await expectProblems(v, [{ severity: "warning", code: "ORPHAN_SIDECAR", lower: orphan }], 0);

    const { code, report } = await fsck(sb, v, ["--repair"]);
    expect(code).toBe(0);
    expect(report.problems).toEqual([
      expect.objectContaining({ code: "ORPHAN_SIDECAR", repaired: true }),
    ]);
    expect(snapshot(v)).toEqual(pristineSnapshot);
    await expectProblems(v, [], 0);
  });

  it("every fault at once: each is reported; --repair fixes only the orphan and deletes no user data", async () => {
    const v = await copy();
    await flipBit(lowerPath(v, "docs/report.txt"), blockAt(2) + 40);
    await flipBit(lowerPath(v, "docs/header.txt"), 24 + 4 + 30);
    const victim = lowerOf.get("docs/victim.txt")!;
    const tampered = `${dirOf(victim)}/${tamperName(victim.slice(victim.lastIndexOf("/") + 1))}`;
    await rename(join(v, victim), join(v, tampered));
    const subLower = dirOf(lowerOf.get("sub/a.txt")!);
    for (const n of (await readdir(join(v, subLower))).filter((x) => x.startsWith("cm.d.")))
      await rm(join(v, subLower, n));
    await truncate(lowerPath(v, "trunc.bin"), blockAt(3));
    await swapRanges(lowerPath(v, "swap.bin"), blockAt(1), blockAt(2), SEALED);
    const longEntry = lowerOf.get(`long/${LONG}`)!;
    await rm(join(v, longEntry + ".n"));
    const orphan = `${dirOf(longEntry)}/cm.L.${"B".repeat(43)}.n`;
    await writeFile(join(v, orphan), "orphan\n");

    const expected: Partial<FsckProblem>[] = [
      { code: "BLOCK_AUTH", path: "/docs/report.txt", block: 2 },
      { code: "HEADER_AUTH", path: "/docs/header.txt" },
      { code: "NAME_AUTH", lower: tampered },
      { code: "MISSING_DIR_ID", path: "/sub" },
      { code: "TRUNCATED", path: "/trunc.bin" },
      { code: "BLOCK_AUTH", path: "/swap.bin", block: 1 },
      { code: "BLOCK_AUTH", path: "/swap.bin", block: 2 },
      { code: "LONG_NAME_MISSING", lower: longEntry },
      { severity: "warning", code: "ORPHAN_SIDECAR", lower: orphan },
    ];
    await expectProblems(v, expected);

    const before = snapshot(v);
    const { code, report } = await fsck(sb, v, ["--repair"]);
    expect(code).toBe(7);
    const repaired = report.problems.filter((p) => p.repaired);
    expect(repaired.map((p) => p.code)).toEqual(["ORPHAN_SIDECAR"]);
    const after = snapshot(v);
    const { [orphan]: removed, ...rest } = before;
    expect(removed).toBeDefined();
    expect(after).toEqual(rest);
    await expectProblems(v, expected.slice(0, -1));
  });

  describe("the check record (§3.4)", () => {
    /** A copy whose files are older than fsck's racy margin (2 s), so a check records them. */
    async function settledCopy(): Promise<string> {
      const v = await copy();
      await new Promise((r) => setTimeout(r, 2100));
      return v;
    }
    const all = Object.keys(FILES).length;

    it("a repeat check reads only what changed; a flipped byte is found and named; --full reads everything", async () => {
      const v = await settledCopy();
      // The copied record is valid, but no copied file has the inode it lists.
      let r = await fsck(sb, v);
      expect(r.code, r.stderr).toBe(0);
      expect(r.report).toMatchObject({ files: all, checked: all, skipped: 0 });
      expect(r.report.record).toMatchObject({ written: true, files: all });
      expect(r.stderr).toMatch(
        /fsck .*: 9 files \(9 checked, 0 unchanged since the last check\).*: clean/,
      );

      r = await fsck(sb, v);
      expect(r.code).toBe(0);
      expect(r.report).toMatchObject({ files: all, checked: 0, skipped: all, bytes: 0 });
      expect(r.report.skippedBytes).toBe(Object.values(FILES).reduce((n, d) => n + d.length, 0));
      expect(r.report.record).toMatchObject({ found: "valid", used: true, written: true });
      expect(r.report.record.age).toBeGreaterThanOrEqual(0);
      expect(r.report.record.age).toBeLessThan(60);

      // A byte flipped in place changes the file's ctime: the next check reads it.
      await flipBit(lowerPath(v, "docs/report.txt"), blockAt(2) + 40);
      const flipped = [{ code: "BLOCK_AUTH", path: "/docs/report.txt", block: 2 }];
      r = await fsck(sb, v);
      expect(r.code).toBe(7);
      expect(r.report).toMatchObject({ checked: 1, skipped: all - 1 });
      expect(r.report.problems).toEqual([expect.objectContaining(flipped[0])]);
      // A damaged file never goes into the record: every later check reads it again.
      r = await fsck(sb, v);
      expect(r.code).toBe(7);
      expect(r.report).toMatchObject({ checked: 1, skipped: all - 1 });
      expect(r.report.record.files).toBe(all - 1);

      r = await fsck(sb, v, ["--full"]);
      expect(r.code).toBe(7);
      expect(r.report).toMatchObject({ checked: all, skipped: 0 });
      expect(r.report.record.used).toBe(false);
      expect(r.report.problems).toEqual([expect.objectContaining(flipped[0])]);

      // --full-after: a full check when the last one began longer ago than that.
      r = await fsck(sb, v, ["--full-after", "0"]);
      expect(r.report).toMatchObject({ checked: all, skipped: 0 });
      r = await fsck(sb, v, ["--full-after", "7"]);
      expect(r.report).toMatchObject({ checked: 1, skipped: all - 1 });
      const bad = await cli(sb, ["fsck", "--passfile", sb.passfile, "--full-after", "x", v]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/--full-after/);

      // The mount hides the record.
      const m = await mountVolume(sb, v);
      try {
        expect((await readdir(m.mountpoint)).sort()).toEqual(
          ["docs", "empty.txt", "long", "sub", "swap.bin", "trunc.bin"].sort(),
        );
      } finally {
        await unmountVolume(sb, m);
      }
    });

    it("a forged, damaged or foreign record: a warning, a full check, and a new record", async () => {
      const v = await settledCopy();
      expect((await fsck(sb, v)).report.record.files).toBe(all);
      const record = join(v, CHECK_RECORD_NAME);
      const valid = await readFile(record);

      // A bit flipped in the MAC, a truncated record, another volume's record.
      const other = (await initVolume(sb, ["--no-recovery"])).lower;
      await runOk("cp", [record, join(other, CHECK_RECORD_NAME)]);
      const forged = Buffer.from(valid);
      forged[forged.length - 1]! ^= 1;
      for (const [volume, bytes] of [
        [v, forged],
        [v, valid.subarray(0, valid.length - 16)],
        [other, valid],
      ] as const) {
        await writeFile(join(volume, CHECK_RECORD_NAME), bytes);
        const r = await fsck(sb, volume);
        expect(r.code, r.stderr).toBe(0);
        expect(r.report.record).toMatchObject({ found: "invalid", used: false, written: true });
        expect(r.report.skipped).toBe(0);
        expect(r.report.problems).toEqual([
          expect.objectContaining({
            severity: "warning",
            code: "CHECK_RECORD_INVALID",
            lower: CHECK_RECORD_NAME,
          }),
        ]);
        // The record written in its place is trusted by the next check.
        const again = await fsck(sb, volume);
        expect(again.report.record).toMatchObject({ found: "valid", used: true });
        expect(again.report.problems).toEqual([]);
      }

      // A symlink at the record's name is never followed: refused, then replaced itself.
      const outside = sb.path("outside-record");
      await writeFile(outside, valid);
      await rm(record);
      await symlink(outside, record);
      const r = await fsck(sb, v);
      expect(r.report.record.found).toBe("invalid");
      expect(r.report.checked).toBe(all);
      expect((await lstat(record)).isFile()).toBe(true);
      expect(await readFile(outside)).toEqual(valid);
    });

    it("--no-record reads everything and writes nothing", async () => {
      const v = await settledCopy();
      await rm(join(v, CHECK_RECORD_NAME), { force: true });
      const before = lowerSnapshot(v);
      const r = await fsck(sb, v, ["--no-record"]);
      expect(r.code).toBe(0);
      expect(r.report).toMatchObject({ checked: all, skipped: 0 });
      expect(r.report.record).toEqual({ found: "off", used: false, written: false });
      expect(lowerSnapshot(v)).toEqual(before);
    });
  });
});
