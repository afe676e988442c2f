import {
  closeSync,
  constants,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statfsSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  chmodSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getAttributeSync, listAttributesSync, setAttributeSync } from "fs-xattr";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FsError, type ErrnoName } from "../../src/fs/errors.js";
import {
  directLowerOps,
  inodeKey,
  isDir,
  isFile,
  isSymlink,
  lowerOpsFor,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  threadedLowerOps,
  UNDECODABLE_NAME_PREFIX,
  XATTR_CREATE,
  XATTR_REPLACE,
  type Fd,
  type LowerOps,
} from "../../src/fs/lower/ops.js";

const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC, O_NOATIME, S_IFIFO, S_IFCHR } =
  constants;

/** What a test must never change: everything about the file outside the lower directory. */
interface Snapshot {
  mode: number;
  uid: number;
  gid: number;
  size: bigint;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  content: string;
  xattrs: Record<string, string>;
}

function snapshot(path: string): Snapshot {
  const st = lstatSync(path, { bigint: true });
  // O_NOATIME: reading the content must not itself move atime.
  const fd = openSync(path, O_RDONLY | O_NOATIME);
  const content = Buffer.alloc(4096);
  const n = readSync(fd, content, 0, content.length, 0);
  closeSync(fd);
  const xattrs: Record<string, string> = {};
  for (const attr of listAttributesSync(path))
    xattrs[attr] = getAttributeSync(path, attr).toString("hex");
  return {
    mode: Number(st.mode),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: st.size,
    atimeNs: st.atimeNs,
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
    content: content.subarray(0, n).toString(),
    xattrs,
  };
}

