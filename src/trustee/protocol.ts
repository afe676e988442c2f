/**
 * The trustee wire protocol, shared by the server (src/trustee) and its
 * clients (src/agent): labels, JWS types, HPKE info strings, limits, paths
 * and the names of every refusal. docs/trustee.md is the specification; the
 * section numbers below refer to it.
 */

import { createHash } from "node:crypto";
import { canonicalJson } from "./audit.js";

export const PROTOCOL_VERSION = 1;

/** §4.3 TLS exporter (RFC 8446 §7.5) label and length; the context is empty. */
export const EXPORTER_LABEL = "EXPORTER-cryptmount-trustee-v1";
export const EXPORTER_LENGTH = 32;

/** §4.2 JWS `typ` values: a signature made for one purpose never verifies for another. */
export const TYP = {
  request: "cm-req+jws",
  response: "cm-resp+jws",
  deviceApproval: "cm-approve-device+jws",
} as const;

/** §5 HPKE info strings. */
export const HPKE_INFO = {
  deposit: "cryptmount/trustee/deposit/v1",
  release: "cryptmount/trustee/release/v1",
} as const;

/** §4.4 replay window: |now − ts| ≤ 120 s; nonces are remembered longer than twice that. */
export const CLOCK_SKEW_MS = 120_000;
export const NONCE_RETENTION_MS = 600_000;

/** §4.1 request body limit. */
export const MAX_BODY_BYTES = 64 * 1024;

/** §6 mount keys are 32 bytes. */
export const MOUNT_KEY_BYTES = 32;

export const VOLUME_ID = /^[A-Za-z0-9_-]{16,64}$/;
export const DEVICE_ID = /^[A-Za-z0-9_-]{43}$/;
export const NONCE = /^[A-Za-z0-9_-]{22}$/;

export const PATHS = {
  enroll: "/v1/enroll",
  self: "/v1/devices/self",
  selfRevoke: "/v1/devices/self/revoke",
  members: (volumeId: string) => `/v1/volumes/${volumeId}/members`,
  deposits: (volumeId: string) => `/v1/volumes/${volumeId}/deposits`,
  release: (volumeId: string) => `/v1/volumes/${volumeId}/release`,
  register: (volumeId: string) => `/v1/volumes/${volumeId}/register`,
  renew: (volumeId: string) => `/v1/volumes/${volumeId}/renew`,
} as const;

/**
 * Every refusal has a stable name: the `rule` of the problem document
 * (RFC 9457, `type` = PROBLEM_BASE + name) and of the audit record.
 */
export const REFUSALS = {
  // transport and request (§4)
  no_client_certificate: 401,
  unknown_device: 401,
  bad_request: 400,
  body_too_large: 413,
  unsupported_media_type: 415,
  not_found: 404,
  method_not_allowed: 405,
  bad_signature: 401,
  wrong_key: 401,
  wrong_audience: 401,
  wrong_target: 401,
  channel_binding: 401,
  stale_timestamp: 401,
  replay: 401,
  // enrollment (§7)
  invitation_invalid: 403,
  already_enrolled: 409,
  // device standing (§8.1)
  device_pending: 403,
  device_revoked: 403,
  device_expired: 403,
  device_approval_invalid: 403,
  // volume policy (§8.2)
  no_policy: 403,
  not_member: 403,
  volume_not_yet_valid: 403,
  volume_expired: 403,
  outside_time_window: 403,
  source_address: 403,
  rate_limited: 429,
  no_deposit: 404,
  no_lease: 409,
  deposit_invalid: 400,
  // volume registration under a grant (§8.4)
  no_grant: 403,
  grant_exhausted: 403,
  volume_exists: 409,
  // server side
  audit_unavailable: 503,
  internal: 500,
} as const;

export type RefusalName = keyof typeof REFUSALS;

export const PROBLEM_BASE = "urn:cryptmount:trustee:problem:";

