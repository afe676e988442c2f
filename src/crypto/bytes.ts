import { timingSafeEqual } from "node:crypto";

/** base64url without padding: safe in S3 keys and in file names on every common filesystem. */
export function toBase64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url");
}

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** Strict decoder: Buffer.from(..., "base64url") silently skips junk, we refuse it. */
export function fromBase64Url(text: string): Buffer | undefined {
  if (!BASE64URL.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, "base64url");
  // Reject non-canonical encodings (stray low bits in the last character).
  return bytes.toString("base64url") === text ? bytes : undefined;
}

/** Constant-time equality for MACs and key checks. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export function u32be(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value);
  return out;
}

/** Overwrite key material we own before dropping it. */
export function wipe(...buffers: (Uint8Array | undefined)[]): void {
  for (const b of buffers) b?.fill(0);
}
