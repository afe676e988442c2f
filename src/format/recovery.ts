import { createHash } from "node:crypto";
import { FormatError } from "./errors.js";

/**
 * Recovery keys (docs/format.md, "Recovery key"): 32 random bytes plus a
 * 2-byte SHA-256 checksum, written in Crockford base32 in groups of five, so
 * a person can copy it by hand and a typo is caught before any unlock try.
 */
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
export const RECOVERY_KEY_SIZE = 32;

function checksum(key: Uint8Array): Buffer {
  return createHash("sha256").update("cryptmount recovery").update(key).digest().subarray(0, 2);
}

export function formatRecoveryKey(key: Uint8Array): string {
  if (key.length !== RECOVERY_KEY_SIZE) throw new RangeError("recovery key must be 32 bytes");
  const bytes = Buffer.concat([key, checksum(key)]);
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out.match(/.{1,5}/g)!.join("-");
}

export function parseRecoveryKey(text: string): Buffer {
  const clean = text.toUpperCase().replace(/[\s-]/g, "").replace(/O/g, "0").replace(/[IL]/g, "1");
  const bad = () => new FormatError("RECOVERY_KEY_INVALID", "recovery key is malformed");
  if (clean.length !== 55) throw bad();
  const bytes: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of clean) {
    const digit = ALPHABET.indexOf(ch);
    if (digit < 0) throw bad();
    value = (value << 5) | digit;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
      value &= (1 << bits) - 1;
    }
  }
  const all = Buffer.from(bytes.slice(0, RECOVERY_KEY_SIZE + 2));
  const key = all.subarray(0, RECOVERY_KEY_SIZE);
  if (!checksum(key).equals(all.subarray(RECOVERY_KEY_SIZE))) {
    throw new FormatError("RECOVERY_KEY_INVALID", "recovery key has a typo (checksum mismatch)");
  }
  return Buffer.from(key);
}
