import { constants } from "node:fs";
import type { Logger } from "pino";
import type { ContentGeometry } from "../format/content.js";
import { isFormatError } from "../format/errors.js";
import { FileKind } from "../format/header.js";
import { encodeRdev, type ObjectValue } from "../format/object.js";
import { symlinkTargetLength } from "../format/symlink.js";
import { FsError } from "./errors.js";
import { inodeKey, isDir, isFile, isSymlink, type LowerStat } from "./lower/ops.js";
import type { Attr } from "./types.js";

/** Inode numbers above this are not exact as JS numbers (overlayfs xino, NFS, mergerfs). */
const MAX_EXACT_INO = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * st_ino for the kernel, which only gets a double: the lower inode number
 * when it fits, else folded into 53 bits. Our own bookkeeping never uses
 * it (it keys by the exact `dev:ino`); it is what programs see.
 */
export function reportedIno(ino: bigint): number {
  if (ino <= MAX_EXACT_INO) return Number(ino);
  return Number((ino ^ (ino >> 53n)) & MAX_EXACT_INO);
}

const { S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK } = constants;
const TYPE_OF_KIND: Record<Exclude<FileKind, FileKind.Regular>, number> = {
  [FileKind.Symlink]: S_IFLNK,
  [FileKind.Fifo]: S_IFIFO,
  [FileKind.Socket]: S_IFSOCK,
  [FileKind.CharDevice]: S_IFCHR,
  [FileKind.BlockDevice]: S_IFBLK,
};

/**
 * Cleartext attributes from lower ones: sizes of files and symlinks are
 * those of the cleartext; an object (§13) takes its type, size and device
 * number from its record.
 */
export class Attributes {
  constructor(
    private readonly geometry: ContentGeometry,
    private readonly log: Logger,
    /** The size of an open file, which may be ahead of its lower size. */
    private readonly openSize: (inode: string) => number | undefined,
  ) {}

  of(st: LowerStat, displayPath: string, size?: number): Attr {
    return this.build(
      st,
      st.mode,
      size ?? this.cleartextSize(st, inodeKey(st), displayPath),
      0,
      displayPath,
    );
  }

  /** An object's attributes: the lower file's, with the type, size and rdev of its record. */
  ofObject(st: LowerStat, value: ObjectValue, displayPath: string): Attr {
    // Linux shows every symlink as 0777; the lower file of one is 0600 (§13).
    const permissions = value.kind === FileKind.Symlink ? 0o777 : st.mode & 0o7777;
    const mode = TYPE_OF_KIND[value.kind] | permissions;
    const size = value.kind === FileKind.Symlink ? Buffer.byteLength(value.target, "utf8") : 0;
    const rdev =
      value.kind === FileKind.CharDevice || value.kind === FileKind.BlockDevice
        ? encodeRdev(value.major, value.minor)
        : 0;
    return this.build(st, mode, size, rdev, displayPath);
  }

  private build(
    st: LowerStat,
    mode: number,
    size: number,
    rdev: number,
    displayPath: string,
  ): Attr {
    // The format stores files, directories and symlinks only: a FIFO, socket or device in the
    // lower was put there behind our back, and showing it would let the kernel open it (a
    // FIFO would block its reader forever).
    if (!isFile(st) && !isDir(st) && !isSymlink(st)) {
      this.log.error({ path: displayPath }, "lower entry of a type the format has not: refused");
      throw new FsError("EIO", "lower entry of an unsupported type");
    }
    return {
      mode,
      uid: st.uid,
      gid: st.gid,
      size,
      nlink: st.nlink,
      ino: reportedIno(st.ino),
      inode: inodeKey(st),
      dev: Number(st.dev),
      rdev,
      blksize: st.blksize,
      blocks: st.blocks,
      atimeNs: st.atimeNs,
      mtimeNs: st.mtimeNs,
      ctimeNs: st.ctimeNs,
    };
  }

  /**
   * A lower file whose length no sequence of writes can produce was cut or
   * extended behind our back: that is reported (EIO and a log line), never
   * shown as an empty file.
   */
  private cleartextSize(st: LowerStat, inode: string, displayPath: string): number {
    if (isFile(st)) {
      const open = this.openSize(inode);
      if (open !== undefined) return open;
      try {
        return this.geometry.cleartextSize(st.size);
      } catch (err) {
        if (!isFormatError(err)) throw err;
        this.log.error({ path: displayPath, problem: err.message }, "file has an invalid length");
        throw new FsError("EIO", err.message);
      }
    }
    if (isSymlink(st)) return symlinkTargetLength(st.size);
    return st.size;
  }
}
