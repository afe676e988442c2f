import { GCM_NONCE_SIZE, GCM_OVERHEAD, gcmOpen, gcmSealInto } from "../crypto/aead.js";
import { randomPool } from "../crypto/random.js";
import { FormatError } from "./errors.js";
import { HEADER_SIZE } from "./header.js";

/**
 * File contents (docs/format.md, "Content blocks"): after the header, the
 * cleartext is cut in blocks of `blockSize` bytes, each sealed as
 * nonce (12) | AES-256-GCM ciphertext | tag (16) under the file key, with
 *
 *   AAD = file ID (16) | block index (u64 BE) | final flag (1 byte, 1 on the last block)
 *
 * Every file, even an empty one, ends with exactly one final block (an empty
 * file is header + one sealed empty block), so truncation or extension at a
 * block boundary fails authentication.
 */
export const BLOCK_OVERHEAD = GCM_OVERHEAD;
const AAD_SIZE = 16 + 8 + 1;

export class ContentGeometry {
  readonly sealedBlockSize: number;

  constructor(readonly blockSize: number) {
    this.sealedBlockSize = blockSize + BLOCK_OVERHEAD;
  }

  /** Lower offset of block `index`. */
  blockOffset(index: number): number {
    return HEADER_SIZE + index * this.sealedBlockSize;
  }

  /** Number of blocks a file of `size` cleartext bytes has (at least one). */
  blockCount(size: number): number {
    return size === 0 ? 1 : Math.ceil(size / this.blockSize);
  }

  lowerSize(size: number): number {
    return HEADER_SIZE + size + this.blockCount(size) * BLOCK_OVERHEAD;
  }

  /** Cleartext size for a lower file size; refuses lengths no valid file has. */
  cleartextSize(lowerSize: number): number {
    const body = lowerSize - HEADER_SIZE;
    if (body < BLOCK_OVERHEAD) {
      throw new FormatError(
        lowerSize < HEADER_SIZE ? "SHORT_HEADER" : "TRUNCATED",
        lowerSize < HEADER_SIZE ? "file is shorter than its header" : "file has no final block",
      );
    }
    const blocks = Math.ceil(body / this.sealedBlockSize);
    const size = body - blocks * BLOCK_OVERHEAD;
    // A non-final block is always full, so the last one holds 1..blockSize bytes (0 only when alone).
    const lastLen = size - (blocks - 1) * this.blockSize;
    if (lastLen < (blocks === 1 ? 0 : 1)) {
      throw new FormatError(
        "BAD_LENGTH",
        `lower file length ${lowerSize} is not a valid sealed length`,
      );
    }
    return size;
  }
}

function blockAad(fileId: Uint8Array, index: number, final: boolean): Buffer {
  const aad = Buffer.allocUnsafe(AAD_SIZE);
  aad.set(fileId, 0);
  aad.writeBigUInt64BE(BigInt(index), 16);
  aad[24] = final ? 1 : 0;
  return aad;
}

export interface FileCipher {
  readonly fileKey: Uint8Array;
  readonly fileId: Uint8Array;
  readonly geometry: ContentGeometry;
}

/**
 * Seals consecutive cleartext blocks starting at `firstIndex` into one
 * buffer, ready for a single positional write. All blocks but the last must
 * be full; the last is final when `lastIsFinal`. `nonces` pins nonces for
 * known-answer tests.
 */
export function sealBlocks(
  file: FileCipher,
  firstIndex: number,
  cleartext: Uint8Array,
  lastIsFinal: boolean,
  nonces?: readonly Buffer[],
): Buffer {
  const { blockSize } = file.geometry;
  const count = Math.max(1, Math.ceil(cleartext.length / blockSize));
  const out = Buffer.allocUnsafe(cleartext.length + count * BLOCK_OVERHEAD);
  const nonce = Buffer.allocUnsafe(GCM_NONCE_SIZE);
  let pos = 0;
  for (let i = 0; i < count; i++) {
    const chunk = cleartext.subarray(i * blockSize, (i + 1) * blockSize);
    const final = lastIsFinal && i === count - 1;
    if (chunk.length < blockSize && !final) {
      throw new RangeError("only the final block of a file may be partial");
    }
    const pinned = nonces?.[i];
    if (pinned) pinned.copy(nonce);
    else randomPool.fill(nonce, 0, GCM_NONCE_SIZE);
    pos += gcmSealInto(
      file.fileKey,
      nonce,
      blockAad(file.fileId, firstIndex + i, final),
      chunk,
      out,
      pos,
    );
  }
  return out;
}

/**
 * Opens consecutive sealed blocks starting at `firstIndex` of a file whose
 * last block has index `finalIndex`. Stops at the first block that fails and
 * reports which one and why; blocks before it are returned so callers can
 * serve what is intact.
 */
export function openBlocks(
  file: FileCipher,
  firstIndex: number,
  sealed: Uint8Array,
  finalIndex: number,
): { cleartext: Buffer; failure?: { index: number; error: FormatError } } {
  const { sealedBlockSize } = file.geometry;
  const parts: Buffer[] = [];
  for (let pos = 0, index = firstIndex; pos < sealed.length; pos += sealedBlockSize, index++) {
    const piece = sealed.subarray(pos, pos + sealedBlockSize);
    const final = index === finalIndex;
    const plain = gcmOpen(file.fileKey, blockAad(file.fileId, index, final), piece);
    if (!plain) {
      return {
        cleartext: Buffer.concat(parts),
        failure: { index, error: diagnose(file, index, final, piece) },
      };
    }
    parts.push(plain);
  }
  return { cleartext: parts.length === 1 ? parts[0]! : Buffer.concat(parts) };
}

/** Names the failure precisely: a final-flag mismatch means truncation or extension. */
function diagnose(file: FileCipher, index: number, final: boolean, piece: Uint8Array): FormatError {
  const flipped = gcmOpen(file.fileKey, blockAad(file.fileId, index, !final), piece);
  if (flipped) {
    flipped.fill(0);
    return final
      ? new FormatError("TRUNCATED", `file truncated: block ${index} is last but not marked final`)
      : new FormatError("EXTENDED", `block ${index} is marked final but more blocks follow`);
  }
  return new FormatError("BLOCK_AUTH", `block ${index} failed authentication`);
}
