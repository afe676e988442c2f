/**
 * The filesystem interface the operations implement and a binding adapter
 * drives. It knows nothing of any FUSE library: another binding needs only
 * another adapter.
 *
 * It is keyed by directory handles, not paths (the shape of libfuse's
 * passthrough_ll and go-fuse's inode API): a `Directory` is an open handle on
 * one lower directory, and every entry is named relative to one. Nothing is
 * resolved from the root again, so a lower directory swapped for a symlink
 * behind our back is never followed.
 */
export interface Attr {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  /** st_ino for the kernel (the lower inode number, folded to 53 bits above that). */
  ino: number;
  /** Exact identity of the lower inode (`dev:ino`): hard links share it. */
  inode: string;
  dev: number;
  rdev: number;
  blksize: number;
  blocks: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

export interface FsStats {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  namemax: number;
}

/**
 * An open handle on a lower directory, given out by the filesystem. The
 * holder releases it (releaseDir) when it no longer needs it.
 */
export interface Directory {
  /** Cleartext path when it was opened, for log messages only. */
  readonly displayPath: string;
}

/** An entry named `name` in directory `parent`. */
export interface Place {
  readonly parent: Directory;
  readonly name: string;
}

/** What an operation acts on: a directory through its own handle, or a named entry. */
export type Target = { readonly dir: Directory } | Place;

/** An entry found or made: its attributes, and a handle when it is a directory (the caller owns it). */
export interface Entry {
  readonly attr: Attr;
  readonly dir?: Directory;
}

/** A directory entry whose attributes are read only when asked for (READDIRPLUS). */
export interface DirEntry {
  readonly name: string;
  lookup(): Promise<Entry>;
}

/** Who asked: new entries belong to the caller, as on a local filesystem. */
export interface Caller {
  uid: number;
  gid: number;
}

/** A timestamp from utimens: nanoseconds since the epoch, or the UTIME_NOW / UTIME_OMIT markers. */
export type TimeSpec = bigint | "now" | "omit";

export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const FALLOC_FL_KEEP_SIZE = 1;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

/** Failures throw FsError. */
export interface FileSystem {
  readonly root: Directory;
  lookup(place: Place): Promise<Entry>;
  releaseDir(dir: Directory): void;

  getattr(target: Target): Promise<Attr>;
  fgetattr(fh: number): Promise<Attr>;
  /** The entries of a directory without "." and "..". */
  list(dir: Directory): Promise<DirEntry[]>;
  access(target: Target, mode: number): Promise<void>;
  statfs(): Promise<FsStats>;

  open(place: Place, flags: number): Promise<number>;
  create(place: Place, mode: number, flags: number, caller?: Caller): Promise<number>;
  /** Up to `length` bytes; fewer only at the end of the file. */
  read(fh: number, length: number, position: number): Promise<Buffer>;
  write(fh: number, data: Buffer, position: number): Promise<number>;
  fsync(fh: number, dataOnly: boolean): Promise<void>;
  release(fh: number): Promise<void>;
  truncate(place: Place, size: number): Promise<void>;
  ftruncate(fh: number, size: number): Promise<void>;
  fallocate(fh: number, mode: number, offset: number, length: number): Promise<void>;
  /** SEEK_DATA or SEEK_HOLE: the next data or hole at or after `offset`; ENXIO past the end. */
  lseek(fh: number, offset: number, whence: number): Promise<number>;

  unlink(place: Place): Promise<void>;
  mkdir(place: Place, mode: number, caller?: Caller): Promise<Entry>;
  rmdir(place: Place): Promise<void>;
  /** flags: RENAME_NOREPLACE (RENAME_EXCHANGE is refused with EINVAL). */
  rename(from: Place, to: Place, flags: number): Promise<void>;
  link(existing: Place, place: Place): Promise<Entry>;
  symlink(target: string, place: Place, caller?: Caller): Promise<Entry>;
  readlink(place: Place): Promise<string>;
  mknod(place: Place, mode: number, rdev: number, caller?: Caller): Promise<Entry>;
  fsyncdir(dir: Directory, dataOnly: boolean): Promise<void>;

  chmod(target: Target, mode: number): Promise<void>;
  chown(target: Target, uid: number, gid: number): Promise<void>;
  utimens(target: Target, atime: TimeSpec, mtime: TimeSpec): Promise<void>;

  setxattr(target: Target, name: string, value: Buffer, flags: number): Promise<void>;
  /** Undefined when the attribute does not exist. */
  getxattr(target: Target, name: string): Promise<Buffer | undefined>;
  listxattr(target: Target): Promise<string[]>;
  removexattr(target: Target, name: string): Promise<void>;

  /** Waits for operations in flight, then flushes and closes everything; called once at unmount. */
  destroy(): Promise<void>;
}
