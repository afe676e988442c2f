import { constants } from "node:fs";
import { constants as osConstants } from "node:os";
import type { Logger } from "pino";
import type { Keyring } from "../crypto/keys.js";
import {
  BLOCK_OVERHEAD,
  ContentGeometry,
  openBlocks,
  sealBlocks,
  type FileCipher,
} from "../format/content.js";
import {
  FileKind,
  HEADER_SIZE,
  createHeader,
  openHeader,
  planHolesFlag,
  type FileHeader,
} from "../format/header.js";
import { FormatError, isFormatError } from "../format/errors.js";
import { FsError } from "./errors.js";
import { makeError } from "./lower/binding.js";
import {
  isNativeLowerOps,
  writeFully,
  type Fd,
  type LowerOps,
  type LowerStat,
} from "./lower/ops.js";
import { GCM_NONCE_SIZE } from "../crypto/aead.js";
import { cryptoAddon } from "../crypto/native.js";
import { randomPool } from "../crypto/random.js";
import { SEEK_DATA, SEEK_HOLE } from "./types.js";

/** Zero bytes written per call where a lower file cannot punch holes. */
const ZERO_CHUNK = 1 << 20;
/** fallocate(2) modes (linux/falloc.h). */
const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;
const FALLOC_FL_ZERO_RANGE = 0x10;
/**
 * Requests of at least this many sealed bytes are sealed or opened in one
 * threadpool job with their lower I/O (native/crypto/crypto.c): several
 * requests then use several cores. Smaller ones stay on the JS thread,
 * where a block costs less than the threadpool round trip.
 */
export const NATIVE_BLOCKS_MIN = 65536;
/** EBADMSG from a block job: a block failed or the lower was short; the JS path names it. */
const EBADMSG = osConstants.errno.EBADMSG;
/** A lower file descriptor from LowerOps.openFile, with its stat taken through it. */
export interface OpenedLower {
  readonly fd: Fd;
  readonly stat: LowerStat;
  readonly writable: boolean;
}

/**
 * The one state of an open lower file, shared by every handle on the same
 * inode (hard links and several opens see one file). Owns the lower file
 * descriptor, the unwrapped file key, the cleartext size, and a copy of the
 * final block's cleartext so appends need not read it back. Once closed it
 * refuses everything: its key is zeroed, and nothing may be sealed with it.
 *
 * Writers only ever run on version-3 volumes (older ones are served
 * read-only), so growing a file leaves holes (§9) rather than sealed zeros.
 */
export class OpenFile implements FileCipher {
  private tail: { index: number; data: Buffer } | undefined;
  private closed = false;
  /** The lower ops are the real ones: block jobs may use the descriptor directly. */
  private readonly nativeBlocks: boolean;
  readonly fileKey: Buffer;
  readonly fileId: Buffer;

  private constructor(
    private fd: Fd,
    private writableFd: boolean,
    /** The verified header and its bytes, to set the HOLES flag (§9). */
    private header: FileHeader,
    private headerBytes: Buffer,
    private readonly keyring: Keyring,
    readonly geometry: ContentGeometry,
    public size: number,
    public displayPath: string,
    private readonly log: Logger,
    private readonly io: LowerOps,
  ) {
    this.fileKey = header.fileKey;
    this.fileId = header.fileId;
    this.nativeBlocks = isNativeLowerOps(io);
  }

  /** The header's HOLES flag: an all-zero full block reads as zeros (§9). */
  get holes(): boolean {
    return this.header.holes;
  }

  get writable(): boolean {
    return this.writableFd;
  }

  /** Takes over an open lower descriptor and verifies the file's header; closes it on failure. */
  static async open(
    lower: OpenedLower,
    keyring: Keyring,
    geometry: ContentGeometry,
    displayPath: string,
    log: Logger,
    io: LowerOps,
  ): Promise<OpenFile> {
    try {
      const lowerSize = lower.stat.size;
      const bytes = Buffer.alloc(HEADER_SIZE);
      const got = await io.pread(lower.fd, bytes, 0, Math.min(lowerSize, HEADER_SIZE), 0);
      const header = openHeader(keyring, bytes.subarray(0, got), geometry.blockSize);
      if (header.kind !== FileKind.Regular) {
        header.fileKey.fill(0);
        throw new FormatError("OBJECT_INVALID", "an object's header at a regular file's length");
      }
      const size = geometry.cleartextSize(lowerSize);
      return new OpenFile(
        lower.fd,
        lower.writable,
        header,
        bytes,
        keyring,
        geometry,
        size,
        displayPath,
        log,
        io,
      );
    } catch (err) {
      await io.close(lower.fd).catch(() => undefined);
      if (isFormatError(err)) {
        log.error({ path: displayPath, problem: err.message }, "cannot open file: header invalid");
        throw new FsError("EIO", err.message);
      }
      throw err;
    }
  }