/** The promise's rejection, which must be an FsError with `errno` (one of them). */
async function failure(promise: Promise<unknown>, ...errnos: ErrnoName[]): Promise<FsError> {
  const err: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${errnos.join(" or ")}`).toBeInstanceOf(FsError);
  const fsErr = err as FsError;
  expect(errnos).toContain(fsErr.errno);
  return fsErr;
}

/** Settles within `ms`, or fails the test (a FIFO open that blocks would hang forever). */
function promptly<T>(promise: Promise<T>, ms = 2000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const flavours: [string, LowerOps][] = [
  ["direct", directLowerOps],
  ["threaded", threadedLowerOps],
];

describe.each(flavours)("lower ops (%s)", (_flavour, ops) => {
  let base: string;
  let lower: string;
  let outsideFile: string;
  let outsideDir: string;
  let root: Fd;
  let opened: Fd[];

  const track = <T extends Fd>(fd: T): T => (opened.push(fd), fd);
  const openDir = async (dir: Fd, name: string) => track(await ops.openDir(dir, name));
  const openFile = async (dir: Fd, name: string, flags: number, mode?: number) => {
    const file = await ops.openFile(dir, name, flags, mode);
    track(file.fd);
    return file;
  };

  beforeEach(async () => {
    opened = [];
    base = mkdtempSync(join(tmpdir(), "cm-lower-ops-"));
    lower = join(base, "lower");
    outsideDir = join(base, "outside");
    outsideFile = join(outsideDir, "secret");
    mkdirSync(lower);
    mkdirSync(outsideDir);
    writeFileSync(outsideFile, "outside content");
    chmodSync(outsideFile, 0o640);
    setAttributeSync(outsideFile, "user.keep", "kept");
    utimesSync(outsideFile, 1_000_000, 2_000_000);
    root = track(await ops.openRoot(lower));
  });

  afterEach(() => {
    for (const fd of opened) {
      try {
        closeSync(fd);
      } catch {
        // already closed by the test
      }
    }
    rmSync(base, { recursive: true, force: true });
  });

  describe("never follows a symlink planted where an entry was", () => {
    let before: Snapshot;
    beforeEach(() => {
      symlinkSync(outsideFile, join(lower, "link"));
      symlinkSync(outsideDir, join(lower, "dirlink"));
      before = snapshot(outsideFile);
    });
    afterEach(() => {
      expect(snapshot(outsideFile)).toEqual(before);
      expect(readFileSync(outsideFile, "utf8")).toBe("outside content");
    });

    it("stat reports the symlink itself", async () => {
      const st = await ops.stat(root, "link");
      expect(isSymlink(st)).toBe(true);
      expect(st.ino).not.toBe(lstatSync(outsideFile, { bigint: true }).ino);
      expect(isSymlink(await ops.stat(root, "dirlink"))).toBe(true);
    });

    it("openDir refuses a symlink to a directory", async () => {
      await failure(ops.openDir(root, "dirlink"), "ENOTDIR", "ELOOP");
      await failure(ops.openDir(root, "link"), "ENOTDIR", "ELOOP");
    });

    it("openFile refuses it with every flag combination", async () => {
      for (const flags of [O_RDONLY, O_WRONLY, O_RDWR, O_RDWR | O_TRUNC, O_CREAT | O_WRONLY])
        await failure(ops.openFile(root, "link", flags, 0o600), "ELOOP");
      await failure(ops.openFile(root, "link", O_CREAT | O_EXCL | O_WRONLY, 0o600), "EEXIST");
    });

    it("readSmallFile and createFile refuse it", async () => {
      await failure(ops.readSmallFile(root, "link", 1 << 20), "ELOOP");
      const content = Buffer.from("overwritten");
      await failure(
        ops.createFile(root, "link", content, 0o600, { exclusive: false, sync: false }),
        "ELOOP",
      );
      await failure(
        ops.createFile(root, "link", content, 0o600, { exclusive: true, sync: true }),
        "EEXIST",
      );
    });

    it("chmod refuses a symlink", async () => {
      await failure(ops.chmod(root, "link", 0o777), "EOPNOTSUPP");
    });

    it("chown and utimens change the symlink itself", async () => {
      await ops.chown(root, "link", 1234, 5678);
      await ops.utimens(root, "link", 111_000_000_001n, 222_000_000_002n);
      const st = await ops.stat(root, "link");
      expect([st.uid, st.gid]).toEqual([1234, 5678]);
      expect([st.atimeNs, st.mtimeNs]).toEqual([111_000_000_001n, 222_000_000_002n]);
      await ops.chown(root, "link", -1, 0);
      expect((await ops.stat(root, "link")).uid).toBe(1234);
    });

    it("xattr calls refuse a symlink (EPERM, as Linux does for user.*)", async () => {
      await failure(ops.getxattr(root, "link", "user.keep"), "EPERM");
      await failure(ops.listxattr(root, "link"), "EPERM");
      await failure(ops.setxattr(root, "link", "user.keep", Buffer.from("x"), 0), "EPERM");
      await failure(ops.removexattr(root, "link", "user.keep"), "EPERM");
      await failure(ops.getxattr(root, "dirlink", "user.keep"), "EPERM");
    });

    it("readlink, link, rename and unlink work on the symlink itself", async () => {
      expect(await ops.readlink(root, "link")).toBe(outsideFile);
      await ops.link(root, "link", root, "hard");
      expect(isSymlink(await ops.stat(root, "hard"))).toBe(true);
      await ops.rename(root, "link", root, "moved", 0);
      expect(isSymlink(await ops.stat(root, "moved"))).toBe(true);
      await ops.unlink(root, "moved");
      await ops.unlink(root, "hard");
      await failure(ops.stat(root, "moved"), "ENOENT");
    });

    it("creating calls do not write through it", async () => {
      await failure(ops.mkdir(root, "link", 0o700), "EEXIST");
      await failure(ops.mknod(root, "link", S_IFIFO | 0o600, 0), "EEXIST");
      await failure(ops.symlink("elsewhere", root, "link"), "EEXIST");
      await failure(ops.rmdir(root, "dirlink"), "ENOTDIR");
      await failure(ops.rename(root, "dirlink", root, "link", RENAME_NOREPLACE), "EEXIST");
    });

    it("nothing is created through a dangling symlink to a path outside", async () => {
      const target = join(outsideDir, "created");
      symlinkSync(target, join(lower, "dangling"));
      await failure(ops.openFile(root, "dangling", O_CREAT | O_WRONLY, 0o600), "ELOOP");
      await failure(
        ops.createFile(root, "dangling", Buffer.from("x"), 0o600, {
          exclusive: false,
          sync: false,
        }),
        "ELOOP",
      );
      await failure(ops.mkdir(root, "dangling", 0o700), "EEXIST");
      await failure(ops.mknod(root, "dangling", S_IFIFO | 0o600, 0), "EEXIST");
      await failure(ops.chmod(root, "dangling", 0o600), "EOPNOTSUPP");
      await failure(ops.setxattr(root, "dangling", "user.a", Buffer.from("x"), 0), "EPERM");
      expect(() => lstatSync(target)).toThrow(/ENOENT/);
    });

    it("a held directory descriptor keeps its directory when the path is swapped for a symlink", async () => {
      mkdirSync(join(lower, "dir"));
      const dir = await openDir(root, "dir");
      renameSync(join(lower, "dir"), join(lower, "dir-moved"));
      symlinkSync(outsideDir, join(lower, "dir"));
      await ops.createFile(dir, "secret", Buffer.from("inside"), 0o600, {
        exclusive: false,
        sync: false,
      });
      expect(readFileSync(join(lower, "dir-moved", "secret"), "utf8")).toBe("inside");
      await ops.chmod(dir, "", 0o711);
      expect(lstatSync(join(lower, "dir-moved")).mode & 0o777).toBe(0o711);
      expect(await ops.list(dir)).toEqual(["secret"]);
    });
  });

  describe("FIFOs and devices", () => {
    beforeEach(async () => {
      await ops.mknod(root, "fifo", S_IFIFO | 0o600, 0);
    });

    it("mknod made a FIFO", async () => {
      const st = await ops.stat(root, "fifo");
      expect(st.mode & constants.S_IFMT).toBe(S_IFIFO);
    });

    it("openFile returns promptly with an error for every access mode", async () => {
      const err = await promptly(failure(ops.openFile(root, "fifo", O_RDONLY), "EIO"));
      expect(err.message).toBe("lower entry is not a regular file");
      // O_WRONLY with O_NONBLOCK and no reader: ENXIO from the kernel.
      await promptly(failure(ops.openFile(root, "fifo", O_WRONLY), "ENXIO", "EIO"));
      await promptly(failure(ops.openFile(root, "fifo", O_RDWR), "EIO"));
      await promptly(failure(ops.openFile(root, "fifo", O_RDWR | O_CREAT, 0o600), "EIO"));
    });

    it("readSmallFile and createFile return promptly with an error", async () => {
      const err = await promptly(failure(ops.readSmallFile(root, "fifo", 4096), "EIO"));
      expect(err.message).toBe("lower entry is not a regular file");
      await promptly(
        failure(
          ops.createFile(root, "fifo", Buffer.from("x"), 0o600, { exclusive: false, sync: false }),
          "ENXIO",
          "EIO",
        ),
      );
    });

    it("xattr calls refuse a FIFO without opening it; chmod changes it without opening it", async () => {
      await promptly(failure(ops.getxattr(root, "fifo", "user.a"), "EPERM"));
      await promptly(failure(ops.setxattr(root, "fifo", "user.a", Buffer.from("x"), 0), "EPERM"));
      await promptly(ops.chmod(root, "fifo", 0o640));
      expect((await ops.stat(root, "fifo")).mode & 0o777).toBe(0o640);
    });

    it("openFile refuses a character device", async () => {
      const nullDevice = (1 << 8) | 3; // makedev(1, 3), /dev/null
      await ops.mknod(root, "null", S_IFCHR | 0o600, nullDevice);
      expect((await ops.stat(root, "null")).rdev).toBe(nullDevice);
      await failure(ops.openFile(root, "null", O_RDWR), "EIO");
      await failure(ops.readSmallFile(root, "null", 10), "EIO");
    });

    it("openDir refuses a FIFO and a regular file", async () => {
      writeFileSync(join(lower, "file"), "");
      await failure(ops.openDir(root, "fifo"), "ENOTDIR");
      await failure(ops.openDir(root, "file"), "ENOTDIR");
    });
  });

  describe("stat", () => {
    it("gives dev and ino as exact bigints, equal to node's bigint lstat", async () => {
      writeFileSync(join(lower, "f"), "12345");
      const st = await ops.stat(root, "f");
      const node = lstatSync(join(lower, "f"), { bigint: true });
      expect(typeof st.dev).toBe("bigint");
      expect(typeof st.ino).toBe("bigint");
      expect([st.dev, st.ino]).toEqual([node.dev, node.ino]);
      expect([st.atimeNs, st.mtimeNs, st.ctimeNs]).toEqual([
        node.atimeNs,
        node.mtimeNs,
        node.ctimeNs,
      ]);
      expect(st).toMatchObject({
        mode: Number(node.mode),
        nlink: 1,
        uid: Number(node.uid),
        gid: Number(node.gid),
        size: 5,
        blksize: Number(node.blksize),
        blocks: Number(node.blocks),
      });
      expect(isFile(st)).toBe(true);
      expect(inodeKey(st)).toBe(`${node.dev}:${node.ino}`);
    });

    it('"" is the directory itself; fstat agrees', async () => {
      const st = await ops.stat(root, "");
      expect(isDir(st)).toBe(true);
      expect(st.ino).toBe(lstatSync(lower, { bigint: true }).ino);
      expect(inodeKey(await ops.fstat(root))).toBe(inodeKey(st));
    });

    it("a missing entry is an FsError ENOENT without a stack", async () => {
      const err = await failure(ops.stat(root, "missing"), "ENOENT");
      expect(err.code).toBe("ENOENT");
      expect(err.stack ?? "").not.toMatch(/\n\s+at /);
    });
  });

  describe("names and arguments", () => {
    it("refuses a name that is not one component", async () => {
      mkdirSync(join(lower, "a"));
      writeFileSync(join(lower, "a", "b"), "");
      for (const name of ["a/b", "/etc", ".", "..", "a\0b"])
        await failure(ops.stat(root, name), "EINVAL");
      // A lone surrogate would become U+FFFD and reach this other entry.
      writeFileSync(join(lower, "x\ufffd"), "");
      expect(isFile(await ops.stat(root, "x\ufffd"))).toBe(true);
      for (const name of ["x\ud800", "x\udc00", "\udc00\ud800x"])
        await failure(ops.stat(root, name), "EINVAL");
      await failure(ops.symlink("x\ud800", root, "s"), "EINVAL");
      await ops.symlink("\ud83d\ude00", root, "emoji"); // a proper pair is fine
      expect(await ops.readlink(root, "emoji")).toBe("\ud83d\ude00");
      await failure(ops.openDir(root, ".."), "EINVAL");
      await failure(ops.openFile(root, "a/b", O_RDONLY), "EINVAL");
      await failure(ops.rename(root, "a", root, "../x", 0), "EINVAL");
    });

    it("refuses a name longer than NAME_MAX without cutting it", async () => {
      writeFileSync(join(lower, "x".repeat(255)), "");
      expect(isFile(await ops.stat(root, "x".repeat(255)))).toBe(true);
      await failure(ops.stat(root, "x".repeat(256)), "ENAMETOOLONG");
      // 254 ASCII bytes then a 3-byte character: 257 bytes, not 254.
      await failure(ops.stat(root, "x".repeat(254) + "\u20ac"), "ENAMETOOLONG");
    });

    it("reports a bad descriptor as EBADF and bad argument types as EINVAL", async () => {
      await failure(ops.stat(999_999, "x"), "EBADF");
      await failure(ops.stat("x" as unknown as Fd, "x"), "EINVAL");
      await failure(ops.pread(root, "buffer" as unknown as Buffer, 0, 1, 0), "EINVAL");
      // NaN or a fraction must not quietly become descriptor 0.
      for (const fd of [NaN, 1.5, Infinity, 2 ** 31]) await failure(ops.fstat(fd), "EINVAL");
      await failure(ops.ftruncate(root, NaN), "EINVAL");
    });
  });

  describe("files", () => {
    it("openFile creates, pread/pwrite move bytes, ftruncate, fsync, fstat, close", async () => {
      const { fd, stat } = await openFile(root, "data", O_RDWR | O_CREAT | O_EXCL, 0o600);
      expect(isFile(stat)).toBe(true);
      expect(stat.mode & 0o777).toBe(0o600);
      expect(await ops.pwrite(fd, Buffer.from("__hello__"), 2, 5, 10)).toBe(5);
      const buffer = Buffer.alloc(20, 0x2e);
      expect(await ops.pread(fd, buffer, 1, 19, 8)).toBe(7);
      expect(buffer.toString("latin1")).toBe(".\0\0hello" + ".".repeat(12));
      await ops.ftruncate(fd, 12);
      expect((await ops.fstat(fd)).size).toBe(12);
      await ops.fsync(fd, true);
      await ops.fsync(fd, false);
      await failure(ops.pread(fd, buffer, 15, 10, 0), "EINVAL");
      await ops.close(fd);
      await failure(ops.fstat(fd), "EBADF");
      expect(readFileSync(join(lower, "data")).subarray(10).toString()).toBe("he");
    });

    it("openFile hands back a blocking descriptor with the caller's flags", async () => {
      writeFileSync(join(lower, "f"), "x");
      const flagsOf = (fd: Fd) => {
        const info = readFileSync(`/proc/self/fdinfo/${fd}`, "utf8");
        return parseInt(/flags:\s+([0-7]+)/.exec(info)?.[1] ?? "", 8);
      };
      const O_CLOEXEC = 0o2000000;
      const plain = flagsOf((await openFile(root, "f", O_RDONLY)).fd);
      expect(plain & constants.O_NONBLOCK).toBe(0);
      expect(plain & O_CLOEXEC).toBe(O_CLOEXEC);
      const appending = await openFile(root, "f", O_WRONLY | constants.O_APPEND);
      expect(flagsOf(appending.fd) & (constants.O_APPEND | constants.O_NONBLOCK)).toBe(
        constants.O_APPEND,
      );
      await ops.pwrite(appending.fd, Buffer.from("y"), 0, 1, 0);
      expect(readFileSync(join(lower, "f"), "utf8")).toBe("xy");
      const nonblocking = await openFile(root, "f", O_RDONLY | constants.O_NONBLOCK);
      expect(flagsOf(nonblocking.fd) & constants.O_NONBLOCK).toBe(constants.O_NONBLOCK);
    });

    it("readSmallFile reads whole files up to maxBytes, EFBIG beyond", async () => {
      writeFileSync(join(lower, "small"), "0123456789");
      writeFileSync(join(lower, "empty"), "");
      expect((await ops.readSmallFile(root, "small", 10)).toString()).toBe("0123456789");
      expect((await ops.readSmallFile(root, "empty", 0)).length).toBe(0);
      await failure(ops.readSmallFile(root, "small", 9), "EFBIG");
      await failure(ops.readSmallFile(root, "missing", 9), "ENOENT");
      const big = Buffer.alloc(300_000, 7);
      writeFileSync(join(lower, "big"), big);
      expect((await ops.readSmallFile(root, "big", 1 << 20)).equals(big)).toBe(true);
    });

    it("createFile exclusive fails on an existing entry; non-exclusive truncates", async () => {
      const options = { exclusive: true, sync: true };
      await ops.createFile(root, "c", Buffer.from("first content"), 0o600, options);
      expect(readFileSync(join(lower, "c"), "utf8")).toBe("first content");
      expect(lstatSync(join(lower, "c")).mode & 0o777).toBe(0o600);
      await failure(ops.createFile(root, "c", Buffer.from("x"), 0o600, options), "EEXIST");
      mkdirSync(join(lower, "d"));
      await failure(ops.createFile(root, "d", Buffer.from("x"), 0o600, options), "EEXIST");
      await ops.createFile(root, "c", Buffer.from("2nd"), 0o600, { exclusive: false, sync: false });
      expect(readFileSync(join(lower, "c"), "utf8")).toBe("2nd");
      await ops.createFile(root, "empty", Buffer.alloc(0), 0o644, options);
      expect(readFileSync(join(lower, "empty")).length).toBe(0);
    });
  });

  describe("directories", () => {
    it("mkdir, openDir, list, rmdir, unlink", async () => {
      await ops.mkdir(root, "sub", 0o750);
      expect(lstatSync(join(lower, "sub")).mode & 0o777).toBe(0o750);
      await failure(ops.mkdir(root, "sub", 0o750), "EEXIST");
      const sub = await openDir(root, "sub");
      await ops.createFile(sub, "f", Buffer.from("x"), 0o600, { exclusive: true, sync: false });
      await ops.mkdir(sub, "inner", 0o700);
      expect((await ops.list(sub)).sort()).toEqual(["f", "inner"]);
      await failure(ops.rmdir(root, "sub"), "ENOTEMPTY");
      await failure(ops.unlink(sub, "inner"), "EISDIR");
      await failure(ops.rmdir(sub, "f"), "ENOTDIR");
      await ops.rmdir(sub, "inner");
      await ops.unlink(sub, "f");
      expect(await ops.list(sub)).toEqual([]);
      await ops.rmdir(root, "sub");
      await failure(ops.stat(root, "sub"), "ENOENT");
    });

    it("lists a directory with many entries", async () => {
      const names = Array.from({ length: 1500 }, (_, i) => `entry-${i}-${"n".repeat(i % 200)}`);
      for (const name of names) writeFileSync(join(lower, name), "");
      const listed = await ops.list(root);
      expect(listed.length).toBe(names.length);
      expect(listed.sort()).toEqual([...names].sort());
    });

    it("reports a name that is not UTF-8 so that it aliases nothing", async () => {
      const raw = Buffer.from([0x61, 0xff, 0x62]);
      writeFileSync(Buffer.concat([Buffer.from(lower + "/"), raw]), "");
      writeFileSync(join(lower, "a\ufffdb"), "");
      const listed = (await ops.list(root)).sort();
      expect(listed).toEqual([UNDECODABLE_NAME_PREFIX + "61ff62", "a\ufffdb"].sort());
      await failure(ops.stat(root, UNDECODABLE_NAME_PREFIX + "61ff62"), "EINVAL");
    });

    it("list of a file descriptor fails with ENOTDIR", async () => {
      writeFileSync(join(lower, "f"), "");
      const { fd } = await openFile(root, "f", O_RDONLY);
      await failure(ops.list(fd), "ENOTDIR");
      await failure(ops.fsyncDir(fd), "ENOTDIR");
    });

    it("fsyncDir syncs the root and a subdirectory", async () => {
      await ops.mkdir(root, "sub", 0o700);
      const sub = await openDir(root, "sub");
      await ops.fsyncDir(root);
      await ops.fsyncDir(sub);
    });

    it("statfs describes the lower filesystem", async () => {
      const st = await ops.statfs(root);
      const node = statfsSync(lower);
      expect(st.type).toBe(node.type);
      expect(st.bsize).toBe(node.bsize);
      expect(st.blocks).toBe(node.blocks);
      expect(st.namelen).toBeGreaterThan(0);
    });

    it("openRoot refuses a file", async () => {
      writeFileSync(join(lower, "f"), "");
      await failure(ops.openRoot(join(lower, "f")), "ENOTDIR");
      await failure(ops.openRoot(join(lower, "missing")), "ENOENT");
    });
  });

  describe("rename and link", () => {
    beforeEach(() => {
      writeFileSync(join(lower, "a"), "A");
      writeFileSync(join(lower, "b"), "B");
      mkdirSync(join(lower, "d"));
    });

    it("RENAME_NOREPLACE refuses an existing target and leaves both", async () => {
      await failure(ops.rename(root, "a", root, "b", RENAME_NOREPLACE), "EEXIST");
      expect(readFileSync(join(lower, "a"), "utf8")).toBe("A");
      expect(readFileSync(join(lower, "b"), "utf8")).toBe("B");
      await ops.rename(root, "a", root, "c", RENAME_NOREPLACE);
      expect(readFileSync(join(lower, "c"), "utf8")).toBe("A");
    });

    it("RENAME_EXCHANGE swaps two entries, across directories too", async () => {
      await ops.rename(root, "a", root, "b", RENAME_EXCHANGE);
      expect(readFileSync(join(lower, "a"), "utf8")).toBe("B");
      expect(readFileSync(join(lower, "b"), "utf8")).toBe("A");
      const d = await openDir(root, "d");
      await ops.rename(root, "a", d, "a-moved", 0);
      await ops.rename(root, "b", d, "a-moved", RENAME_EXCHANGE);
      expect(readFileSync(join(lower, "b"), "utf8")).toBe("B");
      await failure(ops.rename(root, "b", root, "missing", RENAME_EXCHANGE), "ENOENT");
      await failure(ops.rename(root, "b", root, "a", RENAME_EXCHANGE | RENAME_NOREPLACE), "EINVAL");
    });

    it("plain rename replaces; link adds a name to the same inode", async () => {
      await ops.rename(root, "a", root, "b", 0);
      expect(readFileSync(join(lower, "b"), "utf8")).toBe("A");
      await ops.link(root, "b", root, "b2");
      const [one, two] = [await ops.stat(root, "b"), await ops.stat(root, "b2")];
      expect(inodeKey(one)).toBe(inodeKey(two));
      expect(two.nlink).toBe(2);
      await failure(ops.link(root, "b", root, "b2"), "EEXIST");
      await failure(ops.link(root, "d", root, "d2"), "EPERM");
    });
  });

  describe("symlinks", () => {
    it("symlink and readlink keep the target exactly, up to PATH_MAX - 1 bytes", async () => {
      await ops.symlink("some/target", root, "s");
      expect(await ops.readlink(root, "s")).toBe("some/target");
      const long = "t/".repeat(2047) + "x"; // 4095 bytes
      await ops.symlink(long, root, "long");
      expect(await ops.readlink(root, "long")).toBe(long);
      await failure(ops.symlink(long + "y", root, "too-long"), "ENAMETOOLONG");
      writeFileSync(join(lower, "f"), "");
      await failure(ops.readlink(root, "f"), "EINVAL");
    });
  });

  describe("metadata", () => {
    beforeEach(() => writeFileSync(join(lower, "f"), "x"));

    it('chmod changes a file and (with "") the directory itself', async () => {
      await ops.chmod(root, "f", 0o604);
      expect(lstatSync(join(lower, "f")).mode & 0o7777).toBe(0o604);
      await ops.chmod(root, "", 0o751);
      expect(lstatSync(lower).mode & 0o777).toBe(0o751);
      await failure(ops.chmod(root, "missing", 0o600), "ENOENT");
    });

    it("chown changes owner and group; -1 keeps", async () => {
      await ops.chown(root, "f", 1001, 1002);
      await ops.chown(root, "f", -1, 1003);
      expect(lstatSync(join(lower, "f"))).toMatchObject({ uid: 1001, gid: 1003 });
      await ops.chown(root, "", 1004, -1);
      expect(lstatSync(lower).uid).toBe(1004);
    });

    it("utimens sets nanoseconds, and understands now and omit", async () => {
      await ops.utimens(root, "f", 1_000_000_123_456_789n, 2_000_000_987_654_321n);
      let st = await ops.stat(root, "f");
      expect([st.atimeNs, st.mtimeNs]).toEqual([1_000_000_123_456_789n, 2_000_000_987_654_321n]);

      await ops.utimens(root, "f", 5_000_000_000n, "omit");
      st = await ops.stat(root, "f");
      expect([st.atimeNs, st.mtimeNs]).toEqual([5_000_000_000n, 2_000_000_987_654_321n]);

      const before = BigInt(Date.now() - 1000) * 1_000_000n;
      await ops.utimens(root, "f", "omit", "now");
      st = await ops.stat(root, "f");
      expect(st.atimeNs).toBe(5_000_000_000n);
      expect(st.mtimeNs).toBeGreaterThan(before);
      expect(st.mtimeNs).toBeLessThan(BigInt(Date.now() + 1000) * 1_000_000n);

      await ops.utimens(root, "", -1_500_000_000n, "omit"); // before 1970, on the directory
      expect((await ops.stat(root, "")).atimeNs).toBe(-1_500_000_000n);
    });

    it('xattrs: get, set with CREATE/REPLACE, list, remove; "" is the directory', async () => {
      expect(await ops.getxattr(root, "f", "user.a")).toBeUndefined();
      await ops.setxattr(root, "f", "user.a", Buffer.from("one"), XATTR_CREATE);
      await failure(ops.setxattr(root, "f", "user.a", Buffer.from("x"), XATTR_CREATE), "EEXIST");
      await failure(ops.setxattr(root, "f", "user.b", Buffer.from("x"), XATTR_REPLACE), "ENODATA");
      await ops.setxattr(root, "f", "user.a", Buffer.from("two"), XATTR_REPLACE);
      await ops.setxattr(root, "f", "user.empty", Buffer.alloc(0), 0);
      expect((await ops.getxattr(root, "f", "user.a"))?.toString()).toBe("two");
      expect((await ops.getxattr(root, "f", "user.empty"))?.length).toBe(0);
      expect((await ops.listxattr(root, "f")).sort()).toEqual(["user.a", "user.empty"]);
      expect(getAttributeSync(join(lower, "f"), "user.a").toString()).toBe("two");
      const large = Buffer.alloc(3000, 9);
      await ops.setxattr(root, "f", "user.large", large, 0);
      expect((await ops.getxattr(root, "f", "user.large"))?.equals(large)).toBe(true);
      await ops.removexattr(root, "f", "user.a");
      await failure(ops.removexattr(root, "f", "user.a"), "ENODATA");
      expect(await ops.getxattr(root, "f", "user.a")).toBeUndefined();

      await ops.setxattr(root, "", "user.dir", Buffer.from("d"), 0);
      expect(listAttributesSync(lower)).toContain("user.dir");
      expect((await ops.getxattr(root, "", "user.dir"))?.toString()).toBe("d");
      await failure(ops.getxattr(root, "missing", "user.a"), "ENOENT");
    });
  });

  it("settles many overlapping calls, each with its own outcome", async () => {
    for (let i = 0; i < 50; i++) writeFileSync(join(lower, `f${i}`), `content ${i}`);
    const outcomes = await Promise.all(
      Array.from({ length: 400 }, (_, i) => {
        const name = `f${i % 100}`; // half of them missing
        return ops.readSmallFile(root, name, 100).then(
          (content) => content.toString(),
          (err: unknown) => (err instanceof FsError ? err.errno : "other"),
        );
      }),
    );
    outcomes.forEach((outcome, i) =>
      expect(outcome).toBe(i % 100 < 50 ? `content ${i % 100}` : "ENOENT"),
    );
  });

  it("lowerOpsFor picks direct on a local filesystem unless told otherwise", async () => {
    expect(await lowerOpsFor(lower, false)).toBe(directLowerOps);
    expect(await lowerOpsFor(lower, true)).toBe(threadedLowerOps);
    await failure(lowerOpsFor(join(lower, "missing"), false), "ENOENT");
  });
});
