import { createPublicKey, type KeyObject } from "node:crypto";
import { FlattenedSign, flattenedVerify, decodeProtectedHeader } from "jose";

/**
 * JWS (RFC 7515) in flattened JSON serialization, alg EdDSA (RFC 8037) over
 * Ed25519. The signed payload is carried as sent, so no JSON
 * canonicalisation is needed; `typ` names the purpose (docs/trustee.md §4).
 */
export interface FlattenedJws {
  readonly protected: string;
  readonly payload: string;
  readonly signature: string;
}

export async function signJws(
  payload: unknown,
  typ: string,
  kid: string,
  key: KeyObject,
): Promise<FlattenedJws> {
  const bytes = Buffer.from(JSON.stringify(payload));
  const jws = await new FlattenedSign(bytes)
    .setProtectedHeader({ alg: "EdDSA", typ, kid })
    .sign(key);
  return { protected: jws.protected ?? "", payload: jws.payload, signature: jws.signature };
}

/** Shape check for a JWS from the wire: exactly the three string members. */
export function parseFlattenedJws(value: unknown): FlattenedJws | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  if (Object.keys(v).sort().join(",") !== "payload,protected,signature") return undefined;
  if (typeof v.protected !== "string" || typeof v.payload !== "string") return undefined;
  if (typeof v.signature !== "string") return undefined;
  return { protected: v.protected, payload: v.payload, signature: v.signature };
}

/** The protected header's kid and typ without verifying (to find the key); undefined if malformed. */
export function peekHeader(jws: FlattenedJws): { kid: string; typ: string } | undefined {
  try {
    const h = decodeProtectedHeader(jws);
    if (h.alg !== "EdDSA" || typeof h.kid !== "string" || typeof h.typ !== "string")
      return undefined;
    return { kid: h.kid, typ: h.typ };
  } catch {
    return undefined;
  }
}

/** The payload bytes when the signature verifies with `key` and typ matches; else undefined. */
export async function verifyJws(
  jws: FlattenedJws,
  key: KeyObject,
  typ: string,
): Promise<Buffer | undefined> {
  try {
    const pub = key.type === "private" ? createPublicKey(key) : key;
    const r = await flattenedVerify(jws, pub, { algorithms: ["EdDSA"] });
    if (r.protectedHeader?.typ !== typ) return undefined;
    return Buffer.from(r.payload);
  } catch {
    return undefined;
  }
}
