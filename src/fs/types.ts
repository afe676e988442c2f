/**
 * The filesystem interface the operations implement and a binding adapter
 * drives. It knows nothing of any FUSE library: another binding needs only
 * another adapter.
 */
export interface Attr {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  ino: number;
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

/** A directory entry whose attributes are read only when asked for (READDIRPLUS). */
export interface DirEntry {
  readonly name: string;
  attr(): Promise<Attr>;
}

/** Who asked: new entries belong to the caller, as on a local filesystem. */
export interface Caller {
  uid: number;
  gid: number;
}

/** A timestamp from utimens: nanoseconds since the epoch, or the UTIME_NOW / UTIME_OMIT markers. */
export type TimeSpec = bigint | "now" | "omit";

/** Paths are cleartext, absolute within the mount ("/a/b"). Failures throw FsError. */
export interface FileSystem {
  getattr(path: string): Promise<Attr>;
  fgetattr(path: string, fh: number): Promise<Attr>;
  /** The entries of a directory without "." and "..". */
  list(path: string): Promise<DirEntry[]>;
  access(path: string, mode: number): Promise<void>;
  statfs(path: string): Promise<FsStats>;

  open(path: string, flags: number): Promise<number>;
  create(path: string, mode: number, flags: number, caller?: Caller): Promise<number>;
  /** Up to `length` bytes; fewer only at the end of the file. */
  read(path: string, fh: number, length: number, position: number): Promise<Buffer>;
  write(path: string, fh: number, data: Buffer, length: number, position: number): Promise<number>;
  flush(path: string, fh: number): Promise<void>;
  fsync(path: string, fh: number, dataOnly: boolean): Promise<void>;
  /** fsync(2) of a directory; optional: without it (or for a removed directory) it succeeds. */
  fsyncdir?(path: string, dataOnly: boolean): Promise<void>;
  release(path: string, fh: number): Promise<void>;
  truncate(path: string, size: number): Promise<void>;
  ftruncate(path: string, fh: number, size: number): Promise<void>;

  unlink(path: string): Promise<void>;
  mkdir(path: string, mode: number, caller?: Caller): Promise<void>;
  rmdir(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  link(existing: string, path: string): Promise<void>;
  symlink(target: string, path: string, caller?: Caller): Promise<void>;
  readlink(path: string): Promise<string>;
  mknod(path: string, mode: number, rdev: number, caller?: Caller): Promise<void>;

  chmod(path: string, mode: number): Promise<void>;
  chown(path: string, uid: number, gid: number): Promise<void>;
  utimens(path: string, atime: TimeSpec, mtime: TimeSpec): Promise<void>;

  setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void>;
  /** Undefined when the attribute does not exist. */
  getxattr(path: string, name: string): Promise<Buffer | undefined>;
  listxattr(path: string): Promise<string[]>;
  removexattr(path: string, name: string): Promise<void>;

  /** Flushes and closes everything; called once at unmount. */
  destroy(): Promise<void>;
}
