import { addonPath, loadAddon } from "../../addons.js";
import { constants } from "node:os";
import { FsError, type ErrnoName } from "../errors.js";
import type { Fd, LowerStat, LowerStatfs } from "./ops.js";

/**
 * The native half of the lower I/O layer (native/lower/lower.c, built to
 * build/cryptmount_lower.node by scripts/build-native.mjs). Every operation
 * exists twice with the same arguments: in `sync` it runs inline and returns
 * its result or an FsError (returned, not thrown); in `async` it runs on the
 * libuv threadpool and returns a promise that rejects with the FsError.
 */
export type Flavour = "sync" | "async";
interface Outcomes<T> {
  sync: T | FsError;
  async: Promise<T>;
}
export type Outcome<K extends Flavour, T> = Outcomes<T>[K];

export interface NativeLowerCalls<K extends Flavour> {
  openRoot(path: string): Outcome<K, Fd>;
  openDir(dir: Fd, name: string): Outcome<K, Fd>;
  stat(dir: Fd, name: string): Outcome<K, LowerStat>;
  fstat(fd: Fd): Outcome<K, LowerStat>;
  list(dir: Fd): Outcome<K, string[]>;
  openFile(
    dir: Fd,
    name: string,
    flags: number,
    mode: number,
  ): Outcome<K, { fd: Fd; stat: LowerStat }>;
  close(fd: Fd): Outcome<K, void>;
  pread(
    fd: Fd,
    buffer: Buffer,
    offset: number,
    length: number,
    position: number,
  ): Outcome<K, number>;
  pwrite(
    fd: Fd,
    buffer: Buffer,
    offset: number,
    length: number,
    position: number,
  ): Outcome<K, number>;
  ftruncate(fd: Fd, length: number): Outcome<K, void>;
  fallocate(fd: Fd, mode: number, offset: number, length: number): Outcome<K, void>;
  lseek(fd: Fd, offset: number, whence: number): Outcome<K, number>;
  fsync(fd: Fd, dataOnly: boolean): Outcome<K, void>;
  mkdir(dir: Fd, name: string, mode: number): Outcome<K, void>;
  unlink(dir: Fd, name: string): Outcome<K, void>;
  rmdir(dir: Fd, name: string): Outcome<K, void>;
  rename(fromDir: Fd, from: string, toDir: Fd, to: string, flags: number): Outcome<K, void>;
  link(fromDir: Fd, from: string, toDir: Fd, to: string): Outcome<K, void>;
  symlink(target: string, dir: Fd, name: string): Outcome<K, void>;
  readlink(dir: Fd, name: string): Outcome<K, string>;
  mknod(dir: Fd, name: string, mode: number, rdev: number): Outcome<K, void>;
  chmod(dir: Fd, name: string, mode: number): Outcome<K, void>;
  chown(dir: Fd, name: string, uid: number, gid: number): Outcome<K, void>;
  /** Seconds and nanoseconds; a nanosecond field may be UTIME_NOW or UTIME_OMIT. */
  utimens(
    dir: Fd,
    name: string,
    atimeSec: number,
    atimeNsec: number,
    mtimeSec: number,
    mtimeNsec: number,
  ): Outcome<K, void>;
  getxattr(dir: Fd, name: string, attr: string): Outcome<K, Buffer | undefined>;
  setxattr(dir: Fd, name: string, attr: string, value: Buffer, flags: number): Outcome<K, void>;
  listxattr(dir: Fd, name: string): Outcome<K, string[]>;
  removexattr(dir: Fd, name: string, attr: string): Outcome<K, void>;
  readSmallFile(dir: Fd, name: string, maxBytes: number): Outcome<K, Buffer>;
  createFile(
    dir: Fd,
    name: string,
    content: Buffer,
    mode: number,
    exclusive: boolean,
    sync: boolean,
  ): Outcome<K, void>;
  fsyncDir(dir: Fd): Outcome<K, void>;
  statfs(dir: Fd): Outcome<K, LowerStatfs>;
}

/** dev, ino, mode, nlink, uid, gid, rdev, size, blksize, blocks, atimeNs, mtimeNs, ctimeNs. */
type StatFactory = (
  ...fields: [
    bigint,
    bigint,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    bigint,
    bigint,
    bigint,
  ]
) => LowerStat;

export interface LowerBinding {
  readonly version: number;
  readonly UTIME_NOW: number;
  readonly UTIME_OMIT: number;
  /** The factories the addon makes its errors and stat results with. */
  setup(
    makeError: (errno: number, message: string | undefined) => FsError,
    makeStat: StatFactory,
  ): void;
  readonly sync: NativeLowerCalls<"sync">;
  readonly async: NativeLowerCalls<"async">;
}

export const LOWER_BINDING_VERSION = 2;

export const LOWER_BINDING_PATH = addonPath("lower");

/** errno number -> name, built once. Where two names share a number, Linux's own (strerrorname_np) wins. */
const errnoNames = new Map<number, ErrnoName>();
for (const [name, value] of Object.entries(constants.errno) as [ErrnoName, number][])
  if (!errnoNames.has(value)) errnoNames.set(value, name);
for (const name of ["EAGAIN", "EOPNOTSUPP"] as const) errnoNames.set(constants.errno[name], name);

/** The FsError of an errno number, as the addon reports failures. */
export function makeError(errno: number, message?: string): FsError {
  return new FsError(errnoNames.get(errno) ?? "EIO", message);
}

/** Called by the addon for every stat result: one object shape for all of them. */
function makeStat(
  dev: bigint,
  ino: bigint,
  mode: number,
  nlink: number,
  uid: number,
  gid: number,
  rdev: number,
  size: number,
  blksize: number,
  blocks: number,
  atimeNs: bigint,
  mtimeNs: bigint,
  ctimeNs: bigint,
): LowerStat {
  return {
    dev,
    ino,
    mode,
    nlink,
    uid,
    gid,
    rdev,
    size,
    blksize,
    blocks,
    atimeNs,
    mtimeNs,
    ctimeNs,
  };
}

let loaded: LowerBinding | undefined;

/** Loads the addon once; a clear error if it was not built. */
export function lowerBinding(): LowerBinding {
  if (loaded) return loaded;
  const binding = loadAddon<LowerBinding>(
    "lower",
    "lower I/O addon",
    (b) => b.version === LOWER_BINDING_VERSION,
  );
  binding.setup(makeError, makeStat);
  loaded = binding;
  return binding;
}
