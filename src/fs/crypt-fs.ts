import { lutimes, statfs } from "node:fs/promises";
import { asyncLowerIo, type LowerIo } from "./lower-io.js";
import { constants, type BigIntStats } from "node:fs";
import { dirname, basename, join } from "node:path";
import type { Logger } from "pino";
import type { Keyring } from "../crypto/keys.js";
import { ContentGeometry } from "../format/content.js";
import { isFormatError } from "../format/errors.js";
import { MAX_NAME_BYTES, classifyLowerEntry } from "../format/names.js";
import { decryptSymlink, encryptSymlink, symlinkTargetLength } from "../format/symlink.js";
import {
  XATTR_PREFIX,
  decryptXattrName,
  decryptXattrValue,
  encryptXattrName,
  encryptXattrValue,
} from "../format/xattr.js";
import * as xattr from "fs-xattr";
import { FsError } from "./errors.js";
import { Namespace } from "./namespace.js";
import { OpenFile } from "./open-file.js";
import type { Attr, Caller, DirEntry, FileSystem, FsStats, TimeSpec } from "./types.js";

/** Sets both timestamps of a lower path without following a symlink. */
export type SetTimes = (lower: string, atimeNs: bigint, mtimeNs: bigint) => void | Promise<void>;

export interface CryptFsOptions {
  readonly readOnly?: boolean;
  /** Exact (nanosecond) timestamps need a native utimensat; the fallback keeps microseconds. */
  readonly setTimes?: SetTimes;
  /** Lower metadata calls (default: async through the threadpool). */
  readonly io?: LowerIo;
  /** The volume's format version (default: the current one); version 1 is served read-only. */
  readonly formatVersion?: number;
}

const setTimesMicroseconds: SetTimes = (lower, atimeNs, mtimeNs) =>
  lutimes(lower, Number(atimeNs / 1000n) / 1e6, Number(mtimeNs / 1000n) / 1e6);

interface Handle {
  readonly file: OpenFile;
  readonly lower: string;
  readonly writable: boolean;
  /** The lower stat taken at create, used once by the fgetattr that follows. */
  fresh?: BigIntStats;
}

const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;
const S_ISGID = 0o2000;
const CREATE_FLAGS = constants.O_CREAT | constants.O_EXCL | constants.O_RDWR | constants.O_NOATIME;
const ACCESS_MODE = constants.O_RDONLY | constants.O_WRONLY | constants.O_RDWR;

function inodeKey(st: { dev: bigint | number; ino: bigint | number }): string {
  return `${st.dev}:${st.ino}`;
}

function cleartextParent(path: string): { parent: string; name: string } {
  return { parent: dirname(path), name: basename(path) };
}

/**
 * The filesystem operations over an encrypted lower directory. Translates
 * cleartext paths through the Namespace and file contents through OpenFile;
 * knows nothing of FUSE.
 */
export class CryptFs implements FileSystem {
  private readonly names: Namespace;
  private readonly geometry: ContentGeometry;
  private readonly files = new Map<string, OpenFile>();
  private readonly opening = new Map<string, Promise<OpenFile>>();
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 1;

  private readonly readOnly: boolean;
  private readonly io: LowerIo;
  private readonly setTimes: SetTimes;
  /** Only root can give new entries to their callers. */
  private readonly chownNew = process.getuid?.() === 0;

  constructor(
    private readonly root: string,
    private readonly keyring: Keyring,
    blockSize: number,
    private readonly log: Logger,
    options: CryptFsOptions = {},
  ) {
    this.io = options.io ?? asyncLowerIo;
    this.names = new Namespace(root, keyring, log, this.io, options.formatVersion);
    this.geometry = new ContentGeometry(blockSize);
    this.readOnly = (options.readOnly ?? false) || (options.formatVersion ?? 2) < 2;
    this.setTimes = options.setTimes ?? setTimesMicroseconds;
  }

  // --- attributes ------------------------------------------------------------

  private toAttr(st: BigIntStats, size: number): Attr {
    return {
      mode: Number(st.mode),
      uid: Number(st.uid),
      gid: Number(st.gid),
      size,
      nlink: Number(st.nlink),
      ino: Number(st.ino),
      dev: Number(st.dev),
      rdev: Number(st.rdev),
      blksize: Number(st.blksize),
      blocks: Number(st.blocks),
      atimeNs: st.atimeNs,
      mtimeNs: st.mtimeNs,
      ctimeNs: st.ctimeNs,
    };
  }

