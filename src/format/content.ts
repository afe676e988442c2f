import { GCM_NONCE_SIZE, GCM_OVERHEAD, gcmOpen } from "../crypto/aead.js";
import { cryptoAddon } from "../crypto/native.js";
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
 * Every file ends with exactly one final block holding `size mod blockSize`
 * bytes, empty when the size is a multiple of the block size (an empty file
 * is header + one sealed empty block). Full blocks are never final, so an
 * append seals only new blocks, and truncation or extension at a block
 * boundary fails authentication or leaves an impossible length.
 */
export const BLOCK_OVERHEAD = GCM_OVERHEAD;
const AAD_SIZE = 16 + 8 + 1;
/** Every lower offset stays exact as a double (§9, "Maximum size"). */
const MAX_LOWER_SIZE = Number.MAX_SAFE_INTEGER;

export class ContentGeometry {
  readonly sealedBlockSize: number;
  /** MAX_FILE_SIZE (§9): the largest cleartext size whose lower size is at most 2^53 - 1. */
  readonly maxSize: number;
  /** The one lower length of an object (§13): a header and one full sealed block's room. */
  readonly objectLowerSize: number;

  constructor(readonly blockSize: number) {
    this.sealedBlockSize = blockSize + BLOCK_OVERHEAD;
    this.objectLowerSize = HEADER_SIZE + this.sealedBlockSize;
    // lower(n) is increasing in n: start below the bound and step to it.
    let n = Math.floor(
      ((MAX_LOWER_SIZE - HEADER_SIZE - BLOCK_OVERHEAD) / this.sealedBlockSize) * blockSize,
    );
    while (this.lowerSize(n + 1) <= MAX_LOWER_SIZE) n++;
    while (this.lowerSize(n) > MAX_LOWER_SIZE) n--;
    this.maxSize = n;
  }

  /** Lower offset of block `index`. */
  blockOffset(index: number): number {
    return HEADER_SIZE + index * this.sealedBlockSize;
  }

  /** Index of the final block of a file of `size` bytes (it holds size mod blockSize bytes). */
  finalIndex(size: number): number {
    return Math.floor(size / this.blockSize);
  }

  /** Number of blocks a file of `size` cleartext bytes has: the full ones plus the final one. */
  blockCount(size: number): number {
    return this.finalIndex(size) + 1;
  }

  lowerSize(size: number): number {
    return HEADER_SIZE + size + this.blockCount(size) * BLOCK_OVERHEAD;
  }

  /** Cleartext bytes in `sealedLength` bytes of consecutive sealed blocks (the last may be shorter). */
  openedLength(sealedLength: number): number {
    const blocks = Math.ceil(sealedLength / this.sealedBlockSize);
    return Math.max(0, sealedLength - blocks * BLOCK_OVERHEAD);
  }