/** Common members of a signed request payload (§4.2). */
export interface RequestPayload<B = unknown> {
  readonly aud: string;
  readonly htm: "POST";
  readonly htu: string;
  readonly ts: string;
  readonly nonce: string;
  readonly tlsx: string;
  readonly body: B;
}

export interface EnrollBody {
  readonly invitation: string;
  readonly name: string;
  readonly sig_jwk: { kty: "OKP"; crv: "Ed25519"; x: string };
  readonly kem_jwk: { kty: "OKP"; crv: "X25519"; x: string };
}

/** §5.2 deposit header (JSON, carried as base64url of its exact bytes). */
export interface DepositHeader {
  readonly v: 1;
  readonly volume_id: string;
  readonly key_version: number;
  readonly recipient: string;
  readonly recipient_kem: string;
  readonly created_by: string;
  readonly created_at: string;
}

export interface WireDeposit {
  /** base64url of the header's JSON bytes; these bytes are the HPKE aad. */
  readonly hdr: string;
  readonly enc: string;
  readonly ct: string;
}

/** The invitation string: "cm-invite-1." + base64url(JSON of this). */
export interface Invitation {
  /** https URL of the trustee. */
  readonly url: string;
  /** SPKI pin (SHA-256, base64url) of the trustee's TLS key. */
  readonly pin: string;
  /** Trustee ID: RFC 7638 thumbprint of its Ed25519 key. */
  readonly tid: string;
  /** Admin ID: thumbprint of the admin key that signs device approvals. */
  readonly aid: string;
  /** The admin public key itself, so approvals can be checked offline. */
  readonly ajwk: { kty: "OKP"; crv: "Ed25519"; x: string };
  /** 32 random bytes, base64url; the trustee stores only its SHA-256. */
  readonly token: string;
  readonly exp: string;
}

export const INVITATION_PREFIX = "cm-invite-1.";

export function encodeInvitation(inv: Invitation): string {
  return INVITATION_PREFIX + Buffer.from(JSON.stringify(inv)).toString("base64url");
}

export function decodeInvitation(text: string): Invitation | undefined {
  const t = text.trim();
  if (!t.startsWith(INVITATION_PREFIX)) return undefined;
  try {
    const v = JSON.parse(Buffer.from(t.slice(INVITATION_PREFIX.length), "base64url").toString());
    const ok =
      typeof v === "object" &&
      v !== null &&
      typeof v.url === "string" &&
      v.url.startsWith("https://") &&
      typeof v.pin === "string" &&
      typeof v.tid === "string" &&
      typeof v.aid === "string" &&
      typeof v.token === "string" &&
      typeof v.exp === "string" &&
      typeof v.ajwk === "object";
    return ok ? (v as Invitation) : undefined;
  } catch {
    return undefined;
  }
}

/** §7.3 short authentication string: both sides compute it from public values. */
export function shortAuthString(
  deviceId: string,
  kemThumbprint: string,
  trusteeId: string,
): string {
  const digest = createHash("sha256")
    .update(`cryptmount/trustee/sas/v1\0${deviceId}\0${kemThumbprint}\0${trusteeId}`)
    .digest();
  const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"; // 32 symbols, no 0/O/1/I
  let out = "";
  for (let i = 0; i < 16; i++) {
    // 5 bits per symbol from the digest, big-endian bit order
    const bit = i * 5;
    const byte = bit >> 3;
    const word = ((digest[byte] ?? 0) << 8) | (digest[byte + 1] ?? 0);
    out += alphabet[(word >> (11 - (bit & 7))) & 31];
    if (i % 4 === 3 && i < 15) out += "-";
  }
  return out;
}

/** §6.3 aad of the outer (release) HPKE layer: canonical JSON of the request's binding. */
export function releaseAad(
  volumeId: string,
  keyVersion: number,
  deviceId: string,
  nonce: string,
  requestId: string,
): Buffer {
  return Buffer.from(
    canonicalJson({
      device: deviceId,
      key_version: keyVersion,
      nonce,
      request_id: requestId,
      volume: volumeId,
    }),
  );
}
