import { createCipheriv, createDecipheriv } from "node:crypto";

/** AES-256-GCM through node:crypto (OpenSSL, AES-NI): the bulk cipher of the format. */
export const GCM_NONCE_SIZE = 12;
export const GCM_TAG_SIZE = 16;
export const GCM_OVERHEAD = GCM_NONCE_SIZE + GCM_TAG_SIZE;
export const KEY_SIZE = 32;

/**
 * Seals `plaintext` into `out` at `offset` as nonce | ciphertext | tag and
 * returns the number of bytes written. The caller supplies the nonce so that
 * known-answer tests can pin it; production callers take it from the pool.
 */
export function gcmSealInto(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
  out: Buffer,
  offset: number,
): number {
  const cipher = createCipheriv("aes-256-gcm", key, nonce);
  cipher.setAAD(aad);
  out.set(nonce, offset);
  let pos = offset + GCM_NONCE_SIZE;
  pos += cipher.update(plaintext).copy(out, pos);
  pos += cipher.final().copy(out, pos);
  pos += cipher.getAuthTag().copy(out, pos);
  return pos - offset;
}

export function gcmSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
): Buffer {
  const out = Buffer.allocUnsafe(plaintext.length + GCM_OVERHEAD);
  gcmSealInto(key, nonce, aad, plaintext, out, 0);
  return out;
}

/**
 * Opens nonce | ciphertext | tag. Returns undefined when authentication
 * fails (OpenSSL compares the tag in constant time); never partial plaintext.
 */
export function gcmOpen(key: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Buffer | undefined {
  if (sealed.length < GCM_OVERHEAD) return undefined;
  const nonce = sealed.subarray(0, GCM_NONCE_SIZE);
  const tag = sealed.subarray(sealed.length - GCM_TAG_SIZE);
  const body = sealed.subarray(GCM_NONCE_SIZE, sealed.length - GCM_TAG_SIZE);
  const decipher = createDecipheriv("aes-256-gcm", key, nonce);
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  const plain = decipher.update(body);
  try {
    decipher.final();
  } catch {
    plain.fill(0);
    return undefined;
  }
  return plain;
}