  private cleartextSize(st: BigIntStats, path: string): number {
    if (st.isFile()) {
      const open = this.files.get(inodeKey(st));
      if (open) return open.size;
      try {
        return this.geometry.cleartextSize(Number(st.size));
      } catch (err) {
        if (!isFormatError(err)) throw err;
        this.log.warn(
          { path, problem: err.message },
          "file has an invalid length; reported as empty",
        );
        return 0;
      }
    }
    if (st.isSymbolicLink()) return symlinkTargetLength(Number(st.size));
    return Number(st.size);
  }

  async getattr(path: string): Promise<Attr> {
    const { lower } = await this.names.locate(path);
    const st = await this.io.lstatBig(lower);
    return this.toAttr(st, this.cleartextSize(st, path));
  }

  async fgetattr(path: string, fh: number): Promise<Attr> {
    const handle = this.handles.get(fh);
    if (!handle) return this.getattr(path);
    const fresh = handle.fresh;
    handle.fresh = undefined;
    // Through the descriptor: an open file that was unlinked still has attributes.
    const st = fresh ?? (await handle.file.stat());
    return this.toAttr(st, handle.file.size);
  }

  async list(path: string): Promise<DirEntry[]> {
    const { lower } = await this.names.locate(path);
    const entries = await this.names.list(lower, path);
    return entries.map(({ name, entry }) => {
      const entryLower = join(lower, entry);
      return {
        name,
        attr: async () => {
          const st = await this.io.lstatBig(entryLower);
          return this.toAttr(st, this.cleartextSize(st, join(path, name)));
        },
      };
    });
  }

  async access(path: string): Promise<void> {
    const { lower } = await this.names.locate(path);
    await this.io.lstat(lower);
  }

  async statfs(): Promise<FsStats> {
    const s = await statfs(this.root);
    return {
      bsize: s.bsize,
      frsize: s.bsize,
      blocks: s.blocks,
      bfree: s.bfree,
      bavail: s.bavail,
      files: s.files,
      ffree: s.ffree,
      favail: s.ffree,
      namemax: MAX_NAME_BYTES,
    };
  }

  // --- file contents ---------------------------------------------------------

  private allocateHandle(handle: Handle): number {
    while (this.handles.has(this.nextHandle)) this.nextHandle = (this.nextHandle % 0x7fffffff) + 1;
    const fh = this.nextHandle;
    this.nextHandle = (this.nextHandle % 0x7fffffff) + 1;
    this.handles.set(fh, handle);
    handle.file.references++;
    return fh;
  }

  private handle(fh: number): Handle {
    const handle = this.handles.get(fh);
    if (!handle) throw new FsError("EBADF");
    return handle;
  }

  private requireWritable(): void {
    if (this.readOnly) throw new FsError("EROFS");
  }

  /** The shared state of the lower file at `lower`, opened once per inode. */
  private async acquire(lower: string, path: string, writable: boolean): Promise<OpenFile> {
    const st = await this.io.lstat(lower);
    if (st.isDirectory()) throw new FsError("EISDIR");
    if (!st.isFile()) throw new FsError("EINVAL");
    const key = inodeKey(st);
    let file = this.files.get(key);
    if (!file) {
      let pending = this.opening.get(key);
      if (!pending) {
        pending = OpenFile.open(
          lower,
          key,
          this.keyring,
          this.geometry,
          writable,
          path,
          this.log,
          this.io,
        );
        this.opening.set(key, pending);
        pending.then(
          (f) => {
            this.files.set(key, f);
            this.opening.delete(key);
          },
          () => this.opening.delete(key),
        );
      }
      file = await pending;
    }
    if (writable) await file.ensureWritable(lower);
    return file;
  }

  async open(path: string, flags: number): Promise<number> {
    const writable = (flags & ACCESS_MODE) !== constants.O_RDONLY;
    if (writable) this.requireWritable();
    const { lower } = await this.names.locate(path);
    const file = await this.acquire(lower, path, writable);
    const fh = this.allocateHandle({ file, lower, writable });
    if (flags & constants.O_TRUNC && writable) {
      await file.lock.write(() => file.truncate(0));
    }
    return fh;
  }

