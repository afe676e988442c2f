import { GCM_NONCE_SIZE, GCM_TAG_SIZE, KEY_SIZE, gcmOpen, gcmSealInto } from "../crypto/aead.js";
import { constantTimeEqual, u32be } from "../crypto/bytes.js";
import type { Keyring } from "../crypto/keys.js";
import { randomPool } from "../crypto/random.js";
import { FormatError } from "./errors.js";
import { CURRENT_FORMAT_VERSION, OBJECTS_VERSION } from "./versions.js";

/**
 * File header (docs/format.md, "File header"): 152 bytes at offset 0 of every
 * lower file.
 *
 *   0  magic "CRMF"   4  version (1)   5  flags (v3: bit 0 HOLES, §9)   6  log2(block size)
 *   7  kind (0 regular file; v3: 1..5 an object, §13)
 *   8  file ID (16)
 *   24 key slot A (64)   88 key slot B (64)
 *
 * A key slot is epoch (u32 BE) | nonce (12) | AES-256-GCM(file key) (32) | tag (16),
 * or 64 zero bytes when empty. Two slots let rekey write the new wrap beside
 * the old one, so a torn write never destroys the only copy of a file key.
 */
export const HEADER_MAGIC = Buffer.from("CRMF", "ascii");
export const HEADER_VERSION = 1;
export const FILE_ID_SIZE = 16;
export const FILE_KEY_SIZE = KEY_SIZE;
const PREFIX_SIZE = 8 + FILE_ID_SIZE;
export const SLOT_SIZE = 4 + GCM_NONCE_SIZE + FILE_KEY_SIZE + GCM_TAG_SIZE;
export const HEADER_SIZE = PREFIX_SIZE + 2 * SLOT_SIZE;
export const SLOT_OFFSETS = [PREFIX_SIZE, PREFIX_SIZE + SLOT_SIZE] as const;

/** Header byte 5, bit 0 (§6, §9): the file may contain holes. */
export const HEADER_FLAG_HOLES = 0x01;
/** Header byte 7 (§6, §13): what the lower regular file stands for. */
export enum FileKind {
  Regular = 0,
  Symlink = 1,
  Fifo = 2,
  Socket = 3,
  CharDevice = 4,
  BlockDevice = 5,
}
const MAX_KIND = FileKind.BlockDevice;

export interface FileHeader {
  readonly fileId: Buffer;
  readonly fileKey: Buffer;
  readonly blockSize: number;
  readonly kind: FileKind;
  /** The HOLES flag: an all-zero full block reads as zeros (§9). */
  readonly holes: boolean;
  /** Epochs of the slots that hold a valid wrap, in slot order (A, B). */
  readonly slotEpochs: readonly (number | undefined)[];
}

export interface NewHeaderInput {
  blockSize: number;
  /** Default: a regular file. */
  kind?: FileKind;
  /** Pinned values for known-answer tests; random otherwise. */
  fileId?: Buffer;
  fileKey?: Buffer;
  nonce?: Buffer;
}

function slotAad(prefix: Uint8Array, epoch: number): Buffer {
  return Buffer.concat([prefix, u32be(epoch)]);
}

function blockShift(blockSize: number): number {
  const shift = Math.log2(blockSize);
  if (!Number.isInteger(shift) || shift < 12 || shift > 20) {
    throw new FormatError(
      "CONFIG_INVALID",
      `block size ${blockSize} is not a power of two in 4 KiB..1 MiB`,
    );
  }
  return shift;
}

function writeSlot(
  header: Buffer,
  slot: 0 | 1,
  epoch: number,
  wrapKey: Uint8Array,
  fileKey: Uint8Array,
  nonce: Buffer,
): void {
  const at = SLOT_OFFSETS[slot];
  header.writeUInt32BE(epoch, at);
  const aad = slotAad(header.subarray(0, PREFIX_SIZE), epoch);
  gcmSealInto(wrapKey, nonce, aad, fileKey, header, at + 4);
}