  /** Writes header + empty final block into a freshly created (empty) lower file. */
  static async initialize(
    fd: Fd,
    keyring: Keyring,
    geometry: ContentGeometry,
    displayPath: string,
    log: Logger,
    io: LowerOps,
  ): Promise<OpenFile> {
    const { bytes, header } = createHeader(keyring, { blockSize: geometry.blockSize });
    const file = new OpenFile(fd, true, header, bytes, keyring, geometry, 0, displayPath, log, io);
    const empty = sealBlocks(file, 0, Buffer.alloc(0), true);
    await file.writeAll(Buffer.concat([bytes, empty]), 0);
    file.tail = { index: 0, data: Buffer.alloc(0) };
    return file;
  }

  /** The first writer arrived: a read-write descriptor of the same inode replaces the read-only one. */
  async upgrade(fd: Fd): Promise<void> {
    this.assertOpen();
    const old = this.fd;
    this.fd = fd;
    this.writableFd = true;
    await this.io.close(old);
  }

  private assertOpen(): void {
    if (this.closed) throw new FsError("EBADF", "file already closed");
  }

  private finalIndex(size = this.size): number {
    return this.geometry.finalIndex(size);
  }

  /** Cleartext of blocks [first, last], verified; throws EIO naming the bad block. */
  private async readBlocks(first: number, last: number): Promise<Buffer> {
    if (this.tail && first === last && first === this.tail.index) return this.tail.data;
    const start = this.geometry.blockOffset(first);
    const end = Math.min(this.geometry.blockOffset(last + 1), this.geometry.lowerSize(this.size));
    if (this.nativeBlocks && end - start >= NATIVE_BLOCKS_MIN) {
      const clear = await this.openNative(first, last, start, end);
      if (clear) return clear;
    }
    const sealed = sealedBuffers.take(end - start);
    try {
      return await this.readSealed(first, last, sealed.subarray(0, end - start), start);
    } finally {
      sealedBuffers.give(sealed);
    }
  }

  /**
   * Blocks [first, last] (lower bytes [start, end)) read and opened in one
   * threadpool job. Undefined when a block fails or the lower is short: the
   * JS path then reads again and reports exactly which block and why.
   */
  private async openNative(
    first: number,
    last: number,
    start: number,
    end: number,
  ): Promise<Buffer | undefined> {
    const out = Buffer.allocUnsafe(this.geometry.openedLength(end - start));
    this.assertOpen();
    const finalIndex = this.finalIndex();
    const result = await cryptoAddon().openRead(
      this.fd,
      this.fileKey,
      this.fileId,
      first,
      finalIndex,
      this.holes,
      out,
      this.geometry.blockSize,
      start,
      end - start,
    );
    if (result === -EBADMSG) return undefined;
    if (result < 0) throw makeError(-result);
    if (last === finalIndex) {
      this.tail = {
        index: last,
        data: Buffer.from(out.subarray((last - first) * this.geometry.blockSize)),
      };
    }
    return out;
  }

  private async readSealed(
    first: number,
    last: number,
    sealed: Buffer,
    start: number,
  ): Promise<Buffer> {
    const { sealedBlockSize } = this.geometry;
    const end = start + sealed.length;
    this.assertOpen();
    const bytesRead = await this.io.pread(this.fd, sealed, 0, sealed.length, start);
    const finalIndex = this.finalIndex();
    const { cleartext, failure } = openBlocks(
      this,
      first,
      sealed.subarray(0, bytesRead),
      finalIndex,
    );
    if (failure || bytesRead < end - start) {
      const index = failure?.index ?? first + Math.floor(bytesRead / sealedBlockSize);
      const problem = failure?.error.message ?? "lower file shorter than expected";
      this.log.error(
        { path: this.displayPath, block: index, problem },
        "corrupt block: read refused",
      );
      throw Object.assign(new FsError("EIO", problem), { partial: cleartext, index });
    }
    if (last === finalIndex) {
      this.tail = {
        index: last,
        data: Buffer.from(cleartext.subarray((last - first) * this.geometry.blockSize)),
      };
    }
    return cleartext;
  }

