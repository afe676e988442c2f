import type { Logger } from "pino";
import type { ContentGeometry } from "../format/content.js";
import { isFormatError } from "../format/errors.js";
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

/** Cleartext attributes from lower ones: sizes of files and symlinks are those of the cleartext. */
export class Attributes {
  constructor(
    private readonly geometry: ContentGeometry,
    private readonly log: Logger,
    /** The size of an open file, which may be ahead of its lower size. */
    private readonly openSize: (inode: string) => number | undefined,
  ) {}

  of(st: LowerStat, displayPath: string, size?: number): Attr {
    // The format stores files, directories and symlinks only: a FIFO, socket or device in the
    // lower was put there behind our back, and showing it would let the kernel open it (a
    // FIFO would block its reader forever).
    if (!isFile(st) && !isDir(st) && !isSymlink(st)) {
      this.log.error({ path: displayPath }, "lower entry of a type the format has not: refused");
      throw new FsError("EIO", "lower entry of an unsupported type");
    }
    const inode = inodeKey(st);
    return {
      mode: st.mode,
      uid: st.uid,
      gid: st.gid,
      size: size ?? this.cleartextSize(st, inode, displayPath),
      nlink: st.nlink,
      ino: reportedIno(st.ino),
      inode,
      dev: Number(st.dev),
      rdev: st.rdev,
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
