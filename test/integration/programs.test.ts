// Real programs on a mounted volume: cp, diff, cmp, dd, tar, git, sqlite3,
// rsync, mv, python3 (open files, mmap), touch/chmod/chown, truncate, df,
// setfattr/getfattr, and concurrent appenders. Every workload runs in child
// processes; the server is the CLI's background process.

import { chmod, mkdir, symlink, link, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  Sandbox,
  mountedSuite,
  haveFuse,
  listTree,
  pyOk,
  q,
  run,
  runOk,
  seededBytes,
  sh,
  shOk,
  start,
  waitFor,
  type Mounted,
  type SuiteMount,
} from "../helpers/volume.js";

const B = 32 * 1024;
const MiB = 1024 * 1024;

let sb: Sandbox;
let lower: string;
let m: Mounted;
/** A fresh directory in the mount for each test. */
let work: string;

/** Names, types, modes, sizes, link counts and symlink targets below `dir`; whole-second mtimes when asked. */
async function listing(dir: string, times = false): Promise<string> {
  const t = times ? " %Ts" : "";
  return shOk(
    `cd ${q(dir)} && find . -mindepth 1 \\( -type d -printf '%p d %m${t}\\n' \\) -o ` +
      `\\( -type l -printf '%p l %m %s %n${t} -> %l\\n' \\) -o -printf '%p %y %m %s %n${t}\\n' | sort`,
  );
}

async function remount(): Promise<void> {
  m = await sb.remount(m);
}

