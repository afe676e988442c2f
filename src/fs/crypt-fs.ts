import { constants } from "node:fs";
import type { Logger } from "pino";
import type { Keyring } from "../crypto/keys.js";
import { ContentGeometry } from "../format/content.js";
import { isFormatError } from "../format/errors.js";
import { MAX_NAME_BYTES } from "../format/names.js";
import { mayNameConflictCopy } from "../format/conflicts.js";
import { FileKind } from "../format/header.js";
import { CURRENT_FORMAT_VERSION, OBJECTS_VERSION } from "../format/versions.js";
import { MAX_OBJECT_SYMLINK_TARGET, decodeRdev, type ObjectValue } from "../format/object.js";
import { decryptSymlink } from "../format/symlink.js";
import { Attributes } from "./attributes.js";
import { FsError } from "./errors.js";
import { Gate } from "./gate.js";
import { inodeKey, isDir, isSymlink, type Fd, type LowerOps, type LowerStat } from "./lower/ops.js";
import { LowerDirectory, Namespace, type LowerName } from "./namespace.js";
import { Objects, SYMLINK_LOWER_MODE } from "./objects.js";
import { OpenFiles } from "./open-files.js";
import {
  RENAME_NOREPLACE,
  SEEK_DATA,
  SEEK_HOLE,
  type Attr,
  type Caller,
  type DirEntry,
  type Directory,
  type Entry,
  type FileSystem,
  type FsStats,
  type Place,
  type Target,
  type TimeSpec,
} from "./types.js";
import { Xattrs, type XattrPlace } from "./xattrs.js";

export interface CryptFsOptions {
  readonly readOnly?: boolean;
  /** The volume's format version (default: the current one); version 1 is served read-only. */
  readonly formatVersion?: number;
}

const S_ISGID = 0o2000;
/** Objects of a version-3 volume (§13); earlier versions are served read-only. */
const CREATE_FLAGS = constants.O_CREAT | constants.O_EXCL | constants.O_RDWR | constants.O_NOATIME;
const ACCESS_MODE = constants.O_RDONLY | constants.O_WRONLY | constants.O_RDWR;

/** A place resolved to its lower directory and entry name ("" for a directory's own handle). */
interface Resolved {
  readonly dir: LowerDirectory;
  readonly entry: string;
  readonly name?: LowerName;
  readonly displayPath: string;
}

function childPath(parent: Directory, name: string): string {
  return parent.displayPath === "/" ? "/" + name : parent.displayPath + "/" + name;
}

/** Our own handles only: the adapter hands back what lookup gave it. */
function lowerDir(dir: Directory): LowerDirectory {
  if (!(dir instanceof LowerDirectory)) throw new FsError("EBADF");
  return dir;
}

/**
 * The filesystem operations over an encrypted lower directory. Every lower
 * call is relative to an open directory handle and never follows a symlink
 * (LowerOps); names go through the Namespace, contents through OpenFiles,
 * attributes and xattrs through their modules. Knows nothing of FUSE.
 */
export class CryptFs implements FileSystem {
  private readonly names: Namespace;
  private readonly files: OpenFiles;
  private readonly attrs: Attributes;
  private readonly xattrs: Xattrs;
  private readonly objects: Objects;
  private readonly gate = new Gate();
  private readonly readOnly: boolean;
  /** Only root can give new entries to their callers. */
  private readonly chownNew = process.getuid?.() === 0;

  private constructor(
    readonly root: LowerDirectory,
    private readonly keyring: Keyring,
    blockSize: number,
    private readonly log: Logger,
    private readonly io: LowerOps,
    options: CryptFsOptions,
  ) {
    const geometry = new ContentGeometry(blockSize);
    const version = options.formatVersion ?? CURRENT_FORMAT_VERSION;
    this.names = new Namespace(keyring, log, io, version);
    this.files = new OpenFiles(keyring, geometry, log, io);
    this.attrs = new Attributes(geometry, log, (inode) => this.files.sizeOf(inode));
    this.xattrs = new Xattrs(keyring, log, io);
    this.objects = new Objects(keyring, geometry, log, io, version >= OBJECTS_VERSION);
    this.readOnly = (options.readOnly ?? false) || version < CURRENT_FORMAT_VERSION;
  }