  /**
   * Reads up to `length` bytes at `position`. A read that reaches the end of
   * the file also verifies the final block, so a cut-off file never reads as
   * a shorter valid one. A corrupt block anywhere in the range fails the
   * whole read with EIO: never a short read, which the kernel's page cache
   * takes for end of file (it would even shrink the cached size, and cat or
   * cp would copy a truncated file without an error). Reads that stop
   * before the bad block still succeed; the kernel retries a failed
   * readahead page by page.
   */
  async read(position: number, length: number): Promise<Buffer> {
    const end = Math.min(this.size, position + length);
    if (position >= end) return Buffer.alloc(0);
    const B = this.geometry.blockSize;
    const first = Math.floor(position / B);
    const last = end === this.size ? this.finalIndex() : Math.floor((end - 1) / B);
    const skip = position - first * B;
    const clear = await this.readBlocks(first, last);
    return clear.subarray(skip, end - first * B);
  }

  /** Writes `data` at `position`, growing the file (with a hole, §9) if needed. */
  async write(position: number, data: Buffer): Promise<void> {
    if (position + data.length > this.geometry.maxSize) throw new FsError("EFBIG");
    if (position <= this.size) return this.writeWithin(position, data);
    const before = this.size;
    await this.extend(position);
    try {
      await this.writeWithin(position, data);
    } catch (err) {
      // A failed call leaves the file as it was: the gap goes again.
      await this.truncate(before).catch((undo: Error) =>
        this.log.error(
          { path: this.displayPath, problem: undo.message },
          "could not undo the growth of a file after a failed write",
        ),
      );
      throw err;
    }
  }

  /** A write that starts at or before the end of the file. */
  private async writeWithin(position: number, data: Buffer): Promise<void> {
    const B = this.geometry.blockSize;
    const oldSize = this.size;
    const end = position + data.length;
    const newSize = Math.max(oldSize, end);
    const newFinal = this.finalIndex(newSize);
    const first = Math.floor(position / B);
    // A write that reaches the final block reseals it (and everything after `first`);
    // one that stays before it touches only full, non-final blocks.
    const throughFinal = end >= newFinal * B;
    const rangeStart = first * B;
    const rangeEnd = throughFinal ? newSize : Math.ceil(end / B) * B;
    // A write of whole blocks (or ending the file) is sealed as it came: no copy.
    const exact = rangeStart === position && rangeEnd === end;
    const plain = exact ? data : Buffer.alloc(rangeEnd - rangeStart);
    if (!exact) {
      // Keep the existing bytes the write does not cover: the head of the first block...
      if (rangeStart < position) (await this.readBlocks(first, first)).copy(plain, 0);
      // ...and the rest of the block the write ends in.
      const keepTo = Math.min(oldSize, rangeEnd);
      const endBlock = Math.floor(end / B);
      if (end < keepTo && !(endBlock === first && rangeStart < position)) {
        (await this.readBlocks(endBlock, endBlock)).copy(plain, endBlock * B - rangeStart);
      }
      data.copy(plain, position - rangeStart);
    }
    // A write that grows the lower file can fail part-way (ENOSPC, EDQUOT): keep
    // the old final block to put the file back as it was.
    const oldFinal = this.finalIndex(oldSize);
    const undo =
      end > oldSize && first <= oldFinal
        ? Buffer.from(await this.readBlocks(oldFinal, oldFinal))
        : undefined;
    try {
      await this.writePlain(first, plain, throughFinal);
    } catch (err) {
      if (undo) await this.restoreEnd(oldSize, undo);
      throw err;
    }
    this.size = newSize;
  }

