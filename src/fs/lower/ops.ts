import { constants } from "node:fs";
import { FsError } from "../errors.js";
import type { TimeSpec } from "../types.js";
import { splitTime } from "../fuse3/binding.js";
import { lowerBinding, type Flavour, type NativeLowerCalls, type Outcome } from "./binding.js";

/**
 * The calls the filesystem makes on the lower directory, every one relative
 * to a directory descriptor (an O_PATH descriptor from openRoot / openDir)
 * and a single name: no call follows a symlink, none blocks opening a FIFO
 * (native/lower/lower.c says how). Whoever can write the lower directory may
 * swap any entry for a symlink or a FIFO at any moment; the worst they get is
 * an error (ELOOP, ENOTDIR, or EIO "lower entry is not a regular file").
 *
 * Names are single components: "/", NUL or a lone surrogate in a name, ".",
 * "..", fail with EINVAL; more than 255 UTF-8 bytes with ENAMETOOLONG. ""
 * means the directory descriptor itself where noted (stat, chmod, chown,
 * utimens and the xattr calls). Failures reject with an FsError that carries
 * the errno name and no stack.
 *
 * list() reports a lower name that is not valid UTF-8 as "/" followed by
 * its bytes in hex (see UNDECODABLE_NAME_PREFIX): no real name contains "/",
 * so it aliases nothing and reaches nothing; callers see a foreign entry.
 */
export type Fd = number;

