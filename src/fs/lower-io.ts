import * as fsSync from "node:fs";
import * as fsAsync from "node:fs/promises";
import type { BigIntStats, Stats } from "node:fs";
import { FsError } from "./errors.js";

/**
 * The calls the filesystem makes on the lower directory. Two flavours with
 * one interface:
 *
 * - async: every call is a libuv threadpool round trip (20-100 us on the
 *   reference machine, most of it thread wake-ups), never blocks the JS thread;
 * - direct: the same syscalls made synchronously (about 5 us on a local
 *   filesystem), used only when the lower directory is on a local disk or
 *   tmpfs, where a syscall does not wait on a network. Only fsync stays
 *   async there.
 *
 * docs/performance.md has the measurements behind the choice.
 */
/** An open lower file; whether its calls block the JS thread depends on the flavour. */
export interface LowerFile {
  read(
    buffer: Buffer,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesRead: number }>;
  write(
    buffer: Buffer,
    offset: number,
    length: number,
    position: number,
  ): Promise<{ bytesWritten: number }>;
  stat(): Promise<BigIntStats>;
  truncate(length: number): Promise<void>;
  sync(): Promise<void>;
  datasync(): Promise<void>;
  close(): Promise<void>;
}

export interface LowerIo {
  open(path: string, flags: number, mode?: number): Promise<LowerFile>;
  lstat(path: string): Promise<Stats>;
  lstatBig(path: string): Promise<BigIntStats>;
  readdir(path: string): Promise<string[]>;
  mkdir(path: string, mode: number): Promise<void>;
  rmdir(path: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  link(existing: string, path: string): Promise<void>;
  symlink(target: string, path: string): Promise<void>;
  readlink(path: string): Promise<string>;
  chmod(path: string, mode: number): Promise<void>;
  lchown(path: string, uid: number, gid: number): Promise<void>;
  readText(path: string): Promise<string>;
  /** Creates a file that must not exist yet, with `content` (may be empty). */
  createFile(path: string, content: string, mode: number): Promise<void>;
}

/** Runs a synchronous call and hands its outcome over as a promise. */
function direct<A extends unknown[], R>(call: (...args: A) => R): (...args: A) => Promise<R> {
  return (...args: A) => {
    try {
      return Promise.resolve(call(...args));
    } catch (err) {
      return Promise.reject(err);
    }
  };
}

class AsyncFile implements LowerFile {
  constructor(private readonly handle: fsAsync.FileHandle) {}
  read(buffer: Buffer, offset: number, length: number, position: number) {
    return this.handle.read(buffer, offset, length, position);
  }
  write(buffer: Buffer, offset: number, length: number, position: number) {
    return this.handle.write(buffer, offset, length, position);
  }
  stat() {
    return this.handle.stat({ bigint: true });
  }
  truncate(length: number) {
    return this.handle.truncate(length);
  }
  sync() {
    return this.handle.sync();
  }
  datasync() {
    return this.handle.datasync();
  }
  close() {
    return this.handle.close();
  }
}

/**
 * Descriptor-based file for the direct flavour: reads and writes inline too.
 * On a local filesystem they are page-cache copies (a cold read waits for the
 * disk, as it would in any filesystem's request thread); a threadpool hop
 * costs more than the copy. fsync, which waits for the device, stays async.
 */
class DirectFile implements LowerFile {
  constructor(private readonly fd: number) {}
  read = direct((buffer: Buffer, offset: number, length: number, position: number) => ({
    bytesRead: fsSync.readSync(this.fd, buffer, offset, length, position),
  }));
  write = direct((buffer: Buffer, offset: number, length: number, position: number) => ({
    bytesWritten: fsSync.writeSync(this.fd, buffer, offset, length, position),
  }));
  stat = direct(() => fsSync.fstatSync(this.fd, { bigint: true }));
  truncate = direct((length: number) => fsSync.ftruncateSync(this.fd, length));
  sync() {
    return new Promise<void>((resolve, reject) =>
      fsSync.fsync(this.fd, (err) => (err ? reject(err) : resolve())),
    );
  }
  datasync() {
    return new Promise<void>((resolve, reject) =>
      fsSync.fdatasync(this.fd, (err) => (err ? reject(err) : resolve())),
    );
  }
  close = direct(() => fsSync.closeSync(this.fd));
}

export const asyncLowerIo: LowerIo = {
  open: async (p, flags, mode) => new AsyncFile(await fsAsync.open(p, flags, mode)),
  lstat: (p) => fsAsync.lstat(p),
  lstatBig: (p) => fsAsync.lstat(p, { bigint: true }),
  readdir: (p) => fsAsync.readdir(p),
  mkdir: async (p, mode) => {
    await fsAsync.mkdir(p, mode);
  },
  rmdir: (p) => fsAsync.rmdir(p),
  unlink: (p) => fsAsync.unlink(p),
  rename: (a, b) => fsAsync.rename(a, b),
  link: (a, b) => fsAsync.link(a, b),
  symlink: (t, p) => fsAsync.symlink(t, p),
  readlink: (p) => fsAsync.readlink(p),
  chmod: (p, m) => fsAsync.chmod(p, m),
  lchown: (p, u, g) => fsAsync.lchown(p, u, g),
  readText: (p) => fsAsync.readFile(p, "utf8"),
  createFile: (p, content, mode) => fsAsync.writeFile(p, content, { flag: "wx", mode }),
};

/** A missing entry without the cost of a system error (message, stack): lookups miss all the time. */
function missing(): never {
  throw new FsError("ENOENT");
}

export const directLowerIo: LowerIo = {
  open: direct(
    (p: string, flags: number, mode?: number) => new DirectFile(fsSync.openSync(p, flags, mode)),
  ),
  lstat: direct((p: string) => fsSync.lstatSync(p, { throwIfNoEntry: false }) ?? missing()),
  lstatBig: direct(
    (p: string) => fsSync.lstatSync(p, { bigint: true, throwIfNoEntry: false }) ?? missing(),
  ),
  readdir: direct((p: string) => fsSync.readdirSync(p)),
  mkdir: direct((p: string, mode: number) => void fsSync.mkdirSync(p, mode)),
  rmdir: direct((p: string) => fsSync.rmdirSync(p)),
  unlink: direct((p: string) => fsSync.unlinkSync(p)),
  rename: direct((a: string, b: string) => fsSync.renameSync(a, b)),
  link: direct((a: string, b: string) => fsSync.linkSync(a, b)),
  symlink: direct((t: string, p: string) => fsSync.symlinkSync(t, p)),
  readlink: direct((p: string) => fsSync.readlinkSync(p)),
  chmod: direct((p: string, m: number) => fsSync.chmodSync(p, m)),
  lchown: direct((p: string, u: number, g: number) => fsSync.lchownSync(p, u, g)),
  readText: direct((p: string) => fsSync.readFileSync(p, "utf8")),
  createFile: direct((p: string, content: string, mode: number) =>
    fsSync.writeFileSync(p, content, { flag: "wx", mode }),
  ),
};

/** statfs f_type of local filesystems whose metadata calls never wait on a network. */
export const LOCAL_FILESYSTEMS: ReadonlySet<number> = new Set([
  0xef53, // ext2/3/4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0x01021994, // tmpfs
  0xf2f52010, // f2fs
  0x2fc12fc1, // zfs
]);

export async function lowerIoFor(lower: string, forceAsync: boolean): Promise<LowerIo> {
  if (forceAsync) return asyncLowerIo;
  const { type } = await fsAsync.statfs(lower);
  return LOCAL_FILESYSTEMS.has(type) ? directLowerIo : asyncLowerIo;
}