  /** Cuts the lower file back to `size` and reseals its final block: no torn tail after a failed write. */
  private async restoreEnd(size: number, finalBlock: Buffer): Promise<void> {
    const index = this.finalIndex(size);
    try {
      await this.io.ftruncate(this.fd, this.geometry.blockOffset(index));
      this.size = size;
      await this.writePlain(index, finalBlock, true);
    } catch (err) {
      this.log.error(
        { path: this.displayPath, problem: (err as Error).message },
        "could not restore the end of the file after a failed write",
      );
    }
  }

  private async writePlain(first: number, plain: Buffer, endsFile: boolean): Promise<void> {
    // A closed file's key is zeroed: sealing with it would write readable data.
    this.assertOpen();
    const at = this.geometry.blockOffset(first);
    const { blockSize } = this.geometry;
    const count = Math.floor(plain.length / blockSize) + (endsFile ? 1 : 0);
    if (this.nativeBlocks && plain.length + count * BLOCK_OVERHEAD >= NATIVE_BLOCKS_MIN) {
      const nonces = randomPool.bytes(count * GCM_NONCE_SIZE);
      const result = await cryptoAddon().sealWrite(
        this.fd,
        this.fileKey,
        this.fileId,
        first,
        plain,
        endsFile,
        nonces,
        blockSize,
        at,
      );
      if (result < 0) throw makeError(-result);
    } else {
      await this.writeAll(sealBlocks(this, first, plain, endsFile), at);
    }
    if (endsFile) {
      const full = Math.floor(plain.length / blockSize);
      this.tail = {
        index: first + full,
        data: Buffer.from(plain.subarray(full * this.geometry.blockSize)),
      };
    }
  }

  private async writeAll(data: Buffer, at: number): Promise<void> {
    await writeFully(this.io, this.fd, data, at);
  }

  /**
   * Grows the file to `target` bytes of zeros. The full blocks between the
   * old final block and the new one are holes (§9): only the new final
   * block is written, at its place, and the old one is resealed as a full
   * block. The far write goes first, so a failure (ENOSPC, EFBIG from the
   * lower filesystem) is undone by cutting the lower file back, and the file
   * is as it was.
   */
  private async extend(target: number): Promise<void> {
    if (target > this.geometry.maxSize) throw new FsError("EFBIG");
    const B = this.geometry.blockSize;
    const oldSize = this.size;
    const oldFinal = this.finalIndex(oldSize);
    const newFinal = this.finalIndex(target);
    // No whole block in between: an ordinary write of fewer than 2 blocks of zeros.
    if (newFinal <= oldFinal + 1) return this.writeWithin(oldSize, Buffer.alloc(target - oldSize));
    const tail = Buffer.from(await this.readBlocks(oldFinal, oldFinal));
    await this.ensureHoles();
    const oldLowerSize = this.geometry.lowerSize(oldSize);
    try {
      await this.writePlain(newFinal, Buffer.alloc(target - newFinal * B), true);
    } catch (err) {
      await this.cutBack(oldLowerSize);
      throw err;
    }
    try {
      if (tail.length === 0) {
        // The old final block was empty: its 28 bytes become part of a hole.
        const at = this.geometry.blockOffset(oldFinal);
        await this.punch(at, at + BLOCK_OVERHEAD);
      } else {
        const full = Buffer.alloc(B);
        tail.copy(full);
        await this.writePlain(oldFinal, full, false);
      }
    } catch (err) {
      await this.restoreEnd(oldSize, tail);
      throw err;
    }
    this.size = target;
  }

  /** Puts the lower file back to `lowerSize` after a failed extension; logs if even that fails. */
  private async cutBack(lowerSize: number): Promise<void> {
    try {
      await this.io.ftruncate(this.fd, lowerSize);
    } catch (err) {
      this.log.error(
        { path: this.displayPath, problem: (err as Error).message },
        "could not restore the length of the file after a failed write",
      );
    }
  }

  /**
   * Sets the header's HOLES flag before the file's first hole (§9): one
   * write of the whole header with every slot resealed, made durable
   * before any hole can depend on it.
   */
  private async ensureHoles(): Promise<void> {
    if (this.header.holes) return;
    this.assertOpen();
    const patch = planHolesFlag(this.keyring, this.header, this.headerBytes);
    await this.writeAll(patch.bytes, patch.offset);
    await this.io.fsync(this.fd, true);
    this.headerBytes = patch.bytes;
    this.header = { ...this.header, holes: true };
  }

