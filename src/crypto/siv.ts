import { aessiv } from "@noble/ciphers/aes.js";
import { cryptoAddon, type NativeSivKey } from "./native.js";

/**
 * AES-SIV (RFC 5297) with a 512-bit key (AES-256-SIV): deterministic
 * authenticated encryption for names. Through OpenSSL with each key expanded
 * once (about 2 us a name instead of 25-45 us with @noble/ciphers, which
 * expands the key on every call); @noble/ciphers for what OpenSSL 3.0 cannot
 * do (an empty plaintext or associated-data string) and for keys of other sizes. Both give the same
 * bytes (test/unit/native-crypto.test.ts).
 */
export const SIV_KEY_SIZE = 64;
export const SIV_TAG_SIZE = 16;

/** Expanded keys by key buffer; Keyring.wipe() forgets its own (forgetSivKey). */
const expanded = new WeakMap<Uint8Array, NativeSivKey>();

function nativeKey(key: Uint8Array): NativeSivKey {
  let native = expanded.get(key);
  if (!native) {
    native = cryptoAddon().sivKey(key);
    expanded.set(key, native);
  }
  return native;
}

/** Frees the expanded copy of a key about to be wiped: it must not outlive the key. */
export function forgetSivKey(key: Uint8Array): void {
  const native = expanded.get(key);
  if (!native) return;
  expanded.delete(key);
  cryptoAddon().sivDispose(native);
}

/** What OpenSSL 3.0's AES-256-SIV handles: it skips empty strings. */
function opensslCan(key: Uint8Array, aad: Uint8Array[], text: Uint8Array): boolean {
  return key.length === SIV_KEY_SIZE && text.length > 0 && aad.every((a) => a.length > 0);
}

export function sivSeal(key: Uint8Array, aad: Uint8Array[], plaintext: Uint8Array): Uint8Array {
  if (!opensslCan(key, aad, plaintext)) return aessiv(key, ...aad).encrypt(plaintext);
  return cryptoAddon().sivSeal(nativeKey(key), aad, plaintext);
}

/** Returns undefined when the synthetic IV does not verify. */
export function sivOpen(
  key: Uint8Array,
  aad: Uint8Array[],
  sealed: Uint8Array,
): Uint8Array | undefined {
  if (sealed.length < SIV_TAG_SIZE) return undefined;
  if (opensslCan(key, aad, sealed.subarray(SIV_TAG_SIZE)))
    return cryptoAddon().sivOpen(nativeKey(key), aad, sealed);
  try {
    return aessiv(key, ...aad).decrypt(sealed);
  } catch {
    return undefined;
  }
}