describe.skipIf(!haveFuse)("programs on a mounted volume", () => {
  mountedSuite("programs", (s: SuiteMount) => ({ sb, lower, m, work } = s));

  it("cp -a of a tree (symlinks, hard link, empty and block-edge files, several MiB) matches the source", async () => {
    const src = await sb.mkdir("src");
    const sizes: Record<string, number> = {
      empty: 0,
      one: 1,
      "block-minus-1": B - 1,
      block: B,
      "block-plus-1": B + 1,
      "two-blocks": 2 * B,
      "three-blocks-minus-1": 3 * B - 1,
      large: 5 * MiB + 12345,
    };
    await mkdir(join(src, "sub/deeper"), { recursive: true });
    for (const [name, size] of Object.entries(sizes)) {
      await writeFile(join(src, name), seededBytes(`cp-${name}`, size));
      await writeFile(join(src, "sub", name), seededBytes(`cp-sub-${name}`, Math.min(size, 3 * B)));
    }
    await writeFile(join(src, "sub/deeper/note.txt"), "deep\n");
    await symlink("block", join(src, "link-to-block"));
    await symlink("../one", join(src, "sub/relative-link"));
    await symlink("/nonexistent/dangling", join(src, "dangling"));
    await link(join(src, "one"), join(src, "hard-link-to-one"));
    await chmod(join(src, "sub/deeper/note.txt"), 0o640);
    await chmod(join(src, "block"), 0o755);
    await utimes(join(src, "large"), 1_000_000_000, 1_100_000_000);

    const dst = join(work, "copy");
    await runOk("cp", ["-a", src, dst]);
    const check = async () => {
      expect((await run("diff", ["-r", "--no-dereference", src, dst])).stdout).toBe("");
      for (const name of Object.keys(sizes)) await runOk("cmp", [join(src, name), join(dst, name)]);
      expect(await listing(dst, true)).toBe(await listing(src, true));
      expect(
        await runOk("stat", ["-c", "%h", join(dst, "one"), join(dst, "hard-link-to-one")]),
      ).toBe("2\n2");
    };
    await check();
    await remount();
    await check();

    // The hard link is one file: a write through one name shows through the other.
    await shOk(`printf Z | dd of=${q(join(dst, "one"))} conv=notrunc status=none`);
    expect(await runOk("cat", [join(dst, "hard-link-to-one")])).toBe("Z");
  });

  it("dd at odd offsets with conv=notrunc matches the same writes on a plain file", async () => {
    const plainDir = await sb.mkdir("dd");
    const plain = join(plainDir, "file");
    const inMount = join(work, "file");
    const base = seededBytes("dd-base", 200_000);
    await writeFile(plain, base);
    await runOk("cp", [plain, inMount]);
    const patches: [number, number][] = [
      [1, 10],
      [B - 1, 2],
      [2 * B - 5, B + 10],
      [99_999, 7],
      [200_000 - 3, 50], // grows the file
      [260_001, 1_000], // leaves a hole, then grows
      [B * 3, B], // exactly one aligned block inside the hole
      [0, 1],
    ];
    for (const [i, [offset, length]] of patches.entries()) {
      const patch = join(plainDir, `patch-${i}`);
      await writeFile(patch, seededBytes(`dd-patch-${i}`, length));
      for (const target of [plain, inMount]) {
        await runOk("dd", [
          `if=${patch}`,
          `of=${target}`,
          `bs=${length}`,
          "count=1",
          `seek=${offset}`,
          "oflag=seek_bytes",
          "conv=notrunc",
          "status=none",
        ]);
      }
      await runOk("cmp", [plain, inMount]);
    }
    // Odd-offset reads too.
    for (const [offset, length] of [
      [B - 1, 3],
      [12345, 70_001],
      [259_000, 5_000],
    ] as const) {
      const read = (f: string) =>
        runOk("sh", [
          "-c",
          `dd if=${q(f)} bs=${length} count=1 skip=${offset} iflag=skip_bytes status=none | sha256sum`,
        ]);
      expect(await read(inMount)).toBe(await read(plain));
    }
    await remount();
    await runOk("cmp", [plain, inMount]);
  });

  it("tar round trips preserve contents, modes and mtimes (tar -xpf)", async () => {
    const src = await sb.mkdir("tar-src");
    await shOk(
      [
        `cd ${q(src)}`,
        "mkdir -p a/b/c empty-dir",
        "printf 'hello\\n' > a/hello.txt",
        `head -c ${3 * B + 17} /dev/zero | tr '\\0' 'x' > a/b/big`,
        "printf '' > a/b/c/empty",
        "chmod 600 a/hello.txt && chmod 751 a/b",
        "ln -s hello.txt a/link",
        "touch -h -d '2001-02-03 04:05:06' a/link",
        "touch -d '1999-12-31 23:59:59' a/hello.txt",
        "touch -d '2010-06-15 12:00:00' a/b/big a/b/c/empty",
        "touch -d '2005-05-05 05:05:05' a/b/c a/b empty-dir a",
      ].join(" && "),
    );
    const archive = join(sb.dir, "round.tar");
    await runOk("tar", ["-cf", archive, "-C", src, "."]);
    const dst = join(work, "extracted");
    await runOk("mkdir", [dst]);
    await runOk("tar", ["-xpf", archive, "-C", dst]);
    const stats = (dir: string) =>
      shOk(`cd ${q(dir)} && find . -mindepth 1 | sort | xargs stat -c '%n %F %a %Y'`);
    expect(await stats(dst)).toBe(await stats(src));
    expect(await listing(dst, true)).toBe(await listing(src, true));
    expect((await run("diff", ["-r", "--no-dereference", src, dst])).stdout).toBe("");

    // And back out of the mount.
    await remount();
    const again = join(sb.dir, "from-mount.tar");
    await runOk("tar", ["-cf", again, "-C", dst, "."]);
    const out = await sb.mkdir("tar-out");
    await runOk("tar", ["-xpf", again, "-C", out]);
    expect(await stats(out)).toBe(await stats(src));
  });

  it("git init/add/commit/log/gc/fsck work inside the mount", async () => {
    const repo = join(work, "repo");
    const git = (...args: string[]) =>
      runOk(
        "git",
        [
          "-c",
          "user.name=Test",
          "-c",
          "user.email=test@example.com",
          "-c",
          "init.defaultBranch=main",
          "-C",
          repo,
          ...args,
        ],
        {
          env: { ...sb.env, GIT_CONFIG_NOSYSTEM: "1" },
        },
      );
    await runOk("mkdir", [repo]);
    await git("init", "-q");
    for (let i = 0; i < 5; i++) {
      await shOk(
        `cd ${q(repo)} && mkdir -p src/m${i % 2} && seq 1 ${200 * (i + 1)} > src/m${i % 2}/f${i}.txt && printf 'commit %s\\n' ${i} >> README`,
      );
      await git("add", "-A");
      await git("commit", "-q", "-m", `commit ${i}`);
    }
    await git("mv", "README", "README.md");
    await git("commit", "-q", "-m", "rename");
    expect((await git("log", "--oneline")).split("\n")).toHaveLength(6);
    await git("gc", "-q", "--aggressive", "--prune=now");
    expect(await git("count-objects", "-v")).toMatch(/^packs: 1$/m);
    await git("fsck", "--full", "--strict");
    expect(await git("status", "--porcelain")).toBe("");

    await remount();
    await git("fsck", "--full", "--strict");
    expect(await git("log", "-1", "--format=%s")).toBe("rename");
    expect(await git("show", "HEAD~1:src/m0/f4.txt")).toBe(await runOk("seq", ["1", "1000"]));
    const clone = join(sb.dir, "clone");
    await runOk("git", ["clone", "-q", repo, clone], { env: sb.env });
    expect((await run("diff", ["-r", "-x", ".git", repo, clone])).stdout).toBe("");
  });

  it("sqlite3 in WAL mode: 10k rows in transactions, integrity_check ok, reopened after a remount", async () => {
    const db = join(work, "test.db");
    const batches = Array.from({ length: 10 }, (_, i) =>
      [
        "BEGIN;",
        `WITH RECURSIVE c(x) AS (SELECT ${i * 1000 + 1} UNION ALL SELECT x + 1 FROM c WHERE x < ${(i + 1) * 1000})`,
        "INSERT INTO t(id, v) SELECT x, printf('%0200d', x * 7919) FROM c;",
        "COMMIT;",
      ].join("\n"),
    ).join("\n");
    const sql = [
      "PRAGMA journal_mode=WAL;",
      "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
      "CREATE INDEX t_v ON t(v);",
      batches,
      "UPDATE t SET v = 'changed' WHERE id % 100 = 0;",
      "DELETE FROM t WHERE id % 1000 = 1;",
      "SELECT count(*), sum(id) FROM t;",
      "PRAGMA integrity_check;",
    ].join("\n");
    const out = await runOk("sqlite3", [db], { input: sql, timeoutMs: 180_000 });
    const expectedSum =
      (10_000 * 10_001) / 2 -
      Array.from({ length: 10 }, (_, i) => i * 1000 + 1).reduce((a, b) => a + b, 0);
    expect(out.split("\n")).toEqual(["wal", `9990|${expectedSum}`, "ok"]);

    await remount();
    const check = [
      "PRAGMA journal_mode;",
      "PRAGMA integrity_check;",
      "SELECT count(*), sum(id), sum(v = 'changed') FROM t;",
      "PRAGMA wal_checkpoint(TRUNCATE);",
    ].join("\n");
    const reopened = await runOk("sqlite3", [db], { input: check });
    expect(reopened.split("\n").slice(0, 3)).toEqual(["wal", "ok", `9990|${expectedSum}|100`]);
    await runOk("sqlite3", [db], { input: "INSERT INTO t(id, v) VALUES (100001, 'after');" });
    expect(
      await runOk("sqlite3", [db, "SELECT v FROM t WHERE id = 100001; PRAGMA integrity_check;"]),
    ).toBe("after\nok");
  });

  it("rsync -a into the mount, then rsync -a --checksum --dry-run has nothing to do", async () => {
    const src = await sb.mkdir("rsync-src");
    await mkdir(join(src, "d1"));
    await writeFile(join(src, "d1/big"), seededBytes("rsync-big", 2 * MiB + 5));
    await shOk(
      [
        `cd ${q(src)}`,
        "mkdir -p d1/d2 d3",
        "seq 1 50000 > d1/d2/numbers",
        "printf '' > d3/empty",
        "ln -s d2/numbers d1/link",
        "chmod 700 d3",
        "touch -d '2015-01-01 00:00:00' d1/d2/numbers",
      ].join(" && "),
    );
    const dst = join(work, "mirror");
    await runOk("rsync", ["-a", `${src}/`, `${dst}/`]);
    const dry = (...extra: string[]) =>
      runOk("rsync", ["-a", "--dry-run", "--itemize-changes", ...extra, `${src}/`, `${dst}/`]);
    expect(await dry("--checksum")).toBe("");
    expect(await dry()).toBe("");
    await remount();
    expect(await dry("--checksum")).toBe("");
    // An in-place update of a big file (rsync's delta transfer) stays in sync too.
    await shOk(
      `printf 'patched' | dd of=${q(join(src, "d1/big"))} bs=1 seek=1000000 conv=notrunc status=none`,
    );
    await runOk("rsync", ["-a", "--inplace", "--no-whole-file", `${src}/`, `${dst}/`]);
    expect(await dry("--checksum")).toBe("");
    await runOk("cmp", [join(src, "d1/big"), join(dst, "d1/big")]);
  });

  it("rename semantics: over a file, directories across directories, onto empty and non-empty directories", async () => {
    const w = work;
    await shOk(
      [
        `cd ${q(w)}`,
        "umask 022",
        "mkdir -p a/sub b c/inner d",
        "printf old > target && printf new > source",
        "printf child > a/sub/child",
        "printf x > d/occupant",
      ].join(" && "),
    );
    // mv over an existing file replaces it.
    await runOk("mv", [join(w, "source"), join(w, "target")]);
    expect(await runOk("cat", [join(w, "target")])).toBe("new");
    expect(await runOk("ls", [w])).toBe("a\nb\nc\nd\ntarget");

    // A directory with content renamed into another directory keeps its content.
    await runOk("mv", [join(w, "a/sub"), join(w, "b/moved")]);
    expect(await runOk("cat", [join(w, "b/moved/child")])).toBe("child");
    expect(await runOk("ls", ["-A", join(w, "a")])).toBe("");
    // And new entries in it still work (its directory ID went with it).
    await shOk(`printf more > ${q(join(w, "b/moved/second"))}`);

    // Onto an empty directory: replaces it.
    const pyRename =
      "import os,sys\ntry:\n  os.rename(sys.argv[1], sys.argv[2]); print('ok')\nexcept OSError as e: print(e.errno)";
    expect(await pyOk(pyRename, [join(w, "b/moved"), join(w, "c/inner")])).toBe("ok");
    expect(await runOk("ls", [join(w, "c/inner")])).toBe("child\nsecond");
    // Onto a non-empty directory: ENOTEMPTY (39), nothing changes.
    expect(await pyOk(pyRename, [join(w, "c"), join(w, "d")])).toBe("39");
    expect(await runOk("ls", [join(w, "d")])).toBe("occupant");
    // File over directory: EISDIR (21); directory over file: ENOTDIR (20).
    expect(await pyOk(pyRename, [join(w, "target"), join(w, "d")])).toBe("21");
    expect(await pyOk(pyRename, [join(w, "c"), join(w, "target")])).toBe("20");
    // A directory into its own subdirectory: EINVAL (22).
    expect(await pyOk(pyRename, [join(w, "c"), join(w, "c/inner/loop")])).toBe("22");

    await remount();
    expect(await listing(work)).toBe(
      [
        "./a d 755",
        "./b d 755",
        "./c d 755",
        "./c/inner d 755",
        "./c/inner/child f 644 5 1",
        "./c/inner/second f 644 4 1",
        "./d d 755",
        "./d/occupant f 644 1 1",
        "./target f 644 3 1",
      ].join("\n"),
    );
  });

  it("rename between two hard links of one file does nothing (and long names keep their sidecar)", async () => {
    // rename(2): "If oldpath and newpath are existing hard links referring to
    // the same file, then rename() does nothing." A long-named source once
    // lost its sidecar here and vanished from listings.
    const a = "a".repeat(200);
    const b = "b".repeat(200);
    await shOk(
      `cd ${q(work)} && printf same > ${a} && ln ${a} ${b} && printf short > s1 && ln s1 s2`,
    );
    await pyOk(
      "import os,sys; os.rename(sys.argv[1], sys.argv[2]); os.rename(sys.argv[3], sys.argv[4])",
      [join(work, a), join(work, b), join(work, "s1"), join(work, "s2")],
    );
    const expected = [a, b, "s1", "s2"].join("\n");
    expect(await runOk("ls", [work])).toBe(expected);
    expect(await runOk("cat", [join(work, a), join(work, "s1")])).toBe("sameshort");
    await remount();
    expect(await runOk("ls", [work])).toBe(expected);
    expect(await runOk("stat", ["-c", "%h", join(work, a)])).toBe("2");
  });

  it("a 255-byte name can be created, listed, stat'ed, renamed and deleted; below it is a hashed entry with a sidecar", async () => {
    const long1 = "a".repeat(250) + ".txt1";
    const long2 = "é".repeat(127) + "z"; // 255 bytes of UTF-8
    expect(Buffer.byteLength(long1)).toBe(255);
    expect(Buffer.byteLength(long2)).toBe(255);
    const dir = work;
    const before = (await listTree(lower)).filter((p) => /(^|\/)cm\.L\./.test(p));
    await shOk(`printf 'long name content' > ${q(join(dir, long1))}`);
    expect(await runOk("ls", [dir])).toBe(long1);
    expect(await runOk("stat", ["-c", "%s %F", join(dir, long1)])).toBe("17 regular file");

    // Below: a hashed entry and its sidecar, nothing else new.
    const longEntries = async () => (await listTree(lower)).filter((p) => /(^|\/)cm\.L\./.test(p));
    const created = (await longEntries()).filter((p) => !before.includes(p));
    expect(created).toHaveLength(2);
    const hashed = created.filter((p) => /(^|\/)cm\.L\.[A-Za-z0-9_-]{43}$/.test(p));
    expect(hashed).toHaveLength(1);
    expect(created).toEqual([hashed[0], hashed[0] + ".n"]);

    await runOk("mv", [join(dir, long1), join(dir, long2)]);
    expect(await runOk("ls", [dir])).toBe(long2);
    expect(await runOk("cat", [join(dir, long2)])).toBe("long name content");
    const renamed = (await longEntries()).filter((p) => !before.includes(p));
    expect(renamed).toHaveLength(2);
    expect(renamed).not.toContain(hashed[0]);

    // A name one byte longer is refused.
    const tooLong = await sh(`touch ${q(join(dir, "b".repeat(256)))}`);
    expect(tooLong.stderr).toMatch(/File name too long/);

    await remount();
    expect(await runOk("ls", [dir])).toBe(long2);
    await runOk("rm", [join(dir, long2)]);
    expect(await runOk("ls", ["-A", dir])).toBe("");
    expect(await longEntries()).toEqual(before);
  });

  it("an unlinked file stays readable and writable through an open descriptor", async () => {
    const f = join(work, "doomed");
    await runOk("python3", [
      "-c",
      `
import os, sys
path = sys.argv[1]
data = bytes(range(256)) * 300
with open(path, 'wb') as out: out.write(data)
fd = os.open(path, os.O_RDWR)
os.unlink(path)
assert not os.path.exists(path)
assert os.pread(fd, len(data), 0) == data
os.pwrite(fd, b'still here', 40000)
expect = data[:40000] + b'still here' + data[40010:]
assert os.pread(fd, len(data) + 10, 0) == expect
assert os.fstat(fd).st_size == len(data)
visible = [n for n in os.listdir(os.path.dirname(path)) if not n.startswith('.fuse_hidden')]
assert visible == [], visible
os.close(fd)
`,
      f,
    ]);
    // Once closed, nothing is left behind (no .fuse_hidden file either; the
    // kernel sends the release after close() returns, so allow it a moment).
    await waitFor("the hidden file to go", async () => (await runOk("ls", ["-A", work])) === "");
  });

  it("mmap writes (python3 mmap) reach the file and survive a remount", async () => {
    const f = join(work, "mapped");
    const script = `
import mmap, os, sys
path = sys.argv[1]
size = 3 * 32768 + 100
with open(path, 'wb') as out: out.write(bytes(i % 251 for i in range(size)))
with open(path, 'r+b') as fh:
    mm = mmap.mmap(fh.fileno(), 0)
    assert mm[:10] == bytes(range(10))
    assert mm[32767:32770] == bytes(i % 251 for i in range(32767, 32770))
    mm[32760:32780] = b'A' * 20          # across a block boundary
    mm[size - 5:size] = b'ENDED'         # in the partial last block
    mm[0:4] = b'HEAD'
    mm.flush()
    mm.close()
with open(path, 'rb') as fh: data = fh.read()
assert len(data) == size
assert data[0:4] == b'HEAD' and data[32760:32780] == b'A' * 20 and data[-5:] == b'ENDED'
print(len(data))
`;
    expect(await pyOk(script, [f])).toBe(String(3 * B + 100));
    const expected = await pyOk(
      `import hashlib
size = 3 * 32768 + 100
d = bytearray(i % 251 for i in range(size))
d[32760:32780] = b'A' * 20; d[size-5:size] = b'ENDED'; d[0:4] = b'HEAD'
print(hashlib.sha256(bytes(d)).hexdigest())`,
    );
    await remount();
    expect((await runOk("sha256sum", [f])).split(" ")[0]).toBe(expected);
    // A read-only mapping after the remount sees the same bytes.
    const mappedHash = await pyOk(
      "import mmap,sys,hashlib\nwith open(sys.argv[1],'rb') as fh:\n  mm=mmap.mmap(fh.fileno(),0,access=mmap.ACCESS_READ); print(hashlib.sha256(mm[:]).hexdigest())",
      [f],
    );
    expect(mappedHash).toBe(expected);
  });

  it("chmod, chown and utimens (touch -d) are kept", async () => {
    const f = join(work, "meta");
    const d = join(work, "dir");
    await shOk(`printf x > ${q(f)} && mkdir ${q(d)} && ln -s meta ${q(join(work, "ln"))}`);
    await runOk("chmod", ["0751", f]);
    await runOk("chmod", ["2710", d]);
    await runOk("chown", ["1234:5678", f]);
    await runOk("chown", ["-h", "4321:8765", join(work, "ln")]);
    await runOk("touch", ["-d", "2001-02-03 04:05:06.123456", f]);
    await runOk("touch", ["-h", "-d", "2002-03-04 05:06:07", join(work, "ln")]);
    await runOk("touch", ["-d", "1970-01-02 00:00:00", d]);
    const show = () =>
      runOk("stat", ["-c", "%n %a %u %g %Y", f, d, join(work, "ln")]).then((s) =>
        s.replaceAll(work + "/", ""),
      );
    const expected = [
      "meta 751 1234 5678 981173106",
      "dir 2710 0 0 86400",
      "ln 777 4321 8765 1015218367",
    ].join("\n");
    expect(await show()).toBe(expected);
    // Nanoseconds survive (the server sets times with utimensat relative to a directory handle).
    await runOk("touch", ["-m", "-d", "2001-02-03 04:05:06.123456789", f]);
    expect(await runOk("stat", ["-c", "%.9Y", f])).toBe("981173106.123456789");
    await remount();
    expect(await show()).toBe(expected);
  });

  it("touch -a changes only atime", async () => {
    const f = join(work, "times");
    await shOk(`printf x > ${q(f)}`);
    await runOk("touch", ["-m", "-d", "2004-01-01 00:00:00", f]);
    await runOk("touch", ["-a", "-d", "2003-01-01 00:00:00", f]);
    const times = async () => (await runOk("stat", ["-c", "%X %Y", f])).split(" ").map(Number);
    expect(await times()).toEqual([1041379200, 1072915200]);
    await runOk("touch", ["-a", f]);
    const [atime, mtime] = await times();
    expect(atime).toBeGreaterThan(1072915200);
    expect(mtime).toBe(1072915200);
  });

  // Opening a file reads its lower header; without O_NOATIME on the lower
  // open that read bumped the atime that `touch -m` (UTIME_OMIT) must keep.
  it("touch -m changes only mtime (keeps atime)", async () => {
    const f = join(work, "times");
    await shOk(`printf x > ${q(f)}`);
    await runOk("touch", ["-a", "-d", "2003-01-01 00:00:00", f]);
    await runOk("touch", ["-m", "-d", "2004-01-01 00:00:00", f]);
    const times = async () => (await runOk("stat", ["-c", "%X %Y", f])).split(" ").map(Number);
    expect(await times()).toEqual([1041379200, 1072915200]);
    await runOk("touch", ["-m", f]);
    const [atime, mtime] = await times();
    expect(mtime).toBeGreaterThan(1072915200);
    expect(atime).toBe(1041379200);
  });

  it("truncate grows and shrinks across block boundaries like a plain file", async () => {
    const plainDir = await sb.mkdir("trunc");
    const plain = join(plainDir, "file");
    const inMount = join(work, "file");
    await writeFile(plain, seededBytes("trunc", 2 * B + 500));
    await runOk("cp", [plain, inMount]);
    for (const size of [
      3 * B + 7,
      B + 1,
      B,
      B - 1,
      0,
      1,
      5 * B,
      2 * B - 1,
      2 * B,
      4 * B + 1,
      100,
      0,
    ]) {
      for (const target of [plain, inMount]) await runOk("truncate", ["-s", String(size), target]);
      expect(await runOk("stat", ["-c", "%s", inMount])).toBe(String(size));
      await runOk("cmp", [plain, inMount]);
      // Write past the end after a shrink, too.
      if (size === B - 1) {
        for (const target of [plain, inMount]) {
          await runOk("sh", [
            "-c",
            `printf tail | dd of=${q(target)} bs=1 seek=${B + 3} conv=notrunc status=none`,
          ]);
        }
        await runOk("cmp", [plain, inMount]);
      }
    }
    // Shrink and grow through an open descriptor (ftruncate) with reads in between.
    await pyOk(
      `import os,sys
for path in sys.argv[1:]:
    fd = os.open(path, os.O_RDWR)
    os.pwrite(fd, b'q' * 70000, 0)
    os.ftruncate(fd, 40000); assert os.pread(fd, 100000, 0) == b'q' * 40000
    os.ftruncate(fd, 90000); assert os.pread(fd, 100000, 0) == b'q' * 40000 + bytes(50000)
    os.close(fd)`,
      [plain, inMount],
    );
    await runOk("cmp", [plain, inMount]);
    await remount();
    await runOk("cmp", [plain, inMount]);
  });

  it("statfs: df and stat -f work on the mount", async () => {
    const df = await runOk("df", ["-P", m.mountpoint]);
    expect(df.split("\n")[1]).toContain(m.mountpoint);
    expect(df.split("\n")[1]).toContain(lower);
    await runOk("df", ["-i", m.mountpoint]);
    expect(await runOk("stat", ["-f", "-c", "%l", m.mountpoint])).toBe("255");
    const blocks = Number(await runOk("stat", ["-f", "-c", "%b", m.mountpoint]));
    expect(blocks).toBeGreaterThan(0);
  });

  it("several processes appending to one file (O_APPEND) give the right total size", async () => {
    const f = join(work, "log");
    const writers = 4;
    const records = 500;
    const script = `
import os, sys
path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
for i in range(n):
    line = ('%s %06d ' % (tag, i)).encode() + b'.' * 89 + b'\\n'
    assert len(line) == 100
    os.write(fd, line)
os.close(fd)
`;
    const children = Array.from({ length: writers }, (_, w) =>
      start("python3", ["-c", script, f, `w${w}`, String(records)]),
    );
    for (const child of children) {
      const r = await child.done;
      expect(r.code, r.stderr).toBe(0);
    }
    expect(await runOk("stat", ["-c", "%s", f])).toBe(String(writers * records * 100));
    // Every record arrived whole, each writer's in order.
    await pyOk(
      `import sys, re
lines = open(sys.argv[1], 'rb').read().split(b'\\n')[:-1]
assert len(lines) == ${writers * records}, len(lines)
seen = {}
for line in lines:
    m = re.fullmatch(rb'(w\\d) (\\d{6}) \\.{89}', line)
    assert m, line
    tag, i = m.group(1), int(m.group(2))
    assert seen.get(tag, -1) == i - 1, (tag, i)
    seen[tag] = i`,
      [f],
    );
  });

  it("extended attributes (setfattr/getfattr) are kept and stored encrypted", async () => {
    const f = join(work, "xattrs");
    await shOk(`printf x > ${q(f)}`);
    const set = await run("setfattr", ["-n", "user.colour", "-v", "PurpleMarker42", f]);
    if (set.code !== 0 && /Operation not supported/.test(set.stderr)) {
      // The lower filesystem (tmpfs without user xattrs, say) has none to offer.
      return;
    }
    expect(set.code, set.stderr).toBe(0);
    await runOk("setfattr", ["-n", "user.empty", "-v", '""', f]);
    expect(await runOk("getfattr", ["--only-values", "-n", "user.colour", f])).toBe(
      "PurpleMarker42",
    );
    const names = await runOk("getfattr", ["-d", "-m", "-", f]);
    expect(names).toContain('user.colour="PurpleMarker42"');
    // Nothing readable below.
    const below = await runOk("getfattr", ["-R", "-h", "-d", "-m", "-", "--absolute-names", lower]);
    expect(below).not.toContain("PurpleMarker42");
    expect(below).not.toContain("colour");
    await runOk("setfattr", ["-x", "user.colour", f]);
    const gone = await run("getfattr", ["-n", "user.colour", f]);
    expect(gone.code).not.toBe(0);
    expect(gone.stderr).toMatch(/No such attribute/);
    await remount();
    expect(await runOk("getfattr", ["-d", "-m", "user.", f])).toContain("user.empty");
  });
});