  /**
   * fallocate(2). Mode 0 grows the file (holes) and reserves lower space;
   * KEEP_SIZE reserves lower space only (the lower length, and so the
   * size, stays); PUNCH_HOLE|KEEP_SIZE and ZERO_RANGE zero a range, as holes
   * where whole blocks are covered. Other modes have no encrypted form.
   */
  async allocate(mode: number, offset: number, length: number): Promise<void> {
    const end = offset + length;
    if (end > this.geometry.maxSize) throw new FsError("EFBIG");
    const keepSize = (mode & FALLOC_FL_KEEP_SIZE) !== 0;
    const kind = mode & ~FALLOC_FL_KEEP_SIZE;
    if (kind === 0) {
      if (!keepSize && end > this.size) await this.extend(end);
      await this.reserve(offset, end);
    } else if (kind === FALLOC_FL_PUNCH_HOLE && keepSize) {
      await this.zeroRange(offset, Math.min(end, this.size));
    } else if (kind === FALLOC_FL_ZERO_RANGE) {
      const zeroTo = Math.min(end, this.size);
      if (!keepSize && end > this.size) await this.extend(end);
      await this.zeroRange(offset, zeroTo);
    } else {
      throw new FsError("EOPNOTSUPP");
    }
  }

  /** Lower space for the blocks of [offset, end), without changing the lower length. */
  private async reserve(offset: number, end: number): Promise<void> {
    const B = this.geometry.blockSize;
    const from = this.geometry.blockOffset(Math.floor(offset / B));
    const to = this.geometry.blockOffset(Math.ceil(end / B)) + BLOCK_OVERHEAD;
    this.assertOpen();
    await this.io.fallocate(this.fd, FALLOC_FL_KEEP_SIZE, from, to - from);
  }

  /** Zeroes [offset, end) of the cleartext: whole full blocks become holes, the edges are written. */
  private async zeroRange(offset: number, end: number): Promise<void> {
    if (offset >= end) return;
    const B = this.geometry.blockSize;
    const first = Math.ceil(offset / B);
    const last = Math.min(Math.floor(end / B), this.finalIndex());
    if (first >= last) return this.write(offset, Buffer.alloc(end - offset));
    if (offset < first * B) await this.write(offset, Buffer.alloc(first * B - offset));
    if (last * B < end) await this.write(last * B, Buffer.alloc(end - last * B));
    await this.ensureHoles();
    await this.punch(this.geometry.blockOffset(first), this.geometry.blockOffset(last));
  }

  /** Makes lower bytes [from, to) zero: a punched hole where the lower filesystem can. */
  private async punch(from: number, to: number): Promise<void> {
    this.assertOpen();
    try {
      await this.io.fallocate(this.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, from, to - from);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EOPNOTSUPP") throw err;
    }
    for (let at = from; at < to; at += ZERO_CHUNK) {
      await this.writeAll(Buffer.alloc(Math.min(ZERO_CHUNK, to - at)), at);
    }
  }

  /**
   * SEEK_DATA / SEEK_HOLE (lseek(2)): where the next data or hole is, at or
   * after `offset`. The lower's own SEEK_DATA skips its holes; a block the
   * lower has data in is read to see whether it is all zeros (a hole that was
   * copied as zeros, or one sharing a lower page with data). A file without
   * the HOLES flag is all data.
   */
  async seek(offset: number, what: "data" | "hole"): Promise<number> {
    if (offset < 0 || offset >= this.size) throw new FsError("ENXIO");
    if (!this.holes) return what === "data" ? offset : this.size;
    const B = this.geometry.blockSize;
    const last = this.finalIndex();
    for (let index = Math.floor(offset / B); index < last;) {
      const start = this.geometry.blockOffset(index);
      const end = this.geometry.blockOffset(index + 1);
      const data = await this.lowerSeek(start, "data");
      const hole = data >= end || (await this.isZeroBlock(start));
      if (hole === (what === "hole")) return Math.max(offset, index * B);
      // Skip what the lower knows is a hole, or what it says is data, in one step.
      const next = hole ? data : await this.lowerSeek(data, "hole");
      index = Math.max(index + 1, this.blockAt(next));
    }
    // The final block is always data, and the end of the file is a hole.
    if (what === "hole") return this.size;
    if (last * B >= this.size) throw new FsError("ENXIO");
    return Math.max(offset, last * B);
  }