  /** Opens the lower root directory; everything below is reached from this handle. */
  static async open(
    lowerRoot: string,
    keyring: Keyring,
    blockSize: number,
    log: Logger,
    io: LowerOps,
    options: CryptFsOptions = {},
  ): Promise<CryptFs> {
    const fd = await io.openRoot(lowerRoot);
    const st = await io.fstat(fd);
    const root = new LowerDirectory(fd, inodeKey(st), "/", true);
    return new CryptFs(root, keyring, blockSize, log, io, options);
  }

  private requireWritable(): void {
    if (this.readOnly) throw new FsError("EROFS");
  }

  private async locate(place: Place): Promise<Resolved> {
    const dir = lowerDir(place.parent);
    const name = await this.names.existing(dir, place.name);
    return { dir, entry: name.entry, name, displayPath: childPath(dir, place.name) };
  }

  private async locateNew(place: Place): Promise<Resolved> {
    const dir = lowerDir(place.parent);
    const name = await this.names.forNew(dir, place.name);
    return { dir, entry: name.entry, name, displayPath: childPath(dir, place.name) };
  }

  private resolve(target: Target): Promise<Resolved> | Resolved {
    if ("dir" in target) {
      const dir = lowerDir(target.dir);
      return { dir, entry: "", displayPath: dir.displayPath };
    }
    return this.locate(target);
  }

  private xattrPlace(at: Resolved): XattrPlace {
    return { dir: at.dir.fd, entry: at.entry, displayPath: at.displayPath };
  }

  // --- lookups and attributes ---------------------------------------------------

  lookup(place: Place): Promise<Entry> {
    return this.gate.run(async () => this.entryAt(await this.locate(place)));
  }

  /** The entry at a resolved place; a directory is opened (its handle is the caller's). */
  private async entryAt(at: Resolved): Promise<Entry> {
    const st = await this.io.stat(at.dir.fd, at.entry);
    if (!isDir(st)) return { attr: await this.attrOf(at, st) };
    // The handle's own stat is the truth: the entry may have changed since the stat above.
    const fd = await this.io.openDir(at.dir.fd, at.entry);
    try {
      const own = await this.io.fstat(fd);
      const dir = new LowerDirectory(fd, inodeKey(own), at.displayPath, false);
      return { attr: this.attrs.of(own, at.displayPath), dir };
    } catch (err) {
      await this.io.close(fd).catch(() => undefined);
      throw err;
    }
  }

  /** Attributes of a non-directory entry; an object's come from its record (§13). */
  private async attrOf(at: Resolved, st: LowerStat): Promise<Attr> {
    // An open file is a regular file whatever its passing lower length (a truncate in progress).
    if (this.objects.isObject(st) && this.files.sizeOf(inodeKey(st)) === undefined) {
      const { value, stat } = await this.objects.read(at.dir.fd, at.entry, at.displayPath);
      return this.attrs.ofObject(stat, value, at.displayPath);
    }
    return this.attrs.of(st, at.displayPath);
  }

  releaseDir(handle: Directory): void {
    const dir = lowerDir(handle);
    if (dir.isRoot || --dir.references > 0) return;
    void this.io.close(dir.fd).catch(() => undefined);
  }

  getattr(target: Target): Promise<Attr> {
    return this.gate.run(async () => {
      const at = await this.resolve(target);
      return this.attrOf(at, await this.io.stat(at.dir.fd, at.entry));
    });
  }

  fgetattr(fh: number): Promise<Attr> {
    return this.gate.run(async () => {
      const handle = this.files.handle(fh);
      const file = handle.slot.open;
      const fresh = handle.fresh;
      handle.fresh = undefined;
      // Through the descriptor: an open file that was unlinked still has attributes.
      const st = fresh ?? (await file.stat());
      return this.attrs.of(st, file.displayPath, file.size);
    });
  }

  list(handle: Directory): Promise<DirEntry[]> {
    return this.gate.run(async () => {
      const dir = lowerDir(handle);
      const entries = await this.names.list(dir);
      return entries.map(({ name, entry }) => ({
        name,
        lookup: () =>
          this.gate.run(() => this.entryAt({ dir, entry, displayPath: childPath(dir, name) })),
      }));
    });
  }

