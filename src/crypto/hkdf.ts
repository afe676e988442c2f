import { hkdfSync } from "node:crypto";

/**
 * HKDF-SHA256 (RFC 5869). Every subkey has its own `info` label so that no
 * key ever serves two algorithms or two purposes.
 */
export function hkdf(ikm: Uint8Array, salt: Uint8Array, info: string, length: number): Buffer {
  return Buffer.from(hkdfSync("sha256", ikm, salt, Buffer.from(info, "utf8"), length));
}