  private blockAt(lowerOffset: number): number {
    return Math.floor((lowerOffset - HEADER_SIZE) / this.geometry.sealedBlockSize);
  }

  private async isZeroBlock(start: number): Promise<boolean> {
    const size = this.geometry.sealedBlockSize;
    const sealed = sealedBuffers.take(size);
    try {
      this.assertOpen();
      const got = await this.io.pread(this.fd, sealed, 0, size, start);
      for (let i = 0; i < got; i++) if (sealed[i] !== 0) return false;
      return got === size;
    } finally {
      sealedBuffers.give(sealed);
    }
  }

  /** The lower's own next data or hole; past the last data is the lower end (ENXIO). */
  private async lowerSeek(at: number, what: "data" | "hole"): Promise<number> {
    this.assertOpen();
    try {
      return await this.io.lseek(this.fd, at, what === "data" ? SEEK_DATA : SEEK_HOLE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENXIO")
        return this.geometry.lowerSize(this.size);
      throw err;
    }
  }

  async truncate(target: number): Promise<void> {
    if (target === this.size) return;
    if (target > this.geometry.maxSize) throw new FsError("EFBIG");
    if (target > this.size) return this.extend(target);
    const newFinal = this.finalIndex(target);
    const keep = target - newFinal * this.geometry.blockSize;
    const block =
      keep > 0
        ? Buffer.from((await this.readBlocks(newFinal, newFinal)).subarray(0, keep))
        : Buffer.alloc(0);
    // Cut first, then seal the new final block: a crash between leaves a detectably truncated file.
    this.assertOpen();
    await this.io.ftruncate(this.fd, this.geometry.blockOffset(newFinal));
    this.tail = undefined;
    this.size = target;
    await this.writePlain(newFinal, block, true);
  }

  async sync(dataOnly: boolean): Promise<void> {
    this.assertOpen();
    await this.io.fsync(this.fd, dataOnly);
  }

  /** The lower file's own stat, through its descriptor (valid after unlink too). */
  stat(): Promise<LowerStat> {
    this.assertOpen();
    return this.io.fstat(this.fd);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fileKey.fill(0);
    this.tail = undefined;
    await this.io.close(this.fd);
  }
}

/**
 * Reusable buffers for sealed blocks on their way to decryption. A fresh
 * 1 MiB buffer costs 256 page faults on first touch, more than reading into it.
 */
class BufferPool {
  private readonly free: Buffer[] = [];
  constructor(private readonly keep: number) {}
  take(size: number): Buffer {
    const index = this.free.findIndex((b) => b.length >= size);
    return index >= 0 ? this.free.splice(index, 1)[0]! : Buffer.allocUnsafeSlow(size);
  }
  give(buffer: Buffer): void {
    if (this.free.length < this.keep) this.free.push(buffer);
  }
}

const sealedBuffers = new BufferPool(8);

/**
 * Opens a lower file without following a symlink or blocking on a FIFO
 * (LowerOps.openFile), and without updating its access time: reading a
 * header is our business, not the user's (O_NOATIME needs ownership or
 * root; without it we fall back to a plain open). A reader gets a
 * read-write descriptor where it may, so a later writer needs no reopen.
 */
export async function openLower(
  io: LowerOps,
  dir: Fd,
  entry: string,
  writable: boolean,
): Promise<OpenedLower> {
  const modes = writable ? [constants.O_RDWR] : [constants.O_RDWR, constants.O_RDONLY];
  for (const [i, mode] of modes.entries()) {
    try {
      return await openWith(io, dir, entry, mode);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EACCES" || i === modes.length - 1) throw err;
    }
  }
  throw new Error("unreachable");
}

async function openWith(io: LowerOps, dir: Fd, entry: string, mode: number): Promise<OpenedLower> {
  const writable = mode !== constants.O_RDONLY;
  try {
    return { ...(await io.openFile(dir, entry, mode | constants.O_NOATIME)), writable };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") throw err;
    return { ...(await io.openFile(dir, entry, mode)), writable };
  }
}