  /** Cleartext size for a lower file size; refuses lengths no valid file has. */
  cleartextSize(lowerSize: number): number {
    if (lowerSize < HEADER_SIZE) {
      throw new FormatError("SHORT_HEADER", "file is shorter than its header");
    }
    const body = lowerSize - HEADER_SIZE;
    const full = Math.floor(body / this.sealedBlockSize);
    const rest = body - full * this.sealedBlockSize;
    if (rest < BLOCK_OVERHEAD) {
      // A length that ends on a block boundary, or inside a nonce/tag, lost its final block.
      throw new FormatError(
        rest === 0 ? "TRUNCATED" : "BAD_LENGTH",
        rest === 0
          ? "file truncated: no final block"
          : `lower file length ${lowerSize} is not a valid sealed length`,
      );
    }
    return full * this.blockSize + rest - BLOCK_OVERHEAD;
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
  /** The header's HOLES flag (§9): an all-zero full block stands for zeros. */
  readonly holes?: boolean;
}

function isAllZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * Seals consecutive cleartext blocks starting at `firstIndex` into one
 * buffer, ready for a single positional write. Full blocks are sealed as
 * non-final. When `endsFile`, what remains after the full blocks (possibly
 * nothing) is sealed as the final block; otherwise the cleartext must be a
 * whole number of blocks. `pinnedNonces` pins nonces for known-answer tests.
 */
export function sealBlocks(
  file: FileCipher,
  firstIndex: number,
  cleartext: Uint8Array,
  endsFile: boolean,
  pinnedNonces?: readonly Buffer[],
): Buffer {
  const { blockSize } = file.geometry;
  const full = Math.floor(cleartext.length / blockSize);
  if (!endsFile && full * blockSize !== cleartext.length) {
    throw new RangeError("only the final block of a file may be partial");
  }
  const count = full + (endsFile ? 1 : 0);
  const nonces = Buffer.allocUnsafe(count * GCM_NONCE_SIZE);
  for (let i = 0; i < count; i++) {
    const pinned = pinnedNonces?.[i];
    if (pinned) pinned.copy(nonces, i * GCM_NONCE_SIZE);
    else randomPool.fill(nonces, i * GCM_NONCE_SIZE, GCM_NONCE_SIZE);
  }
  // OpenSSL through the addon: one context for all blocks (node:crypto makes one per block).
  return cryptoAddon().sealBlocks(
    file.fileKey,
    file.fileId,
    firstIndex,
    cleartext,
    endsFile,
    nonces,
    blockSize,
  );
}

/**
 * Opens consecutive sealed blocks starting at `firstIndex` of a file whose
 * last block has index `finalIndex`. Stops at the first block that fails and
 * reports which one and why; blocks before it are returned so callers can
 * serve what is intact. In a file with the HOLES flag, a full block whose
 * sealed bytes are all zero is a hole: zeros (§9). The final block never is.
 */
export function openBlocks(
  file: FileCipher,
  firstIndex: number,
  sealed: Uint8Array,
  finalIndex: number,
): { cleartext: Buffer; failure?: { index: number; error: FormatError } } {
  if (sealed.length > 0) {
    const out = Buffer.allocUnsafe(file.geometry.openedLength(sealed.length));
    if (openNatively(file, firstIndex, sealed, finalIndex, out)) return { cleartext: out };
    // A block failed: the loop below finds which and why, and keeps what came before it.
  }
  const parts: Buffer[] = [];
  const failure = eachBlock(file, firstIndex, sealed, finalIndex, (plain) => parts.push(plain));
  const cleartext = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  return failure ? { cleartext, failure } : { cleartext };
}

/**
 * Verifies consecutive sealed blocks as openBlocks does, keeping no
 * cleartext (fsck): the first block that fails, or undefined.
 */
export function verifyBlocks(
  file: FileCipher,
  firstIndex: number,
  sealed: Uint8Array,
  finalIndex: number,
): { index: number; error: FormatError } | undefined {
  if (sealed.length > 0) {
    const size = file.geometry.openedLength(sealed.length);
    if (verifyScratch.length < size) verifyScratch = Buffer.allocUnsafe(size);
    const out = verifyScratch.subarray(0, size);
    const ok = openNatively(file, firstIndex, sealed, finalIndex, out);
    out.fill(0); // cleartext of a check: nobody reads it, nothing keeps it
    if (ok) return undefined;
  }
  // A block failed (or nothing to open): the loop finds which and why.
  return eachBlock(file, firstIndex, sealed, finalIndex, () => undefined);
}

/** All of `sealed` opened into `out` by OpenSSL in one call; false when a block fails. */
function openNatively(
  file: FileCipher,
  firstIndex: number,
  sealed: Uint8Array,
  finalIndex: number,
  out: Buffer,
): boolean {
  const opened = cryptoAddon().openBlocks(
    file.fileKey,
    file.fileId,
    firstIndex,
    finalIndex,
    file.holes ?? false,
    out,
    file.geometry.blockSize,
    sealed,
  );
  return opened === out.length;
}

/** verifyBlocks' output, reused: a check keeps no cleartext, so one buffer serves every call. */
let verifyScratch = Buffer.alloc(0);

function eachBlock(
  file: FileCipher,
  firstIndex: number,
  sealed: Uint8Array,
  finalIndex: number,
  onBlock: (plain: Buffer) => void,
): { index: number; error: FormatError } | undefined {
  const { sealedBlockSize } = file.geometry;
  for (let pos = 0, index = firstIndex; pos < sealed.length; pos += sealedBlockSize, index++) {
    const piece = sealed.subarray(pos, pos + sealedBlockSize);
    const final = index === finalIndex;
    if (file.holes && !final && piece.length === sealedBlockSize && isAllZero(piece)) {
      onBlock(Buffer.alloc(file.geometry.blockSize));
      continue;
    }
    const plain = gcmOpen(file.fileKey, blockAad(file.fileId, index, final), piece);
    if (!plain) return { index, error: diagnose(file, index, final, piece) };
    onBlock(plain);
  }
  return undefined;
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
