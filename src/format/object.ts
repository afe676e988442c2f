import { GCM_NONCE_SIZE, GCM_OVERHEAD, gcmOpen, gcmSealInto } from "../crypto/aead.js";
import type { Keyring } from "../crypto/keys.js";
import { randomPool } from "../crypto/random.js";
import { FormatError } from "./errors.js";
import { FileKind, HEADER_SIZE, createHeader, openHeader, type FileHeader } from "./header.js";

/**
 * Objects (docs/format.md §13, version 3): a symlink, FIFO, socket or device
 * stored as a lower regular file of exactly 152 + S bytes, so that the lower
 * holds nothing a sync client or object store drops, and nothing a storage
 * adversary could use to hang or redirect a server.
 *
 *   header (kind 1..5) | seal(file key, N, A_obj, payload of 4096 bytes) | zero padding
 *   A_obj = file ID (16) | u64(0) | 0x02
 *
 * The padding is never read; writers leave it as a hole (the caller
 * truncates the lower file to `ContentGeometry.objectLowerSize`).
 */
export const OBJECT_PAYLOAD_SIZE = 4096;
export const OBJECT_RECORD_SIZE = OBJECT_PAYLOAD_SIZE + GCM_OVERHEAD;
/** Bytes of an object a reader reads and a writer writes: header and record. */
export const OBJECT_STORED_SIZE = HEADER_SIZE + OBJECT_RECORD_SIZE;
/** PATH_MAX - 1: the longest target Linux passes to symlink(2). */
export const MAX_OBJECT_SYMLINK_TARGET = OBJECT_PAYLOAD_SIZE - 1;
const RECORD_FLAG = 0x02;
/** Linux device numbers: 12 bits of major, 20 of minor (§13). */
const MAX_MAJOR = 0xfff;
const MAX_MINOR = 0xfffff;

export type ObjectValue =
  | { readonly kind: FileKind.Symlink; readonly target: string }
  | { readonly kind: FileKind.Fifo | FileKind.Socket }
  | {
      readonly kind: FileKind.CharDevice | FileKind.BlockDevice;
      readonly major: number;
      readonly minor: number;
    };

function recordAad(fileId: Uint8Array): Buffer {
  const aad = Buffer.alloc(16 + 8 + 1);
  aad.set(fileId, 0);
  aad[24] = RECORD_FLAG;
  return aad;
}

function encodePayload(value: ObjectValue): Buffer {
  const payload = Buffer.alloc(OBJECT_PAYLOAD_SIZE);
  switch (value.kind) {
    case FileKind.Symlink: {
      const target = Buffer.from(value.target, "utf8");
      if (target.length === 0 || target.length > MAX_OBJECT_SYMLINK_TARGET) {
        throw new FormatError(
          "NAME_TOO_LONG",
          `symlink target must be 1..${MAX_OBJECT_SYMLINK_TARGET} bytes`,
        );
      }
      if (target.includes(0)) throw new FormatError("NAME_INVALID", "symlink target holds NUL");
      target.copy(payload);
      break;
    }
    case FileKind.CharDevice:
    case FileKind.BlockDevice:
      payload.writeUInt32BE(value.major, 0);
      payload.writeUInt32BE(value.minor, 4);
      break;
    case FileKind.Fifo:
    case FileKind.Socket:
      break;
  }
  return payload;
}

function isZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

function invalid(message: string): never {
  throw new FormatError("OBJECT_INVALID", message);
}

function decodePayload(kind: FileKind, payload: Buffer): ObjectValue {
  switch (kind) {
    case FileKind.Symlink: {
      const end = payload.indexOf(0);
      const length = end < 0 ? payload.length : end;
      if (length === 0) invalid("symlink object has an empty target");
      if (end < 0 || !isZero(payload.subarray(end))) invalid("symlink object has stray bytes");
      // ignoreBOM: a leading U+FEFF is part of the target, not a marker to drop.
      const target = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
      try {
        return { kind, target: target.decode(payload.subarray(0, length)) };
      } catch {
        return invalid("symlink object target is not UTF-8");
      }
    }
    case FileKind.Fifo:
    case FileKind.Socket:
      if (!isZero(payload)) invalid("FIFO or socket object has a payload");
      return { kind };
    case FileKind.CharDevice:
    case FileKind.BlockDevice: {
      if (!isZero(payload.subarray(8))) invalid("device object has stray bytes");
      const major = payload.readUInt32BE(0);
      const minor = payload.readUInt32BE(4);
      if (major > MAX_MAJOR || minor > MAX_MINOR) invalid("device number out of range");
      return { kind, major, minor };
    }
    default:
      return invalid("a regular file's header at an object's length");
  }
}

export interface SealedObject {
  /** Header and record (OBJECT_STORED_SIZE bytes), written at offset 0 of an empty lower file. */
  readonly bytes: Buffer;
  readonly header: FileHeader;
}

/** A new object: header under the keyring's current epoch, record under the new file key. */
export function sealObject(
  keyring: Keyring,
  blockSize: number,
  value: ObjectValue,
  pinned: { fileId?: Buffer; fileKey?: Buffer; headerNonce?: Buffer; recordNonce?: Buffer } = {},
): SealedObject {
  const payload = encodePayload(value);
  const { bytes: headerBytes, header } = createHeader(keyring, {
    blockSize,
    kind: value.kind,
    fileId: pinned.fileId,
    fileKey: pinned.fileKey,
    nonce: pinned.headerNonce,
  });
  const bytes = Buffer.alloc(OBJECT_STORED_SIZE);
  headerBytes.copy(bytes, 0);
  const nonce = pinned.recordNonce ?? randomPool.bytes(GCM_NONCE_SIZE);
  gcmSealInto(header.fileKey, nonce, recordAad(header.fileId), payload, bytes, HEADER_SIZE);
  return { bytes, header };
}

/**
 * Verifies and decodes an object from its first OBJECT_STORED_SIZE bytes.
 * The header must name an object kind, the record must open, and the
 * payload must be well formed for the kind.
 */
export function openObject(keyring: Keyring, bytes: Uint8Array, blockSize: number): ObjectValue {
  const header = openHeader(keyring, bytes, blockSize);
  try {
    if (header.kind === FileKind.Regular) invalid("a regular file's header at an object's length");
    if (bytes.length < OBJECT_STORED_SIZE) invalid("object shorter than its record");
    const record = bytes.subarray(HEADER_SIZE, OBJECT_STORED_SIZE);
    const payload = gcmOpen(header.fileKey, recordAad(header.fileId), record);
    if (!payload) throw new FormatError("OBJECT_AUTH", "object record failed authentication");
    try {
      return decodePayload(header.kind, payload);
    } finally {
      payload.fill(0);
    }
  } finally {
    header.fileKey.fill(0);
  }
}

/** Linux's dev_t as the kernel exchanges it with FUSE (new_encode_dev), from major and minor. */
export function encodeRdev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/** Major and minor from the kernel's 32-bit dev_t encoding (new_decode_dev). */
export function decodeRdev(rdev: number): { major: number; minor: number } {
  return {
    major: (rdev & 0xfff00) >>> 8,
    minor: ((rdev & 0xff) | ((rdev >>> 12) & 0xfff00)) >>> 0,
  };
}