  /**
   * access(2) as root sees it: the kernel asks only on mounts without
   * default_permissions, which serve root alone (FuseMount). Whatever
   * exists may be read and written; execution needs an x bit on anything
   * but a directory.
   */
  access(target: Target, mode: number): Promise<void> {
    return this.gate.run(async () => {
      const at = await this.resolve(target);
      const attr = await this.attrOf(at, await this.io.stat(at.dir.fd, at.entry));
      const isDirectory = (attr.mode & constants.S_IFMT) === constants.S_IFDIR;
      if (mode & constants.X_OK && !isDirectory && (attr.mode & 0o111) === 0)
        throw new FsError("EACCES");
    });
  }

  statfs(): Promise<FsStats> {
    return this.gate.run(async () => {
      const s = await this.io.statfs(this.root.fd);
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
    });
  }

  // --- file contents -------------------------------------------------------------

  open(place: Place, flags: number): Promise<number> {
    return this.gate.run(async () => {
      const writable = (flags & ACCESS_MODE) !== constants.O_RDONLY;
      if (writable) this.requireWritable();
      const at = await this.locate(place);
      const truncate = writable && (flags & constants.O_TRUNC) !== 0;
      return this.files.open(at.dir, at.entry, writable, truncate, at.displayPath);
    });
  }

  create(place: Place, mode: number, flags: number, caller?: Caller): Promise<number> {
    return this.gate.run(async () => {
      this.requireWritable();
      const dir = lowerDir(place.parent);
      const exclusive = (flags & constants.O_EXCL) !== 0;
      // In a merged directory the name may exist under another of its IDs, or be a conflict copy's (§3.3).
      if ((await this.names.idsOf(dir)).length > 1 || mayNameConflictCopy(place.name)) {
        const existing = await this.locate(place);
        if (await this.io.stat(dir.fd, existing.entry).catch(() => undefined))
          return this.openExisting(existing, flags, exclusive);
      }
      const at = await this.locateNew(place);
      await this.names.writeSidecar(dir, at.name!);
      const created = this.files.beginCreate(dir, at.entry);
      let opened;
      try {
        opened = await this.io.openFile(dir.fd, at.entry, CREATE_FLAGS, mode & 0o7777);
      } catch (err) {
        created();
        if ((err as NodeJS.ErrnoException).code === "EEXIST")
          return this.openExisting(at, flags, exclusive);
        throw err;
      }
      try {
        await this.own(dir, at.entry, caller);
        const st = caller && this.chownNew ? await this.io.fstat(opened.fd) : opened.stat;
        return await this.files.created(opened.fd, st, at.displayPath);
      } catch (err) {
        // No headerless lower file may stay behind (a full disk, say).
        await this.io.unlink(dir.fd, at.entry).catch(() => undefined);
        await this.names.removeSidecar(dir, at.name!);
        throw err;
      } finally {
        created();
      }
    });
  }

  private openExisting(at: Resolved, flags: number, exclusive: boolean): Promise<number> {
    if (exclusive) throw new FsError("EEXIST");
    const truncate = (flags & constants.O_TRUNC) !== 0;
    return this.files.open(at.dir, at.entry, true, truncate, at.displayPath);
  }

  read(fh: number, length: number, position: number): Promise<Buffer> {
    return this.gate.run(async () => {
      const { slot } = this.files.handle(fh);
      const data = await slot.lock.read(() => slot.open.read(position, length));
      return data.length > length ? data.subarray(0, length) : data;
    });
  }

  write(fh: number, data: Buffer, position: number): Promise<number> {
    return this.gate.run(async () => {
      const { slot, writable } = this.files.handle(fh);
      if (!writable) throw new FsError("EBADF");
      await slot.lock.write(() => slot.open.write(position, data));
      return data.length;
    });
  }

  fsync(fh: number, dataOnly: boolean): Promise<void> {
    return this.gate.run(async () => {
      const { slot } = this.files.handle(fh);
      await slot.lock.write(() => slot.open.sync(dataOnly));
    });
  }

  release(fh: number): Promise<void> {
    return this.gate.run(() => this.files.release(fh));
  }

  truncate(place: Place, size: number): Promise<void> {
    return this.gate.run(async () => {
      this.requireWritable();
      const at = await this.locate(place);
      await this.files.withWritable(at.dir, at.entry, at.displayPath, (file) =>
        file.truncate(size),
      );
    });
  }

  ftruncate(fh: number, size: number): Promise<void> {
    return this.gate.run(async () => {
      this.requireWritable();
      const { slot } = this.files.handle(fh);
      await slot.lock.write(() => slot.open.truncate(size));
    });
  }

