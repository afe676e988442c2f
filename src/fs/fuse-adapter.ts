import Fuse, { type FuseOptions, type Operations } from "fuse-native";
import type { Logger } from "pino";
import type { SetTimes } from "./crypt-fs.js";
import { errnoNumber, toErrno } from "./errors.js";
import type { Attr, Caller, FileSystem, TimeSpec } from "./types.js";

/**
 * Translates fuse-native's callback API to our FileSystem interface and
 * back. The only file that knows the binding: another binding (libfuse 3,
 * say) needs a sibling of this file and nothing else.
 */
type Reply = (code: number, ...results: unknown[]) => void;

function toStat(attr: Attr) {
  const ms = (ns: bigint) => new Date(Number(ns / 1_000_000n));
  return {
    mode: attr.mode,
    uid: attr.uid,
    gid: attr.gid,
    size: attr.size,
    dev: attr.dev,
    nlink: attr.nlink,
    ino: attr.ino,
    rdev: attr.rdev,
    blksize: attr.blksize,
    blocks: attr.blocks,
    atime: ms(attr.atimeNs),
    mtime: ms(attr.mtimeNs),
    ctime: ms(attr.ctimeNs),
    atimeNs: attr.atimeNs,
    mtimeNs: attr.mtimeNs,
    ctimeNs: attr.ctimeNs,
  };
}

function toTimeSpec(value: unknown): TimeSpec {
  if (value === "now" || value === "omit") return value;
  if (typeof value === "bigint") return value;
  if (typeof value === "number") return BigInt(Math.round(value)) * 1_000_000n; // milliseconds (unpatched binding)
  if (value instanceof Date) return BigInt(value.getTime()) * 1_000_000n;
  return "omit";
}

/** The caller of the request being dispatched: valid only synchronously, before any await. */
function caller(): Caller | undefined {
  const context = Fuse.context();
  return context ? { uid: context.uid, gid: context.gid } : undefined;
}