export interface LowerStat {
  /** Exact: overlayfs (xino) and NFS use all 64 bits. */
  dev: bigint;
  ino: bigint;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blksize: number;
  blocks: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

export interface LowerStatfs {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  /** f_type, the filesystem's magic number. */
  type: number;
  namelen: number;
}

export type { TimeSpec };

const { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK } = constants;

export function isDir(st: LowerStat): boolean {
  return (st.mode & S_IFMT) === S_IFDIR;
}
export function isFile(st: LowerStat): boolean {
  return (st.mode & S_IFMT) === S_IFREG;
}
export function isSymlink(st: LowerStat): boolean {
  return (st.mode & S_IFMT) === S_IFLNK;
}

/** One key per lower inode (hard links share it). */
export function inodeKey(st: LowerStat): string {
  return `${st.dev}:${st.ino}`;
}

/** rename() flags (renameat2). */
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
/** setxattr() flags. */
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;
/** How list() marks a lower name that is not valid UTF-8 (the rest is its bytes in hex). */
export const UNDECODABLE_NAME_PREFIX = "/";

export interface LowerOps {
  /** The lower root: open(path, O_PATH | O_DIRECTORY); the path itself may contain symlinks. */
  openRoot(path: string): Promise<Fd>;
  /** A subdirectory as an O_PATH descriptor; ENOTDIR (or ELOOP) for a symlink or a non-directory. */
  openDir(dir: Fd, name: string): Promise<Fd>;
  /** lstat semantics; "" is the directory itself. */
  stat(dir: Fd, name: string): Promise<LowerStat>;
  fstat(fd: Fd): Promise<LowerStat>;
  /** Every name but "." and "..". */
  list(dir: Fd): Promise<string[]>;
  /** A regular file only (EIO otherwise, ELOOP for a symlink); the descriptor blocks as usual. */
  openFile(
    dir: Fd,
    name: string,
    flags: number,
    mode?: number,
  ): Promise<{ fd: Fd; stat: LowerStat }>;
  close(fd: Fd): Promise<void>;
  pread(fd: Fd, buffer: Buffer, offset: number, length: number, position: number): Promise<number>;
  pwrite(fd: Fd, buffer: Buffer, offset: number, length: number, position: number): Promise<number>;
  ftruncate(fd: Fd, length: number): Promise<void>;
  /** fallocate(2): mode 0 (allocate), FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | KEEP_SIZE. */
  fallocate(fd: Fd, mode: number, offset: number, length: number): Promise<void>;
  /** lseek(2) with SEEK_DATA or SEEK_HOLE (ENXIO past the last data). */
  lseek(fd: Fd, offset: number, whence: number): Promise<number>;
  fsync(fd: Fd, dataOnly: boolean): Promise<void>;
  mkdir(dir: Fd, name: string, mode: number): Promise<void>;
  unlink(dir: Fd, name: string): Promise<void>;
  rmdir(dir: Fd, name: string): Promise<void>;
  /** renameat2; flags RENAME_NOREPLACE, RENAME_EXCHANGE. */
  rename(fromDir: Fd, from: string, toDir: Fd, to: string, flags: number): Promise<void>;
  /** A symlink is linked as itself, never its target. */
  link(fromDir: Fd, from: string, toDir: Fd, to: string): Promise<void>;
  symlink(target: string, dir: Fd, name: string): Promise<void>;
  /** ENAMETOOLONG rather than a cut target; EIO for a target that is not valid UTF-8. */
  readlink(dir: Fd, name: string): Promise<string>;
  mknod(dir: Fd, name: string, mode: number, rdev: number): Promise<void>;
  /** Never follows; EOPNOTSUPP for a symlink. */
  chmod(dir: Fd, name: string, mode: number): Promise<void>;
  /** Never follows (a symlink's own owner changes); -1 keeps. */
  chown(dir: Fd, name: string, uid: number, gid: number): Promise<void>;
  /** Never follows. */
  utimens(dir: Fd, name: string, atime: TimeSpec, mtime: TimeSpec): Promise<void>;
  /** Regular files and directories only (EPERM otherwise); undefined when the attribute does not exist. */
  getxattr(dir: Fd, name: string, attr: string): Promise<Buffer | undefined>;
  /** flags XATTR_CREATE, XATTR_REPLACE. */
  setxattr(dir: Fd, name: string, attr: string, value: Buffer, flags: number): Promise<void>;
  /** Attribute names that are not valid UTF-8 are left out. */
  listxattr(dir: Fd, name: string): Promise<string[]>;
  removexattr(dir: Fd, name: string, attr: string): Promise<void>;
  /** A regular file's whole content; EIO for anything else, EFBIG above maxBytes. */
  readSmallFile(dir: Fd, name: string, maxBytes: number): Promise<Buffer>;
  /** exclusive: O_EXCL (EEXIST when anything is there), else O_TRUNC; sync: fsync before close. */
  createFile(
    dir: Fd,
    name: string,
    content: Buffer,
    mode: number,
    options: { exclusive: boolean; sync: boolean },
  ): Promise<void>;
  /** fsync of the directory itself (after creating, renaming or removing entries in it). */
  fsyncDir(dir: Fd): Promise<void>;
  statfs(dir: Fd): Promise<LowerStatfs>;
}

/** The nanosecond argument that says "now" or "omit" to utimensat. */
function timeArgs(time: TimeSpec): [seconds: number, nanoseconds: number] {
  if (time === "now") return [0, lowerBinding().UTIME_NOW];
  if (time === "omit") return [0, lowerBinding().UTIME_OMIT];
  return splitTime(time);
}

/**
 * LowerOps over one flavour of native calls. `calls` is read per call so the
 * addon loads on first use (importing this module never fails); `settle`
 * turns the flavour's outcome into a promise.
 */
function opsOver<K extends Flavour>(
  calls: () => NativeLowerCalls<K>,
  settle: <T>(outcome: Outcome<K, T>) => Promise<T>,
): LowerOps {
  return {
    openRoot: (path) => settle(calls().openRoot(path)),
    openDir: (dir, name) => settle(calls().openDir(dir, name)),
    stat: (dir, name) => settle(calls().stat(dir, name)),
    fstat: (fd) => settle(calls().fstat(fd)),
    list: (dir) => settle(calls().list(dir)),
    openFile: (dir, name, flags, mode = 0o666) => settle(calls().openFile(dir, name, flags, mode)),
    close: (fd) => settle(calls().close(fd)),
    pread: (fd, buffer, offset, length, position) =>
      settle(calls().pread(fd, buffer, offset, length, position)),
    pwrite: (fd, buffer, offset, length, position) =>
      settle(calls().pwrite(fd, buffer, offset, length, position)),
    ftruncate: (fd, length) => settle(calls().ftruncate(fd, length)),
    fallocate: (fd, mode, offset, length) => settle(calls().fallocate(fd, mode, offset, length)),
    lseek: (fd, offset, whence) => settle(calls().lseek(fd, offset, whence)),
    fsync: (fd, dataOnly) => settle(calls().fsync(fd, dataOnly)),
    mkdir: (dir, name, mode) => settle(calls().mkdir(dir, name, mode)),
    unlink: (dir, name) => settle(calls().unlink(dir, name)),
    rmdir: (dir, name) => settle(calls().rmdir(dir, name)),
    rename: (fromDir, from, toDir, to, flags) =>
      settle(calls().rename(fromDir, from, toDir, to, flags)),
    link: (fromDir, from, toDir, to) => settle(calls().link(fromDir, from, toDir, to)),
    symlink: (target, dir, name) => settle(calls().symlink(target, dir, name)),
    readlink: (dir, name) => settle(calls().readlink(dir, name)),
    mknod: (dir, name, mode, rdev) => settle(calls().mknod(dir, name, mode, rdev)),
    chmod: (dir, name, mode) => settle(calls().chmod(dir, name, mode)),
    chown: (dir, name, uid, gid) => settle(calls().chown(dir, name, uid, gid)),
    utimens: (dir, name, atime, mtime) => {
      const [aSec, aNsec] = timeArgs(atime);
      const [mSec, mNsec] = timeArgs(mtime);
      return settle(calls().utimens(dir, name, aSec, aNsec, mSec, mNsec));
    },
    getxattr: (dir, name, attr) => settle(calls().getxattr(dir, name, attr)),
    setxattr: (dir, name, attr, value, flags) =>
      settle(calls().setxattr(dir, name, attr, value, flags)),
    listxattr: (dir, name) => settle(calls().listxattr(dir, name)),
    removexattr: (dir, name, attr) => settle(calls().removexattr(dir, name, attr)),
    readSmallFile: (dir, name, maxBytes) => settle(calls().readSmallFile(dir, name, maxBytes)),
    createFile: (dir, name, content, mode, options) =>
      settle(calls().createFile(dir, name, content, mode, options.exclusive, options.sync)),
    fsyncDir: (dir) => settle(calls().fsyncDir(dir)),
    statfs: (dir) => settle(calls().statfs(dir)),
  };
}

/** A sync call's outcome as an already settled promise. */
function settled<T>(outcome: T | FsError): Promise<T> {
  return outcome instanceof FsError ? Promise.reject(outcome) : Promise.resolve(outcome);
}

/** The threadpool flavour already hands out promises. */
function asIs<T>(outcome: Promise<T>): Promise<T> {
  return outcome;
}

/**
 * Every call on the libuv threadpool: a round trip of 20-100 us, but the JS
 * thread never waits on the lower filesystem. For network lowers (NFS,
 * rclone mount, sshfs), where a metadata call may wait on a server.
 */
export const threadedLowerOps: LowerOps = opsOver(() => lowerBinding().async, asIs);

const inlineLowerOps = opsOver(() => lowerBinding().sync, settled);

/**
 * Every call made inline on the JS thread (a few microseconds on a local
 * filesystem, far less than a threadpool hop) except those that wait for the
 * device: fsync, fsyncDir and createFile with `sync`. Only for local lowers
 * (see lowerOpsFor).
 */
export const directLowerOps: LowerOps = {
  ...inlineLowerOps,
  fsync: threadedLowerOps.fsync,
  fsyncDir: threadedLowerOps.fsyncDir,
  createFile: (dir, name, content, mode, options) =>
    (options.sync ? threadedLowerOps : inlineLowerOps).createFile(
      dir,
      name,
      content,
      mode,
      options,
    ),
};

/** statfs f_type of local filesystems whose metadata calls never wait on a network. */
const LOCAL_FILESYSTEMS: ReadonlySet<number> = new Set([
  0xef53, // ext2/3/4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0x01021994, // tmpfs
  0xf2f52010, // f2fs
  0x2fc12fc1, // zfs
]);

/** Direct on a local filesystem (LOCAL_FILESYSTEMS), threaded otherwise (NFS, rclone mount, sshfs). */
export async function lowerOpsFor(root: string, forceThreaded: boolean): Promise<LowerOps> {
  if (forceThreaded) return threadedLowerOps;
  const fd = await threadedLowerOps.openRoot(root);
  try {
    const { type } = await threadedLowerOps.statfs(fd);
    return LOCAL_FILESYSTEMS.has(type) ? directLowerOps : threadedLowerOps;
  } finally {
    await threadedLowerOps.close(fd);
  }
}

/** pread until `length` bytes or the end of the file; the bytes read. */
export async function readFully(
  io: LowerOps,
  fd: Fd,
  buffer: Buffer,
  length: number,
  position: number,
): Promise<number> {
  let done = 0;
  while (done < length) {
    const got = await io.pread(fd, buffer, done, length - done, position + done);
    if (got === 0) break;
    done += got;
  }
  return done;
}

/** pwrite of the whole of `data` at `position`. */
export async function writeFully(
  io: LowerOps,
  fd: Fd,
  data: Buffer,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < data.length)
    done += await io.pwrite(fd, data, done, data.length - done, position + done);
}

/**
 * Whether `io` is one of the real native lower ops, whose descriptors the
 * native block jobs (src/fs/open-file.ts) may read and write themselves. A
 * LowerOps that wraps them (tests inject faults that way) keeps every call
 * going through it.
 */
export function isNativeLowerOps(io: LowerOps): boolean {
  return io === directLowerOps || io === threadedLowerOps;
}