  /** Modes 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE and ZERO_RANGE (OpenFile.allocate); EOPNOTSUPP otherwise. */
  fallocate(fh: number, mode: number, offset: number, length: number): Promise<void> {
    return this.gate.run(async () => {
      this.requireWritable();
      const { slot, writable } = this.files.handle(fh);
      if (!writable) throw new FsError("EBADF");
      await slot.lock.write(() => slot.open.allocate(mode, offset, length));
    });
  }

  lseek(fh: number, offset: number, whence: number): Promise<number> {
    return this.gate.run(async () => {
      if (whence !== SEEK_DATA && whence !== SEEK_HOLE) throw new FsError("EINVAL");
      const { slot } = this.files.handle(fh);
      return slot.lock.read(() => slot.open.seek(offset, whence === SEEK_DATA ? "data" : "hole"));
    });
  }

  // --- namespace -------------------------------------------------------------------

  unlink(place: Place): Promise<void> {
    return this.gate.run(async () => {
      this.requireWritable();
      const at = await this.locate(place);
      await this.io.unlink(at.dir.fd, at.entry);
      await this.names.removeSidecar(at.dir, at.name!);
    });
  }

  mkdir(place: Place, mode: number, caller?: Caller): Promise<Entry> {
    return this.gate.run(async () => {
      this.requireWritable();
      const at = await this.locateNew(place);
      await this.names.writeSidecar(at.dir, at.name!);
      await this.io.mkdir(at.dir.fd, at.entry, mode & 0o7777);
      let entry: Entry | undefined;
      try {
        entry = await this.entryAt(at);
        const dir = lowerDir(entry.dir!);
        dir.ids = [];
        await this.names.createDirId(dir);
        await this.own(at.dir, at.entry, caller);
        await this.io.fsyncDir(at.dir.fd);
        return caller && this.chownNew ? { ...entry, attr: await this.statOf(at) } : entry;
      } catch (err) {
        if (entry?.dir) this.releaseDir(entry.dir);
        await this.removeEmptyDir(at).catch(() => undefined);
        throw err;
      }
    });
  }

  private async statOf(at: Resolved): Promise<Attr> {
    return this.attrOf(at, await this.io.stat(at.dir.fd, at.entry));
  }

  /** Removes a lower directory that holds only ID entries (and puts them back if the removal fails). */
  private async removeEmptyDir(at: Resolved): Promise<void> {
    const fd = await this.io.openDir(at.dir.fd, at.entry);
    try {
      const ids = await this.emptyIds(fd);
      for (const id of ids) await this.io.unlink(fd, id);
      try {
        await this.io.rmdir(at.dir.fd, at.entry);
      } catch (err) {
        await this.restoreIds(fd, ids);
        throw err;
      }
    } finally {
      await this.io.close(fd).catch(() => undefined);
    }
    await this.names.removeSidecar(at.dir, at.name!);
  }

  /** The ID entries of an empty directory; ENOTEMPTY when it holds anything else. */
  private async emptyIds(fd: Fd): Promise<string[]> {
    const { ids, others } = await this.names.idEntries(fd);
    if (others > 0) throw new FsError("ENOTEMPTY");
    return ids;
  }

  private async restoreIds(fd: Fd, ids: string[]): Promise<void> {
    for (const id of ids) {
      await this.io
        .createFile(fd, id, Buffer.alloc(0), 0o444, { exclusive: true, sync: false })
        .catch((err: Error) =>
          this.log.error({ err: err.message }, "could not restore a directory ID entry"),
        );
    }
    await this.io.fsyncDir(fd).catch(() => undefined);
  }

  rmdir(place: Place): Promise<void> {
    return this.gate.run(async () => {
      this.requireWritable();
      const at = await this.locate(place);
      const st = await this.io.stat(at.dir.fd, at.entry);
      if (!isDir(st)) throw new FsError("ENOTDIR");
      await this.removeEmptyDir(at);
    });
  }