export function buildOperations(fs: FileSystem, log: Logger): Operations {
  /** Runs an operation and replies with `success(value)` or a negative errno; never throws into the binding. */
  function settle<T>(
    name: string,
    path: string,
    reply: Reply,
    work: () => Promise<T>,
    success: (value: T) => void,
  ): void {
    work().then(success, (err: unknown) => {
      const errno = toErrno(err);
      if (errno === "EIO")
        log.debug({ op: name, path, err: (err as Error)?.message }, "operation failed");
      reply(-errnoNumber(errno));
    });
  }
  function call<T>(
    name: string,
    path: string,
    reply: Reply,
    work: () => Promise<T>,
    ok: (value: T) => unknown[],
  ): void {
    settle(name, path, reply, work, (value) => reply(0, ...ok(value)));
  }
  const none = () => [];
  /** read/write reply with a byte count in the code position. */
  function count(name: string, path: string, reply: Reply, work: () => Promise<number>): void {
    settle(name, path, reply, work, (n) => reply(n));
  }

  const ops = {
    init: (reply: Reply) => reply(0),
    getattr: (path: string, reply: Reply) =>
      call(
        "getattr",
        path,
        reply,
        () => fs.getattr(path),
        (a) => [toStat(a)],
      ),
    fgetattr: (path: string, fh: number, reply: Reply) =>
      call(
        "fgetattr",
        path,
        reply,
        () => fs.fgetattr(path, fh),
        (a) => [toStat(a)],
      ),
    readdir: (path: string, reply: Reply) =>
      call(
        "readdir",
        path,
        reply,
        () => fs.readdir(path),
        (names) => [names],
      ),
    access: (path: string, mode: number, reply: Reply) =>
      call("access", path, reply, () => fs.access(path, mode), none),
    statfs: (path: string, reply: Reply) =>
      call(
        "statfs",
        path,
        reply,
        () => fs.statfs(path),
        (s) => [s],
      ),
    open: (path: string, flags: number, reply: Reply) =>
      call(
        "open",
        path,
        reply,
        () => fs.open(path, flags),
        (fh) => [fh],
      ),
    opendir: (_path: string, _flags: number, reply: Reply) => reply(0, 0),
    releasedir: (_path: string, _fh: number, reply: Reply) => reply(0),
    create: (path: string, mode: number, flags: number, reply: Reply) => {
      const who = caller();
      call(
        "create",
        path,
        reply,
        () => fs.create(path, mode, flags, who),
        (fh) => [fh],
      );
    },
    read: (path: string, fh: number, buf: Buffer, len: number, pos: number, reply: Reply) =>
      count("read", path, reply, () => fs.read(path, fh, buf, len, pos)),
    write: (path: string, fh: number, buf: Buffer, len: number, pos: number, reply: Reply) =>
      count("write", path, reply, () => fs.write(path, fh, buf, len, pos)),
    flush: (path: string, fh: number, reply: Reply) =>
      call("flush", path, reply, () => fs.flush(path, fh), none),
    // fuse-native calls fsync(path, datasync, fh, cb): datasync comes before the handle.
    fsync: (path: string, datasync: number | boolean, fh: number, reply: Reply) =>
      call("fsync", path, reply, () => fs.fsync(path, fh, Boolean(datasync)), none),
    release: (path: string, fh: number, reply: Reply) =>
      call("release", path, reply, () => fs.release(path, fh), none),
    truncate: (path: string, size: number, reply: Reply) =>
      call("truncate", path, reply, () => fs.truncate(path, size), none),
    ftruncate: (path: string, fh: number, size: number, reply: Reply) =>
      call("ftruncate", path, reply, () => fs.ftruncate(path, fh, size), none),
    unlink: (path: string, reply: Reply) =>
      call("unlink", path, reply, () => fs.unlink(path), none),
    mkdir: (path: string, mode: number, reply: Reply) =>
      call("mkdir", path, reply, () => fs.mkdir(path, mode, caller()), none),
    rmdir: (path: string, reply: Reply) => call("rmdir", path, reply, () => fs.rmdir(path), none),
    rename: (from: string, to: string, reply: Reply) =>
      call("rename", from, reply, () => fs.rename(from, to), none),
    link: (existing: string, path: string, reply: Reply) =>
      call("link", path, reply, () => fs.link(existing, path), none),
    symlink: (target: string, path: string, reply: Reply) =>
      call("symlink", path, reply, () => fs.symlink(target, path, caller()), none),
    readlink: (path: string, reply: Reply) =>
      call(
        "readlink",
        path,
        reply,
        () => fs.readlink(path),
        (t) => [t],
      ),
    mknod: (path: string, mode: number, rdev: number, reply: Reply) =>
      call("mknod", path, reply, () => fs.mknod(path, mode, rdev, caller()), none),
    chmod: (path: string, mode: number, reply: Reply) =>
      call("chmod", path, reply, () => fs.chmod(path, mode), none),
    chown: (path: string, uid: number, gid: number, reply: Reply) =>
      call("chown", path, reply, () => fs.chown(path, uid, gid), none),
    setxattr: (
      path: string,
      name: string,
      value: Buffer,
      _position: number,
      flags: number,
      reply: Reply,
    ) =>
      call("setxattr", path, reply, () => fs.setxattr(path, name, Buffer.from(value), flags), none),
    getxattr: (path: string, name: string, _position: number, reply: Reply) =>
      call(
        "getxattr",
        path,
        reply,
        () => fs.getxattr(path, name),
        (v) => [v ?? null],
      ),
    listxattr: (path: string, reply: Reply) =>
      call(
        "listxattr",
        path,
        reply,
        () => fs.listxattr(path),
        (names) => [names],
      ),
    removexattr: (path: string, name: string, reply: Reply) =>
      call("removexattr", path, reply, () => fs.removexattr(path, name), none),
    utimens: (path: string, atime: unknown, mtime: unknown, reply: Reply) =>
      call(
        "utimens",
        path,
        reply,
        () => fs.utimens(path, toTimeSpec(atime), toTimeSpec(mtime)),
        none,
      ),
  };
  return ops as unknown as Operations;
}

export interface MountOptions {
  readonly allowOther?: boolean;
  readonly readOnly?: boolean;
  readonly debug?: boolean;
  readonly fsname: string;
  readonly onExternalUnmount: () => void;
}

export class FuseMount {
  private readonly fuse: Fuse;

  constructor(
    readonly mountpoint: string,
    fs: FileSystem,
    options: MountOptions,
    log: Logger,
  ) {
    const extra = ["big_writes", "max_write=131072", "max_read=131072", "subtype=cryptmount"];
    if (options.readOnly) extra.push("ro");
    const fuseOptions: FuseOptions = {
      allowOther: options.allowOther ?? false,
      defaultPermissions: true,
      timeout: false,
      debug: options.debug ?? false,
      fsname: options.fsname,
      extraOptions: extra,
      onExternalUnmount: options.onExternalUnmount,
    };
    this.fuse = new Fuse(mountpoint, buildOperations(fs, log), fuseOptions);
  }

  mount(): Promise<void> {
    return new Promise((resolve, reject) =>
      this.fuse.mount((err) => (err ? reject(err) : resolve())),
    );
  }

  unmount(): Promise<void> {
    return new Promise((resolve, reject) =>
      this.fuse.unmount((err) => (err ? reject(err) : resolve())),
    );
  }
}

/** Exact timestamps through the binding's utimensat (Node's utimes keeps only microseconds). */
export const bindingSetTimes: SetTimes = (lower, atimeNs, mtimeNs) =>
  Fuse.utimensat(lower, atimeNs, mtimeNs, true);
