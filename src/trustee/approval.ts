import type { KeyObject } from "node:crypto";
import { parseFlattenedJws, peekHeader, signJws, verifyJws } from "./jws.js";
import { TYP } from "./protocol.js";
import type { OkpJwk } from "./identity.js";

/**
 * The admin's device approval (docs/trustee.md §7.4): a JWS by the admin key
 * over the device's identity. The trustee treats a device as active only
 * while its approval verifies, and a depositing client checks it too, so a
 * database writer without the admin key cannot add a device anyone trusts.
 */
export interface ApprovalPayload {
  readonly tid: string;
  readonly device_id: string;
  readonly name: string;
  readonly sig_jwk: OkpJwk;
  readonly kem_jwk: OkpJwk;
  readonly kem_thumbprint: string;
  readonly approved_at: string;
  readonly not_after: string | null;
}

export async function signApproval(
  payload: ApprovalPayload,
  adminId: string,
  adminKey: KeyObject,
): Promise<string> {
  return JSON.stringify(await signJws(payload, TYP.deviceApproval, adminId, adminKey));
}

/** The verified payload when the approval is the admin's and names exactly this device. */
export async function verifyApproval(
  approval: string | null,
  adminId: string,
  adminPublicKey: KeyObject,
  expect: { trusteeId: string; deviceId: string; sigJwk?: string; kemJwk: string },
): Promise<ApprovalPayload | undefined> {
  if (!approval) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(approval);
  } catch {
    return undefined;
  }
  const jws = parseFlattenedJws(parsed);
  if (!jws || peekHeader(jws)?.kid !== adminId) return undefined;
  const bytes = await verifyJws(jws, adminPublicKey, TYP.deviceApproval);
  if (!bytes) return undefined;
  const p = JSON.parse(bytes.toString()) as ApprovalPayload;
  const same = (a: unknown, b: string) => JSON.stringify(a) === JSON.stringify(JSON.parse(b));
  if (
    p.tid !== expect.trusteeId ||
    p.device_id !== expect.deviceId ||
    (expect.sigJwk !== undefined && !same(p.sig_jwk, expect.sigJwk)) ||
    !same(p.kem_jwk, expect.kemJwk)
  )
    return undefined;
  return p;
}