  rename(from: Place, to: Place, flags: number): Promise<void> {
    return this.gate.run(async () => {
      this.requireWritable();
      // RENAME_EXCHANGE and whiteouts have no encrypted equivalent yet.
      if (flags & ~RENAME_NOREPLACE) throw new FsError("EINVAL");
      const source = await this.locate(from);
      const existing = await this.locate(to);
      // locate finds an existing target under any of the directory's IDs; a missing one gets the canonical name.
      const targetStat = await this.io.stat(existing.dir.fd, existing.entry).catch(() => undefined);
      const target = targetStat ? existing : await this.locateNew(to);
      if (source.dir === target.dir && source.entry === target.entry) return;
      if (targetStat && flags & RENAME_NOREPLACE) throw new FsError("EEXIST");
      const sourceStat = await this.io.stat(source.dir.fd, source.entry);
      // Two names of one inode (hard links): rename(2) does nothing, so the
      // source keeps its name and must keep its long-name sidecar too.
      if (targetStat && inodeKey(targetStat) === inodeKey(sourceStat)) return;
      let removedIds: { fd: Fd; ids: string[] } | undefined;
      if (targetStat && isDir(targetStat)) {
        if (!isDir(sourceStat)) throw new FsError("EISDIR");
        const fd = await this.io.openDir(target.dir.fd, target.entry);
        try {
          const ids = await this.emptyIds(fd);
          for (const id of ids) await this.io.unlink(fd, id);
          removedIds = { fd, ids };
        } catch (err) {
          await this.io.close(fd).catch(() => undefined);
          throw err;
        }
      } else if (targetStat && isDir(sourceStat)) {
        throw new FsError("ENOTDIR");
      }
      try {
        await this.names.writeSidecar(target.dir, target.name!);
        await this.io.rename(
          source.dir.fd,
          source.entry,
          target.dir.fd,
          target.entry,
          flags & RENAME_NOREPLACE,
        );
      } catch (err) {
        // The replaced directory is still there: it gets its IDs back.
        if (removedIds) await this.restoreIds(removedIds.fd, removedIds.ids);
        throw err;
      } finally {
        if (removedIds) await this.io.close(removedIds.fd).catch(() => undefined);
      }
      if (source.entry !== target.entry || source.dir !== target.dir)
        await this.names.removeSidecar(source.dir, source.name!);
    });
  }

  link(existing: Place, place: Place): Promise<Entry> {
    return this.gate.run(async () => {
      this.requireWritable();
      const source = await this.locate(existing);
      const target = await this.locateNew(place);
      await this.names.writeSidecar(target.dir, target.name!);
      await this.io.link(source.dir.fd, source.entry, target.dir.fd, target.entry);
      return { attr: await this.statOf(target) };
    });
  }

  symlink(linkTarget: string, place: Place, caller?: Caller): Promise<Entry> {
    if (Buffer.byteLength(linkTarget, "utf8") > MAX_OBJECT_SYMLINK_TARGET)
      return Promise.reject(new FsError("ENAMETOOLONG"));
    const value: ObjectValue = { kind: FileKind.Symlink, target: linkTarget };
    return this.createObject(place, value, SYMLINK_LOWER_MODE, caller);
  }

  /** Creates an object (§13) under a new name, given to the caller. */
  private createObject(
    place: Place,
    value: ObjectValue,
    mode: number,
    caller?: Caller,
  ): Promise<Entry> {
    return this.gate.run(async () => {
      this.requireWritable();
      const at = await this.locateNew(place);
      await this.names.writeSidecar(at.dir, at.name!);
      try {
        await this.objects.create(at.dir.fd, at.entry, value, mode & 0o7777);
      } catch (err) {
        // An existing entry of that name keeps its sidecar.
        if ((err as NodeJS.ErrnoException).code !== "EEXIST")
          await this.names.removeSidecar(at.dir, at.name!);
        throw err;
      }
      await this.own(at.dir, at.entry, caller);
      return { attr: await this.statOf(at) };
    });
  }

  /** A version-3 symlink is an object; the lower symlinks of earlier versions are still read. */
  readlink(place: Place): Promise<string> {
    return this.gate.run(async () => {
      const at = await this.locate(place);
      const st = await this.io.stat(at.dir.fd, at.entry);
      if (this.objects.isObject(st)) {
        const { value } = await this.objects.read(at.dir.fd, at.entry, at.displayPath);
        if (value.kind !== FileKind.Symlink) throw new FsError("EINVAL");
        return value.target;
      }
      if (!isSymlink(st)) throw new FsError("EINVAL");
      const stored = await this.io.readlink(at.dir.fd, at.entry);
      try {
        return decryptSymlink(this.keyring.volume.symlinks, stored);
      } catch (err) {
        if (isFormatError(err))
          this.log.error(
            { path: at.displayPath, problem: err.message },
            "corrupt symlink: read refused",
          );
        throw err;
      }
    });
  }