/** A new header for a new file, wrapped under the keyring's current epoch in slot A. */
export function createHeader(
  keyring: Keyring,
  input: NewHeaderInput,
): { bytes: Buffer; header: FileHeader } {
  const fileId = input.fileId ?? randomPool.bytes(FILE_ID_SIZE);
  const fileKey = input.fileKey ?? randomPool.bytes(FILE_KEY_SIZE);
  const nonce = input.nonce ?? randomPool.bytes(GCM_NONCE_SIZE);
  const bytes = Buffer.alloc(HEADER_SIZE);
  HEADER_MAGIC.copy(bytes, 0);
  bytes[4] = HEADER_VERSION;
  bytes[5] = 0;
  bytes[6] = blockShift(input.blockSize);
  bytes[7] = input.kind ?? FileKind.Regular;
  fileId.copy(bytes, 8);
  const epoch = keyring.current;
  writeSlot(bytes, 0, epoch.epoch, epoch.headerWrap, fileKey, nonce);
  return {
    bytes,
    header: {
      fileId,
      fileKey,
      blockSize: input.blockSize,
      kind: input.kind ?? FileKind.Regular,
      holes: false,
      slotEpochs: [epoch.epoch, undefined],
    },
  };
}

function isZero(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0) return false;
  return true;
}

/** Checks everything outside the key slots; shared by the reader and fsck. */
function parsePrefix(bytes: Uint8Array, expectedBlockSize: number, formatVersion: number): void {
  if (bytes.length < HEADER_SIZE) {
    throw new FormatError(
      "SHORT_HEADER",
      `file header is ${bytes.length} bytes, expected ${HEADER_SIZE}`,
    );
  }
  if (!constantTimeEqual(bytes.subarray(0, 4), HEADER_MAGIC)) {
    throw new FormatError("BAD_MAGIC", "not a cryptmount file (bad magic)");
  }
  if (bytes[4] !== HEADER_VERSION) {
    throw new FormatError("UNKNOWN_VERSION", `unknown file format version ${bytes[4]}`);
  }
  const flags = bytes[5] ?? 0;
  const kind = bytes[7] ?? 0;
  const allowedFlags = formatVersion >= OBJECTS_VERSION ? HEADER_FLAG_HOLES : 0;
  const maxKind = formatVersion >= OBJECTS_VERSION ? MAX_KIND : FileKind.Regular;
  if ((flags & ~allowedFlags) !== 0 || kind > maxKind) {
    throw new FormatError("UNKNOWN_FLAGS", "file header has unknown flags set");
  }
  const blockSize = 2 ** (bytes[6] ?? 0);
  if (blockSize !== expectedBlockSize) {
    throw new FormatError(
      "BLOCK_SIZE_MISMATCH",
      `file block size ${blockSize} differs from the volume's ${expectedBlockSize}`,
    );
  }
}

/**
 * Verifies and unwraps a header. Strict: every non-empty slot must
 * authenticate under a key the keyring holds, and both must agree.
 */
export function openHeader(
  keyring: Keyring,
  bytes: Uint8Array,
  expectedBlockSize: number,
  formatVersion = CURRENT_FORMAT_VERSION,
): FileHeader {
  parsePrefix(bytes, expectedBlockSize, formatVersion);
  const prefix = bytes.subarray(0, PREFIX_SIZE);
  const slotEpochs: (number | undefined)[] = [];
  let fileKey: Buffer | undefined;
  for (const at of SLOT_OFFSETS) {
    const slot = bytes.subarray(at, at + SLOT_SIZE);
    if (isZero(slot)) {
      slotEpochs.push(undefined);
      continue;
    }
    const epoch = Buffer.from(slot).readUInt32BE(0);
    const keys = keyring.epoch(epoch);
    if (!keys) {
      throw new FormatError(
        "UNKNOWN_EPOCH",
        `file key is wrapped under unknown key epoch ${epoch}`,
      );
    }
    const unwrapped = gcmOpen(keys.headerWrap, slotAad(prefix, epoch), slot.subarray(4));
    if (!unwrapped) throw new FormatError("HEADER_AUTH", "file header failed authentication");
    if (fileKey && !constantTimeEqual(fileKey, unwrapped)) {
      throw new FormatError("HEADER_AUTH", "file header slots disagree");
    }
    fileKey = unwrapped;
    slotEpochs.push(epoch);
  }
  if (!fileKey) throw new FormatError("HEADER_AUTH", "file header holds no key slot");
  return {
    fileId: Buffer.from(bytes.subarray(8, 8 + FILE_ID_SIZE)),
    fileKey,
    blockSize: expectedBlockSize,
    kind: (bytes[7] ?? 0) as FileKind,
    holes: ((bytes[5] ?? 0) & HEADER_FLAG_HOLES) !== 0,
    slotEpochs,
  };
}

