import { addonPath, loadAddon } from "../../addons.js";

/**
 * The native half of the libfuse 3 binding (native/fuse3/binding.c, built to
 * build/cryptmount_fuse3.node by scripts/build-native.mjs). Requests arrive
 * through one dispatch function; each is answered by exactly one reply call.
 *
 * The operation codes: `enum op` in binding.c, which the addon exports as
 * `ops`; nativeBinding() refuses an addon whose table differs from this one.
 */
export const OP = {
  INIT: 0,
  EXIT: 1,
  LOOKUP: 2,
  FORGET: 3,
  GETATTR: 4,
  SETATTR: 5,
  READLINK: 6,
  MKNOD: 7,
  MKDIR: 8,
  UNLINK: 9,
  RMDIR: 10,
  SYMLINK: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  RELEASE: 17,
  FSYNC: 18,
  OPENDIR: 19,
  READDIR: 20,
  READDIRPLUS: 21,
  RELEASEDIR: 22,
  STATFS: 23,
  SETXATTR: 24,
  GETXATTR: 25,
  LISTXATTR: 26,
  REMOVEXATTR: 27,
  ACCESS: 28,
  CREATE: 29,
  FALLOCATE: 30,
  FSYNCDIR: 31,
  LSEEK: 32,
} as const;

/**
 * An outstanding request: an id (an integer below 2^53, never reused) from the
 * addon's table of live requests; pass it to exactly one reply function. Every
 * reply returns whether it answered a live request: an unknown or already
 * answered id is ignored (false), so a second answer is harmless. The
 * replies other than replyDir are typed void: no caller needs to look.
 */
export type Request = number;

/** Numbers per attribute record: ino, mode, nlink, uid, gid, rdev, size, blksize, blocks, then seconds and nanoseconds of atime, mtime, ctime. */
export const ATTR_FIELDS = 15;

export type Dispatch = (op: number, req: Request | null, ...args: never[]) => void;

/** An opaque handle on a mounted session. */
export type Session = object & { readonly __session: unique symbol };

export interface NativeBinding {
  readonly version: number;
  /** The addon's operation codes by name (must equal OP). */
  readonly ops: Readonly<Record<string, number>>;
  mount(
    mountpoint: string,
    options: string,
    dispatch: Dispatch,
    entryTimeout: number,
    attrTimeout: number,
    maxWrite: number,
    writeback: number,
    spinMicroseconds: number,
  ): Session;
  unmount(session: Session): void;
  replyErr(req: Request, errno: number): void;
  replyEntry(req: Request, nodeid: number, attr: Float64Array): void;
  replyCreate(req: Request, nodeid: number, attr: Float64Array, fh: number, directIo: number): void;
  replyAttr(req: Request, attr: Float64Array): void;
  replyOpen(req: Request, fh: number, directIo: number): void;
  replyReadlink(req: Request, target: string): void;
  replyBuf(req: Request, data: Buffer, length: number): void;
  replyWrite(req: Request, count: number): void;
  replyLseek(req: Request, offset: number): void;
  replyXattrSize(req: Request, size: number): void;
  replyStatfs(req: Request, stats: Float64Array): void;
  /** Returns how many entries fitted (-1: the request was not live); with nodeids each of those counts one lookup. */
  replyDir(
    req: Request,
    size: number,
    firstOffset: number,
    names: string[],
    attrs: Float64Array,
    nodeids: Float64Array | null,
  ): number;
}

export const BINDING_VERSION = 5;

const NS_PER_S = 1_000_000_000n;

/** Nanoseconds since the epoch as whole seconds (rounded down) and the nanoseconds past them. */
export function splitTime(ns: bigint): [seconds: number, nanoseconds: number] {
  const seconds = ns / NS_PER_S - (ns % NS_PER_S < 0n ? 1n : 0n);
  return [Number(seconds), Number(ns - seconds * NS_PER_S)];
}

/** The inverse of splitTime. */
export function joinTime(seconds: number, nanoseconds: number): bigint {
  return BigInt(seconds) * NS_PER_S + BigInt(nanoseconds);
}

export const BINDING_PATH = addonPath("fuse3");

let loaded: NativeBinding | undefined;

/** Whether the addon's operation table is exactly OP (same names, same codes). */
export function sameOps(ops: unknown): boolean {
  if (typeof ops !== "object" || ops === null) return false;
  const theirs = Object.entries(ops as Record<string, unknown>);
  const ours = Object.entries(OP);
  return (
    theirs.length === ours.length &&
    ours.every(([name, code]) => (ops as Record<string, unknown>)[name] === code)
  );
}

/** Loads the addon once; a clear error if it was not built. */
export function nativeBinding(): NativeBinding {
  loaded ??= loadAddon<NativeBinding>(
    "fuse3",
    "FUSE binding",
    (b) => b.version === BINDING_VERSION && sameOps(b.ops),
  );
  return loaded;
}