  async create(path: string, mode: number, flags: number, caller?: Caller): Promise<number> {
    this.requireWritable();
    const { parent, name } = cleartextParent(path);
    const parentLoc = await this.names.locate(parent);
    const exclusive = (flags & constants.O_EXCL) !== 0;
    // In a merged directory the name may exist under another of its IDs.
    if ((await this.names.idsOf(parentLoc.lower)).length > 1) {
      const existing = await this.names.child(parentLoc.lower, name);
      if (await this.io.lstat(existing.lower).catch(() => undefined))
        return this.openExisting(path, flags, exclusive);
    }
    const located = await this.names.forNew(parentLoc.lower, name);
    await this.names.writeSidecar(located);
    let handle;
    try {
      handle = await this.io.open(located.lower, CREATE_FLAGS, mode & 0o7777);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST")
        return this.openExisting(path, flags, exclusive);
      throw err;
    }
    let st: BigIntStats;
    let file: OpenFile;
    try {
      await this.own(located.lower, parentLoc.lower, caller);
      st = await handle.stat();
      file = await OpenFile.initialize(
        handle,
        inodeKey(st),
        this.keyring,
        this.geometry,
        path,
        this.log,
        this.io,
      );
    } catch (err) {
      // No headerless lower file may stay behind (a full disk, say).
      await handle.close().catch(() => undefined);
      await this.io.unlink(located.lower).catch(() => undefined);
      await this.names.removeSidecar(located);
      throw err;
    }
    this.files.set(file.inode, file);
    // The kernel asks for the new file's attributes right away: answer from this stat.
    return this.allocateHandle({ file, lower: located.lower, writable: true, fresh: st });
  }

  private openExisting(path: string, flags: number, exclusive: boolean): Promise<number> {
    if (exclusive) throw new FsError("EEXIST");
    return this.open(path, (flags & ~constants.O_CREAT) | constants.O_RDWR);
  }

  async read(_path: string, fh: number, length: number, position: number): Promise<Buffer> {
    const { file } = this.handle(fh);
    const data = await file.lock.read(() => file.read(position, length));
    return data.length > length ? data.subarray(0, length) : data;
  }

  async write(
    _path: string,
    fh: number,
    data: Buffer,
    length: number,
    position: number,
  ): Promise<number> {
    const handle = this.handle(fh);
    if (!handle.writable) throw new FsError("EBADF");
    const { file } = handle;
    await file.lock.write(() => file.write(position, data.subarray(0, length)));
    return length;
  }

  async flush(): Promise<void> {
    // Writes go through to the lower file at once; nothing is held back.
  }

  async fsync(_path: string, fh: number, dataOnly: boolean): Promise<void> {
    const { file } = this.handle(fh);
    await file.lock.write(() => file.sync(dataOnly));
  }

  async release(_path: string, fh: number): Promise<void> {
    const handle = this.handles.get(fh);
    if (!handle) return;
    this.handles.delete(fh);
    const { file } = handle;
    if (--file.references === 0) {
      this.files.delete(file.inode);
      await file.lock.write(() => file.close());
    }
  }

  async truncate(path: string, size: number): Promise<void> {
    this.requireWritable();
    const { lower } = await this.names.locate(path);
    const file = await this.acquire(lower, path, true);
    file.references++;
    try {
      await file.lock.write(() => file.truncate(size));
    } finally {
      if (--file.references === 0) {
        this.files.delete(file.inode);
        await file.lock.write(() => file.close());
      }
    }
  }

  async ftruncate(_path: string, fh: number, size: number): Promise<void> {
    this.requireWritable();
    const { file } = this.handle(fh);
    await file.lock.write(() => file.truncate(size));
  }

  // --- namespace -------------------------------------------------------------

  private async locateNew(path: string) {
    const { parent, name } = cleartextParent(path);
    const parentLoc = await this.names.locate(parent);
    return this.names.forNew(parentLoc.lower, name);
  }

  async unlink(path: string): Promise<void> {
    this.requireWritable();
    const located = await this.names.locate(path);
    await this.io.unlink(located.lower);
    await this.names.removeSidecar(located);
  }

