import "reflect-metadata"; // @peculiar/x509 (through tsyringe) needs it loaded first
import * as x509 from "@peculiar/x509";
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  webcrypto,
  type KeyObject,
} from "node:crypto";
import { readFile } from "node:fs/promises";
import { calculateJwkThumbprint, type JWK } from "jose";
import { writeFileAtomic } from "../atomic.js";
import { gcmOpen, gcmSeal } from "../crypto/aead.js";
import { argon2Kek } from "../keys/kek.js";
import { UserError, EXIT } from "../errors.js";

/**
 * Identities of trustees and devices: Ed25519 signing keys (also the TLS
 * certificate keys) and X25519 key-agreement keys, their JWKs, RFC 7638
 * thumbprints, SPKI pins and self-signed certificates, and key files.
 */

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export interface OkpJwk {
  readonly kty: "OKP";
  readonly crv: "Ed25519" | "X25519";
  readonly x: string;
}

export function generateEd25519(): KeyObject {
  return generateKeyPairSync("ed25519").privateKey;
}

export function generateX25519(): KeyObject {
  return generateKeyPairSync("x25519").privateKey;
}

export function publicJwk(key: KeyObject): OkpJwk {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  const jwk = pub.export({ format: "jwk" });
  if (jwk.kty !== "OKP" || (jwk.crv !== "Ed25519" && jwk.crv !== "X25519") || !jwk.x)
    throw new Error("not an Ed25519 or X25519 key");
  return { kty: "OKP", crv: jwk.crv, x: jwk.x };
}

const JWK_X = /^[A-Za-z0-9_-]{43}$/;

/** A public JWK from the wire: exactly an OKP key of the expected curve, nothing else. */
export function parseOkpJwk(value: unknown, crv: "Ed25519" | "X25519"): OkpJwk | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  const keys = Object.keys(v).sort().join(",");
  if (keys !== "crv,kty,x" || v.kty !== "OKP" || v.crv !== crv) return undefined;
  if (typeof v.x !== "string" || !JWK_X.test(v.x)) return undefined;
  if (Buffer.from(v.x, "base64url").toString("base64url") !== v.x) return undefined;
  return { kty: "OKP", crv, x: v.x };
}

export function publicKeyFromJwk(jwk: OkpJwk): KeyObject {
  return createPublicKey({ key: { ...jwk }, format: "jwk" });
}

/** RFC 7638 SHA-256 thumbprint, base64url: device IDs, trustee ID, admin ID. */
export async function thumbprint(jwk: OkpJwk): Promise<string> {
  return calculateJwkThumbprint({ ...jwk } as JWK, "sha256");
}

/** SHA-256 of the SubjectPublicKeyInfo DER, base64url: the TLS pin. */
export function spkiPin(key: KeyObject): string {
  const pub = key.type === "private" ? createPublicKey(key) : key;
  return createHash("sha256")
    .update(pub.export({ type: "spki", format: "der" }))
    .digest("base64url");
}

/** Raw 32-byte values of an X25519 key (for HPKE). */
export function x25519Raw(key: KeyObject): { privateRaw?: Buffer; publicRaw: Buffer } {
  const jwk = key.export({ format: "jwk" });
  return {
    ...(jwk.d ? { privateRaw: Buffer.from(jwk.d, "base64url") } : {}),
    publicRaw: Buffer.from(jwk.x ?? "", "base64url"),
  };
}

/** A self-signed Ed25519 certificate for TLS (server or client), PEM. */
export async function selfSignedCertificate(key: KeyObject, commonName: string): Promise<string> {
  const alg = { name: "Ed25519" };
  const subtle = webcrypto.subtle;
  const privateKey = await subtle.importKey(
    "pkcs8",
    key.export({ type: "pkcs8", format: "der" }),
    alg,
    false,
    ["sign"],
  );
  const publicKey = await subtle.importKey(
    "spki",
    createPublicKey(key).export({ type: "spki", format: "der" }),
    alg,
    true,
    ["verify"],
  );
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(8)
      .toString("hex")
      .replace(/^[89a-f]/, "1"),
    name: `CN=${commonName.replace(/[^A-Za-z0-9 ._-]/g, "_")}`,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 100 * 365 * 86400_000),
    signingAlgorithm: alg,
    keys: { privateKey, publicKey },
    extensions: [new x509.BasicConstraintsExtension(false, undefined, true)],
  });
  return cert.toString("pem");
}