/**
 * The header with the HOLES flag set (§9, "Setting the flag"): byte 5 is in
 * every slot's AAD, so every non-empty slot is sealed again, with a fresh
 * nonce, under its own epoch. One patch of the whole header, written in one
 * write before the file's first hole. `nonces` pins the nonce of slot A and
 * slot B for known-answer tests; random otherwise.
 */
export function planHolesFlag(
  keyring: Keyring,
  header: FileHeader,
  headerBytes: Uint8Array,
  nonces: readonly (Buffer | undefined)[] = [],
): HeaderPatch {
  const bytes = Buffer.from(headerBytes.subarray(0, HEADER_SIZE));
  bytes[5] = (bytes[5] ?? 0) | HEADER_FLAG_HOLES;
  header.slotEpochs.forEach((epoch, slot) => {
    if (epoch === undefined) return;
    const keys = keyring.epoch(epoch);
    if (!keys) throw new FormatError("UNKNOWN_EPOCH", `key epoch ${epoch} is not in the keyring`);
    writeSlot(
      bytes,
      slot as 0 | 1,
      epoch,
      keys.headerWrap,
      header.fileKey,
      nonces[slot] ?? randomPool.bytes(GCM_NONCE_SIZE),
    );
  });
  return { offset: 0, bytes };
}

/** One in-place write of the header region; rekey applies them in order with fsync between. */
export interface HeaderPatch {
  readonly offset: number;
  readonly bytes: Buffer;
}

/**
 * The writes that move a header to `targetEpoch` without ever leaving it
 * without a valid slot: first the new wrap into the slot not holding the
 * target, then zero every other slot. Empty when nothing is left to do.
 */
export function planRewrap(
  keyring: Keyring,
  header: FileHeader,
  headerBytes: Uint8Array,
): HeaderPatch[] {
  const target = keyring.current;
  const epochs = header.slotEpochs;
  const targetSlot = epochs.findIndex((e) => e === target.epoch);
  const patches: HeaderPatch[] = [];
  let keep = targetSlot;
  if (keep < 0) {
    // Prefer an empty slot; otherwise replace the slot with the older epoch.
    const empty = epochs.findIndex((e) => e === undefined);
    keep = empty >= 0 ? empty : (epochs[0] ?? 0) <= (epochs[1] ?? 0) ? 0 : 1;
    const scratch = Buffer.from(headerBytes.subarray(0, HEADER_SIZE));
    writeSlot(
      scratch,
      keep as 0 | 1,
      target.epoch,
      target.headerWrap,
      header.fileKey,
      randomPool.bytes(GCM_NONCE_SIZE),
    );
    const at = SLOT_OFFSETS[keep as 0 | 1];
    patches.push({ offset: at, bytes: scratch.subarray(at, at + SLOT_SIZE) });
  }
  SLOT_OFFSETS.forEach((at, slot) => {
    if (slot !== keep && epochs[slot] !== undefined) {
      patches.push({ offset: at, bytes: Buffer.alloc(SLOT_SIZE) });
    }
  });
  return patches;
}