  /** Regular files as by create; FIFOs, sockets and devices as objects (§13). */
  async mknod(place: Place, mode: number, rdev: number, caller?: Caller): Promise<Entry> {
    const type = mode & constants.S_IFMT;
    const value = objectOfType(type, rdev);
    if (value) return this.createObject(place, value, mode, caller);
    if (type !== constants.S_IFREG && type !== 0) throw new FsError("EINVAL");
    const fh = await this.create(place, mode, constants.O_EXCL | constants.O_WRONLY, caller);
    try {
      return { attr: await this.fgetattr(fh) };
    } finally {
      await this.release(fh);
    }
  }

  fsyncdir(handle: Directory): Promise<void> {
    return this.gate.run(() => this.io.fsyncDir(lowerDir(handle).fd));
  }

  // --- metadata --------------------------------------------------------------------

  chmod(target: Target, mode: number): Promise<void> {
    return this.gate.run(async () => {
      this.requireWritable();
      const at = await this.resolve(target);
      await this.io.chmod(at.dir.fd, at.entry, mode & 0o7777);
    });
  }

  chown(target: Target, uid: number, gid: number): Promise<void> {
    return this.gate.run(async () => {
      this.requireWritable();
      const at = await this.resolve(target);
      await this.io.chown(at.dir.fd, at.entry, uid, gid);
    });
  }

  utimens(target: Target, atime: TimeSpec, mtime: TimeSpec): Promise<void> {
    return this.gate.run(async () => {
      this.requireWritable();
      if (atime === "omit" && mtime === "omit") return;
      const at = await this.resolve(target);
      await this.io.utimens(at.dir.fd, at.entry, atime, mtime);
    });
  }

  /** Gives a new lower entry to the caller (gid stays the parent's in a setgid directory). */
  private async own(parent: LowerDirectory, entry: string, caller?: Caller): Promise<void> {
    if (!this.chownNew || !caller || (caller.uid === 0 && caller.gid === 0)) return;
    const st = await this.io.stat(parent.fd, "");
    const gid = st.mode & S_ISGID ? st.gid : caller.gid;
    await this.io.chown(parent.fd, entry, caller.uid, gid);
  }

  // --- extended attributes -----------------------------------------------------------

  setxattr(target: Target, name: string, value: Buffer, flags: number): Promise<void> {
    return this.gate.run(async () => {
      this.requireWritable();
      await this.xattrs.set(this.xattrPlace(await this.resolve(target)), name, value, flags);
    });
  }

  getxattr(target: Target, name: string): Promise<Buffer | undefined> {
    return this.gate.run(async () =>
      this.xattrs.get(this.xattrPlace(await this.resolve(target)), name),
    );
  }

  listxattr(target: Target): Promise<string[]> {
    return this.gate.run(async () => this.xattrs.list(this.xattrPlace(await this.resolve(target))));
  }

  removexattr(target: Target, name: string): Promise<void> {
    return this.gate.run(async () => {
      this.requireWritable();
      await this.xattrs.remove(this.xattrPlace(await this.resolve(target)), name);
    });
  }

  /**
   * Refuses new operations, waits for those in flight, then closes every
   * file (zeroing its key) and the root handle. The keyring is not ours:
   * its owner wipes it once this has resolved.
   */
  async destroy(): Promise<void> {
    await this.gate.close();
    await this.files.closeAll();
    await this.io.close(this.root.fd).catch(() => undefined);
  }
}

/** The object mknod makes for a file type, or undefined for a regular file or an unknown type. */
function objectOfType(type: number, rdev: number): ObjectValue | undefined {
  switch (type) {
    case constants.S_IFIFO:
      return { kind: FileKind.Fifo };
    case constants.S_IFSOCK:
      return { kind: FileKind.Socket };
    case constants.S_IFCHR:
      return { kind: FileKind.CharDevice, ...decodeRdev(rdev) };
    case constants.S_IFBLK:
      return { kind: FileKind.BlockDevice, ...decodeRdev(rdev) };
    default:
      return undefined;
  }
}
