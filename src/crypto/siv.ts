import { aessiv } from "@noble/ciphers/aes.js";

/** AES-SIV (RFC 5297) with a 512-bit key: deterministic authenticated encryption for names. */
export const SIV_KEY_SIZE = 64;
export const SIV_TAG_SIZE = 16;

export function sivSeal(key: Uint8Array, aad: Uint8Array[], plaintext: Uint8Array): Uint8Array {
  return aessiv(key, ...aad).encrypt(plaintext);
}

/** Returns undefined when the synthetic IV does not verify. */
export function sivOpen(
  key: Uint8Array,
  aad: Uint8Array[],
  sealed: Uint8Array,
): Uint8Array | undefined {
  if (sealed.length < SIV_TAG_SIZE) return undefined;
  try {
    return aessiv(key, ...aad).decrypt(sealed);
  } catch {
    return undefined;
  }
}
