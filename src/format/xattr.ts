import { fromBase64Url, toBase64Url } from "../crypto/bytes.js";
import { GCM_NONCE_SIZE, gcmOpen, gcmSeal } from "../crypto/aead.js";
import { sivOpen, sivSeal } from "../crypto/siv.js";
import { randomPool } from "../crypto/random.js";
import type { VolumeKeys } from "../crypto/keys.js";
import { FormatError } from "./errors.js";

/**
 * Extended attributes (docs/format.md, "Extended attributes"): only the
 * user.* namespace is offered. The name after "user." is encrypted with
 * AES-SIV (deterministic, so lookups need no listing) and stored as
 * "user.cm.<base64url>"; the value is AES-256-GCM with the stored name as
 * associated data, so values cannot be swapped between attributes.
 */
export const XATTR_PREFIX = "user.";
export const LOWER_XATTR_PREFIX = "user.cm.";
/** Keeps the lower name under Linux's 255-byte limit. */
export const MAX_XATTR_NAME = 160;

export function encryptXattrName(keys: VolumeKeys, name: string): string {
  if (!name.startsWith(XATTR_PREFIX))
    throw new FormatError("NAME_INVALID", "only user.* attributes are supported");
  const bare = Buffer.from(name.slice(XATTR_PREFIX.length), "utf8");
  if (bare.length === 0) throw new FormatError("NAME_INVALID", "empty attribute name");
  if (bare.length > MAX_XATTR_NAME)
    throw new FormatError("NAME_TOO_LONG", "attribute name too long");
  return LOWER_XATTR_PREFIX + toBase64Url(sivSeal(keys.xattrNames, [], bare));
}

/** The cleartext name of a lower attribute, or undefined when it is not one of ours or fails. */
export function decryptXattrName(keys: VolumeKeys, lowerName: string): string | undefined {
  if (!lowerName.startsWith(LOWER_XATTR_PREFIX)) return undefined;
  const sealed = fromBase64Url(lowerName.slice(LOWER_XATTR_PREFIX.length));
  const bare = sealed && sivOpen(keys.xattrNames, [], sealed);
  return bare ? XATTR_PREFIX + Buffer.from(bare).toString("utf8") : undefined;
}

export function encryptXattrValue(keys: VolumeKeys, lowerName: string, value: Uint8Array): Buffer {
  return gcmSeal(
    keys.xattrValues,
    randomPool.bytes(GCM_NONCE_SIZE),
    Buffer.from(lowerName, "utf8"),
    value,
  );
}

export function decryptXattrValue(keys: VolumeKeys, lowerName: string, stored: Uint8Array): Buffer {
  const plain = gcmOpen(keys.xattrValues, Buffer.from(lowerName, "utf8"), stored);
  if (!plain) throw new FormatError("BLOCK_AUTH", "extended attribute value failed authentication");
  return plain;
}