  async mkdir(path: string, mode: number, caller?: Caller): Promise<void> {
    this.requireWritable();
    const located = await this.locateNew(path);
    await this.names.writeSidecar(located);
    await this.io.mkdir(located.lower, mode & 0o7777);
    await this.names.createDirId(located.lower);
    await this.own(located.lower, located.parentLower, caller);
  }

  /** Removes the ID entries of an empty lower directory; ENOTEMPTY when it holds user entries. */
  private async emptyForRemoval(lowerDir: string): Promise<void> {
    const entries = await this.io.readdir(lowerDir);
    const ids = entries.filter((e) => classifyLowerEntry(e).kind === "dir-id");
    if (ids.length !== entries.length) throw new FsError("ENOTEMPTY");
    for (const id of ids) await this.io.unlink(join(lowerDir, id));
  }

  async rmdir(path: string): Promise<void> {
    this.requireWritable();
    const located = await this.names.locate(path);
    const st = await this.io.lstat(located.lower);
    if (!st.isDirectory()) throw new FsError("ENOTDIR");
    await this.emptyForRemoval(located.lower);
    this.names.forgetRemovedDir(located.lower);
    await this.io.rmdir(located.lower);
    await this.names.removeSidecar(located);
  }

  async rename(from: string, to: string): Promise<void> {
    this.requireWritable();
    const source = await this.names.locate(from);
    const existing = await this.names.locate(to);
    // locate finds an existing target under any of the directory's IDs; a missing one gets the canonical name.
    const targetStat = await this.io.lstat(existing.lower).catch(() => undefined);
    const target = targetStat ? existing : await this.locateNew(to);
    if (source.lower === target.lower) return;
    const sourceStat = await this.io.lstat(source.lower);
    // Two names of one inode (hard links): rename(2) does nothing, so the
    // source keeps its name and must keep its long-name sidecar too.
    if (targetStat && targetStat.dev === sourceStat.dev && targetStat.ino === sourceStat.ino)
      return;
    if (targetStat?.isDirectory()) {
      if (!sourceStat.isDirectory()) throw new FsError("EISDIR");
      await this.emptyForRemoval(target.lower);
    } else if (targetStat && sourceStat.isDirectory()) {
      throw new FsError("ENOTDIR");
    }
    await this.names.writeSidecar(target);
    const moved = () => {
      this.names.forgetMovedDir(source.lower);
      this.names.forgetMovedDir(target.lower);
    };
    if (sourceStat.isDirectory()) moved();
    await this.io.rename(source.lower, target.lower);
    // Again after the move: another request may have cached the old place meanwhile.
    if (sourceStat.isDirectory()) moved();
    if (source.entry !== target.entry || source.parentLower !== target.parentLower) {
      await this.names.removeSidecar(source);
    }
  }

  async link(existing: string, path: string): Promise<void> {
    this.requireWritable();
    const source = await this.names.locate(existing);
    const target = await this.locateNew(path);
    await this.names.writeSidecar(target);
    await this.io.link(source.lower, target.lower);
  }

  async symlink(target: string, path: string, caller?: Caller): Promise<void> {
    this.requireWritable();
    const located = await this.locateNew(path);
    await this.names.writeSidecar(located);
    await this.io.symlink(encryptSymlink(this.keyring.volume.symlinks, target), located.lower);
    await this.own(located.lower, located.parentLower, caller);
  }

  async readlink(path: string): Promise<string> {
    const { lower } = await this.names.locate(path);
    const stored = await this.io.readlink(lower);
    try {
      return decryptSymlink(this.keyring.volume.symlinks, stored);
    } catch (err) {
      if (isFormatError(err))
        this.log.error({ path, problem: err.message }, "corrupt symlink: read refused");
      throw err;
    }
  }

  async mknod(path: string, mode: number, _rdev: number, caller?: Caller): Promise<void> {
    // Only regular files: device nodes, FIFOs and sockets have no encrypted form yet.
    if ((mode & constants.S_IFMT) !== constants.S_IFREG) throw new FsError("EPERM");
    const fh = await this.create(path, mode, constants.O_EXCL | constants.O_WRONLY, caller);
    await this.release(path, fh);
  }

  // --- metadata --------------------------------------------------------------

  async chmod(path: string, mode: number): Promise<void> {
    this.requireWritable();
    const { lower } = await this.names.locate(path);
    await this.io.chmod(lower, mode & 0o7777);
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    this.requireWritable();
    const { lower } = await this.names.locate(path);
    await this.io.lchown(lower, uid, gid);
  }

