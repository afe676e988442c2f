import { createHash, createHmac } from "node:crypto";
import { constantTimeEqual } from "../crypto/bytes.js";
import { FormatError } from "./errors.js";

/**
 * fsck's check record (docs/format.md §3.4): the lower files whose content
 * the last checks verified, each as a digest of its lower stat (inode, size,
 * mtime, ctime), sorted, the whole authenticated with HMAC-SHA256 under
 * K_fsckRecord. A later fsck skips the content of a file whose stat digest
 * is listed. The record is advisory: one that does not verify is ignored
 * (fsck checks everything), so it can make fsck do more work, never less.
 */
export const CHECK_RECORD_NAME = "cryptmount.fsck";
export const CHECK_RECORD_MAGIC = Buffer.from("CMFK", "latin1");
export const CHECK_RECORD_VERSION = 1;
export const CHECK_RECORD_DIGEST_SIZE = 16;
const HEAD_SIZE = 28;
const MAC_SIZE = 32;
/** Bytes of a record listing no file. */
export const CHECK_RECORD_EMPTY_SIZE = HEAD_SIZE + MAC_SIZE;
/** The most files one record lists (a record of 256 MiB); a volume with more is checked in full. */
export const CHECK_RECORD_MAX_FILES = 1 << 24;
export const CHECK_RECORD_MAX_SIZE =
  CHECK_RECORD_EMPTY_SIZE + CHECK_RECORD_MAX_FILES * CHECK_RECORD_DIGEST_SIZE;

/** The stat values a digest covers: the lower file's, from fstat (nanosecond times). */
export interface RecordedStat {
  readonly ino: bigint;
  readonly size: number;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

/** SHA-256(u64 ino || u64 size || i64 mtime_ns || i64 ctime_ns), first 16 bytes (§3.4). */
export function statDigest(stat: RecordedStat): Buffer {
  const input = Buffer.alloc(32);
  input.writeBigUInt64BE(BigInt.asUintN(64, stat.ino), 0);
  input.writeBigUInt64BE(BigInt(stat.size), 8);
  input.writeBigInt64BE(BigInt.asIntN(64, stat.mtimeNs), 16);
  input.writeBigInt64BE(BigInt.asIntN(64, stat.ctimeNs), 24);
  return createHash("sha256").update(input).digest().subarray(0, CHECK_RECORD_DIGEST_SIZE);
}

export interface CheckRecordContent {
  /** When the record was written, ms since the Unix epoch. */
  readonly writtenAt: number;
  /** When the last full check it descends from began, ms since the Unix epoch. */
  readonly fullAt: number;
}

/** A decoded record: its times and a sorted set of stat digests. */
export class CheckRecord implements CheckRecordContent {
  private constructor(
    readonly writtenAt: number,
    readonly fullAt: number,
    /** n digests of 16 bytes, strictly ascending. */
    private readonly digests: Buffer,
  ) {}

  get size(): number {
    return this.digests.length / CHECK_RECORD_DIGEST_SIZE;
  }

  /** Whether a stat digest is listed (binary search, no allocation). */
  has(digest: Buffer): boolean {
    let low = 0;
    let high = this.size - 1;
    while (low <= high) {
      const mid = (low + high) >>> 1;
      const at = mid * CHECK_RECORD_DIGEST_SIZE;
      const order = this.digests.compare(
        digest,
        0,
        CHECK_RECORD_DIGEST_SIZE,
        at,
        at + CHECK_RECORD_DIGEST_SIZE,
      );
      if (order === 0) return true;
      if (order < 0) low = mid + 1;
      else high = mid - 1;
    }
    return false;
  }

  /** Builds one from digests in any order (duplicates, as of hard links, are dropped). */
  static of(content: CheckRecordContent, digests: Iterable<Buffer>): CheckRecord {
    const builder = new CheckRecordBuilder();
    for (const digest of digests) builder.add(digest);
    return builder.build(content);
  }

  /** Used by CheckRecordBuilder: `digests` sorted and unique. */
  static fromSorted(content: CheckRecordContent, digests: Buffer): CheckRecord {
    return new CheckRecord(content.writtenAt, content.fullAt, digests);
  }

