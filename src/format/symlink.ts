import { fromBase64Url, toBase64Url } from "../crypto/bytes.js";
import { GCM_NONCE_SIZE, GCM_OVERHEAD, gcmOpen, gcmSeal } from "../crypto/aead.js";
import { randomPool } from "../crypto/random.js";
import { FormatError } from "./errors.js";

/**
 * Symlink targets (docs/format.md, "Symlinks"): AES-256-GCM under the symlink
 * key with a random nonce, stored base64url as the lower link's target.
 * Not padded, so the cleartext length follows from the lower length and
 * getattr needs no decryption.
 */
const AAD = Buffer.from("cryptmount v1 symlink", "utf8");
/** Keeps the lower target under PATH_MAX (4096) after base64url. */
export const MAX_SYMLINK_TARGET = 3000;

export function encryptSymlink(key: Uint8Array, target: string, nonce?: Buffer): string {
  const plain = Buffer.from(target, "utf8");
  if (plain.length === 0 || plain.length > MAX_SYMLINK_TARGET) {
    throw new FormatError("NAME_TOO_LONG", `symlink target must be 1..${MAX_SYMLINK_TARGET} bytes`);
  }
  return toBase64Url(gcmSeal(key, nonce ?? randomPool.bytes(GCM_NONCE_SIZE), AAD, plain));
}

export function decryptSymlink(key: Uint8Array, stored: string): string {
  const sealed = fromBase64Url(stored);
  if (!sealed) throw new FormatError("NAME_ENCODING", "encrypted symlink target is not base64url");
  const plain = gcmOpen(key, AAD, sealed);
  if (!plain) throw new FormatError("SYMLINK_AUTH", "symlink target failed authentication");
  return plain.toString("utf8");
}

/** Cleartext target length from the stored length, for getattr. */
export function symlinkTargetLength(storedLength: number): number {
  return Math.max(0, Math.floor((storedLength * 3) / 4) - GCM_OVERHEAD);
}