  async utimens(path: string, atime: TimeSpec, mtime: TimeSpec): Promise<void> {
    this.requireWritable();
    if (atime === "omit" && mtime === "omit") return;
    const { lower } = await this.names.locate(path);
    const current =
      atime === "omit" || mtime === "omit" ? await this.io.lstatBig(lower) : undefined;
    const now = BigInt(Date.now()) * 1_000_000n;
    const pick = (spec: TimeSpec, keep: bigint | undefined): bigint =>
      spec === "now" ? now : spec === "omit" ? keep! : spec;
    await this.setTimes(lower, pick(atime, current?.atimeNs), pick(mtime, current?.mtimeNs));
  }

  /** Gives a new lower entry to the caller (gid stays the parent's in a setgid directory). */
  private async own(lower: string, parentLower: string, caller: Caller | undefined): Promise<void> {
    if (!this.chownNew || !caller || (caller.uid === 0 && caller.gid === 0)) return;
    const parent = await this.io.lstat(parentLower);
    const gid = parent.mode & S_ISGID ? parent.gid : caller.gid;
    await this.io.lchown(lower, caller.uid, gid);
  }

  // --- extended attributes (user.* only, encrypted) --------------------------

  private async xattrTarget(path: string): Promise<string> {
    const { lower } = await this.names.locate(path);
    const st = await this.io.lstat(lower);
    // Linux allows user.* attributes on files and directories only.
    if (!st.isFile() && !st.isDirectory()) throw new FsError("EPERM");
    return lower;
  }

  private xattrName(name: string): string {
    try {
      return encryptXattrName(this.keyring.volume, name);
    } catch (err) {
      if (isFormatError(err))
        throw new FsError(err.code === "NAME_TOO_LONG" ? "ERANGE" : "EOPNOTSUPP");
      throw err;
    }
  }

  async setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    this.requireWritable();
    const lower = await this.xattrTarget(path);
    const lowerName = this.xattrName(name);
    if (flags & (XATTR_CREATE | XATTR_REPLACE)) {
      const exists = (await xattr.listAttributes(lower)).includes(lowerName);
      if (flags & XATTR_CREATE && exists) throw new FsError("EEXIST");
      if (flags & XATTR_REPLACE && !exists) throw new FsError("ENODATA");
    }
    await xattr.setAttribute(
      lower,
      lowerName,
      encryptXattrValue(this.keyring.volume, lowerName, value),
    );
  }

  async getxattr(path: string, name: string): Promise<Buffer | undefined> {
    // The kernel asks for security.capability on every write: answer without work.
    if (!name.startsWith(XATTR_PREFIX) || name.length === XATTR_PREFIX.length) return undefined;
    const { lower } = await this.names.locate(path);
    const lowerName = this.xattrName(name);
    let stored: Buffer;
    try {
      stored = await xattr.getAttribute(lower, lowerName);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENODATA" || code === "ENOATTR" || code === "ENOTSUP" || code === "EOPNOTSUPP")
        return undefined;
      throw err;
    }
    try {
      return decryptXattrValue(this.keyring.volume, lowerName, stored);
    } catch (err) {
      if (isFormatError(err))
        this.log.error({ path, attribute: name }, "corrupt extended attribute: read refused");
      throw err;
    }
  }

  async listxattr(path: string): Promise<string[]> {
    const { lower } = await this.names.locate(path);
    const st = await this.io.lstat(lower);
    if (!st.isFile() && !st.isDirectory()) return [];
    const names = await xattr.listAttributes(lower).catch(() => [] as string[]);
    return names.flatMap((n) => decryptXattrName(this.keyring.volume, n) ?? []);
  }

  async removexattr(path: string, name: string): Promise<void> {
    this.requireWritable();
    const lower = await this.xattrTarget(path);
    try {
      await xattr.removeAttribute(lower, this.xattrName(name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOATTR") throw new FsError("ENODATA");
      throw err;
    }
  }

  async destroy(): Promise<void> {
    const open = [...this.files.values()];
    this.files.clear();
    this.handles.clear();
    for (const file of open) await file.lock.write(() => file.close()).catch(() => undefined);
    this.keyring.wipe();
  }
}