  /** The stored form (§3.4). */
  encode(key: Buffer): Buffer {
    if (this.size > CHECK_RECORD_MAX_FILES)
      throw new RangeError(`a check record lists at most ${CHECK_RECORD_MAX_FILES} files`);
    const head = Buffer.alloc(HEAD_SIZE);
    CHECK_RECORD_MAGIC.copy(head, 0);
    head[4] = CHECK_RECORD_VERSION;
    head.writeBigUInt64BE(BigInt(this.writtenAt), 8);
    head.writeBigUInt64BE(BigInt(this.fullAt), 16);
    head.writeUInt32BE(this.size, 24);
    const mac = createHmac("sha256", key).update(head).update(this.digests).digest();
    return Buffer.concat([head, this.digests, mac]);
  }

  /**
   * Opens a stored record; a FormatError CHECK_RECORD_INVALID for anything
   * that is not one this volume's key wrote (the MAC is checked, in
   * constant time, before anything else is believed).
   */
  static decode(key: Buffer, bytes: Buffer): CheckRecord {
    const invalid = (why: string) => new FormatError("CHECK_RECORD_INVALID", `check record ${why}`);
    if (
      bytes.length < CHECK_RECORD_EMPTY_SIZE ||
      bytes.length > CHECK_RECORD_MAX_SIZE ||
      (bytes.length - CHECK_RECORD_EMPTY_SIZE) % CHECK_RECORD_DIGEST_SIZE !== 0
    )
      throw invalid(`has a length (${bytes.length} bytes) no record has`);
    if (!bytes.subarray(0, 4).equals(CHECK_RECORD_MAGIC)) throw invalid("does not start with CMFK");
    if (bytes[4] !== CHECK_RECORD_VERSION) throw invalid(`version ${bytes[4]} is unknown`);
    const body = bytes.subarray(0, bytes.length - MAC_SIZE);
    const mac = createHmac("sha256", key).update(body).digest();
    if (!constantTimeEqual(mac, bytes.subarray(body.length)))
      throw invalid("does not authenticate (damaged, forged, or another volume's)");
    if (bytes[5] !== 0 || bytes[6] !== 0 || bytes[7] !== 0) throw invalid("has reserved bytes set");
    const count = bytes.readUInt32BE(24);
    const digests = body.subarray(HEAD_SIZE);
    if (count * CHECK_RECORD_DIGEST_SIZE !== digests.length)
      throw invalid(`says ${count} files but holds ${digests.length / CHECK_RECORD_DIGEST_SIZE}`);
    for (let at = CHECK_RECORD_DIGEST_SIZE; at < digests.length; at += CHECK_RECORD_DIGEST_SIZE) {
      const order = digests.compare(
        digests,
        at,
        at + CHECK_RECORD_DIGEST_SIZE,
        at - CHECK_RECORD_DIGEST_SIZE,
        at,
      );
      if (order >= 0) throw invalid("digests are not in strictly ascending order");
    }
    const time = (at: number) => {
      const ms = bytes.readBigUInt64BE(at);
      if (ms > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid("has a time out of range");
      return Number(ms);
    };
    return new CheckRecord(time(8), time(16), Buffer.from(digests));
  }
}

/**
 * Collects stat digests in one growing buffer (a million files take 16 MB,
 * not a million Buffer objects) and sorts them once at the end.
 */
export class CheckRecordBuilder {
  private bytes = Buffer.allocUnsafe(CHECK_RECORD_DIGEST_SIZE * 1024);
  private count = 0;

  get size(): number {
    return this.count;
  }

  add(digest: Buffer): void {
    const at = this.count * CHECK_RECORD_DIGEST_SIZE;
    if (at + CHECK_RECORD_DIGEST_SIZE > this.bytes.length) {
      const grown = Buffer.allocUnsafe(this.bytes.length * 2);
      this.bytes.copy(grown, 0, 0, at);
      this.bytes = grown;
    }
    digest.copy(this.bytes, at, 0, CHECK_RECORD_DIGEST_SIZE);
    this.count++;
  }

  build(content: CheckRecordContent): CheckRecord {
    const d = CHECK_RECORD_DIGEST_SIZE;
    const order = new Uint32Array(this.count).map((_, i) => i);
    order.sort((a, b) => this.bytes.compare(this.bytes, b * d, b * d + d, a * d, a * d + d));
    const out = Buffer.alloc(this.count * d);
    let written = 0;
    for (const i of order) {
      const at = i * d;
      const last = (written - 1) * d;
      if (written > 0 && this.bytes.compare(out, last, last + d, at, at + d) === 0) continue;
      this.bytes.copy(out, written * d, at, at + d);
      written++;
    }
    return CheckRecord.fromSorted(content, out.subarray(0, written * d));
  }
}