// --- key files -------------------------------------------------------------

/** Argon2id parameters for passphrase-protected key files (interactive unlock). */
const KEYFILE_KDF = {
  algorithm: "argon2id",
  memoryKiB: 65536,
  iterations: 3,
  parallelism: 1,
} as const;

interface KeyFileJson {
  v: 1;
  alg: "Ed25519" | "X25519";
  /** base64url PKCS#8 DER, when not protected. */
  pkcs8?: string;
  /** Protected: Argon2id(passphrase, salt) → AES-256-GCM over the PKCS#8 DER. */
  kdf?: { name: "argon2id"; m: number; t: number; p: number; salt: string };
  sealed?: string;
}

const keyFileAad = (alg: string) => Buffer.from(`cryptmount/keyfile/v1/${alg}`);

/** Writes a private key file, mode 0600, atomically; sealed when a passphrase is given. */
export async function writeKeyFile(
  path: string,
  key: KeyObject,
  passphrase?: Buffer,
): Promise<void> {
  const alg = key.asymmetricKeyType === "ed25519" ? "Ed25519" : "X25519";
  const der = key.export({ type: "pkcs8", format: "der" });
  let json: KeyFileJson;
  if (passphrase) {
    const salt = randomBytes(16);
    const kek = await argon2Kek(passphrase, salt, KEYFILE_KDF);
    json = {
      v: 1,
      alg,
      kdf: {
        name: "argon2id",
        m: KEYFILE_KDF.memoryKiB,
        t: KEYFILE_KDF.iterations,
        p: KEYFILE_KDF.parallelism,
        salt: salt.toString("base64url"),
      },
      sealed: gcmSeal(kek, randomBytes(12), keyFileAad(alg), der).toString("base64url"),
    };
    kek.fill(0);
  } else {
    json = { v: 1, alg, pkcs8: der.toString("base64url") };
  }
  der.fill(0);
  await writeFileAtomic(path, JSON.stringify(json) + "\n", 0o600);
}

export async function keyFileIsProtected(path: string): Promise<boolean> {
  const json = JSON.parse(await readFile(path, "utf8")) as KeyFileJson;
  return json.sealed !== undefined;
}

/** Reads a key file; a protected one needs its passphrase (wrong one: exit 3). */
export async function readKeyFile(path: string, passphrase?: Buffer): Promise<KeyObject> {
  let json: KeyFileJson;
  try {
    json = JSON.parse(await readFile(path, "utf8")) as KeyFileJson;
  } catch (err) {
    throw new UserError(`${path}: cannot read key file (${(err as Error).message})`, EXIT.io);
  }
  let der: Buffer | undefined;
  if (json.pkcs8) der = Buffer.from(json.pkcs8, "base64url");
  else if (json.sealed && json.kdf) {
    if (!passphrase)
      throw new UserError(`${path}: key file is passphrase-protected`, EXIT.wrongKey);
    const kek = await argon2Kek(passphrase, Buffer.from(json.kdf.salt, "base64url"), {
      algorithm: "argon2id",
      memoryKiB: json.kdf.m,
      iterations: json.kdf.t,
      parallelism: json.kdf.p,
    });
    der = gcmOpen(kek, keyFileAad(json.alg), Buffer.from(json.sealed, "base64url"));
    kek.fill(0);
    if (!der) throw new UserError(`${path}: wrong passphrase for key file`, EXIT.wrongKey);
  }
  if (!der) throw new UserError(`${path}: not a cryptmount key file`, EXIT.io);
  try {
    return createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  } finally {
    der.fill(0);
  }
}

export function pemPrivateKey(key: KeyObject): string {
  return key.export({ type: "pkcs8", format: "pem" }).toString();
}
