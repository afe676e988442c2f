import { Aes256Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from "@hpke/core";
import { generateKeyPairSync, type webcrypto } from "node:crypto";

type CryptoKey = webcrypto.CryptoKey;

/**
 * HPKE base mode (RFC 9180 §5.1.1) with one suite:
 * DHKEM(X25519, HKDF-SHA256) 0x0020, HKDF-SHA256 0x0001, AES-256-GCM 0x0002.
 * The X25519 and AES operations are WebCrypto (OpenSSL) through @hpke/core.
 */
export const HPKE_SUITE_NAME = "X25519-SHA256-A256GCM";
export const HPKE_SUITE_IDS = { kem: 0x0020, kdf: 0x0001, aead: 0x0002 } as const;

const suite = new CipherSuite({
  kem: new DhkemX25519HkdfSha256(),
  kdf: new HkdfSha256(),
  aead: new Aes256Gcm(),
});

export interface Sealed {
  /** The encapsulated key (32 bytes). */
  readonly enc: Buffer;
  readonly ct: Buffer;
}

const ab = (b: Uint8Array): ArrayBuffer =>
  b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

async function importPublic(raw: Uint8Array): Promise<CryptoKey> {
  return suite.kem.importKey("raw", ab(raw), true);
}

async function importPrivate(privateRaw: Uint8Array, publicRaw: Uint8Array): Promise<CryptoKey> {
  const jwk = {
    kty: "OKP",
    crv: "X25519",
    d: Buffer.from(privateRaw).toString("base64url"),
    x: Buffer.from(publicRaw).toString("base64url"),
  };
  return suite.kem.importKey("jwk", jwk, false);
}

/** SealBase(pkR, info, aad, pt). `ikmE` fixes the ephemeral key (known-answer tests only). */
export async function hpkeSeal(
  recipientPublic: Uint8Array,
  info: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
  ikmE?: Uint8Array,
): Promise<Sealed> {
  const sender = await suite.createSenderContext({
    recipientPublicKey: await importPublic(recipientPublic),
    info: ab(info),
    ...(ikmE ? { ekm: ab(ikmE) } : {}),
  });
  const ct = await sender.seal(ab(plaintext), ab(aad));
  return { enc: Buffer.from(sender.enc), ct: Buffer.from(ct) };
}

/** OpenBase; undefined when the key, info, aad or ciphertext do not match. */
export async function hpkeOpen(
  recipientPrivate: Uint8Array,
  recipientPublic: Uint8Array,
  info: Uint8Array,
  aad: Uint8Array,
  sealed: Sealed,
): Promise<Buffer | undefined> {
  try {
    const recipient = await suite.createRecipientContext({
      recipientKey: await importPrivate(recipientPrivate, recipientPublic),
      enc: ab(sealed.enc),
      info: ab(info),
    });
    return Buffer.from(await recipient.open(ab(sealed.ct), ab(aad)));
  } catch {
    return undefined;
  }
}

/** DeriveKeyPair(ikm) (RFC 9180 §7.1.3), for known-answer tests: [private, public] raw. */
export async function hpkeDeriveKeyPair(ikm: Uint8Array): Promise<[Buffer, Buffer]> {
  const pair = await suite.kem.deriveKeyPair(ab(ikm));
  const priv = Buffer.from(await suite.kem.serializePrivateKey(pair.privateKey));
  const pub = Buffer.from(await suite.kem.serializePublicKey(pair.publicKey));
  return [priv, pub];
}

/** A fresh X25519 key pair as raw 32-byte values. */
export function freshX25519(): { privateRaw: Buffer; publicRaw: Buffer } {
  const jwk = generateKeyPairSync("x25519").privateKey.export({ format: "jwk" });
  return {
    privateRaw: Buffer.from(jwk.d ?? "", "base64url"),
    publicRaw: Buffer.from(jwk.x ?? "", "base64url"),
  };
}
