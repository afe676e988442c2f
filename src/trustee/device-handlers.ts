import { revokeDevice, tokenHash } from "./admin.js";
import { parseOkpJwk, publicKeyFromJwk, spkiPin, thumbprint } from "./identity.js";
import { evaluateStanding } from "./policy.js";
import { shortAuthString } from "./protocol.js";
import type { DeviceRecord } from "./store.js";
import {
  Refusal,
  exactKeys,
  requestInfo,
  type Authenticated,
  type Handler,
  type TrusteeContext,
} from "./request.js";

/**
 * The trustee's device endpoints (docs/trustee.md §7): enrollment with an
 * invitation, a device's view of itself, and self-revocation.
 */

/** §7: enrollment, a device's own standing, and self-revocation. */
export function deviceHandlers(
  ctx: TrusteeContext,
): Record<"enroll" | "self" | "selfRevoke", Handler> {
  const { home, store, config, now, record, standingOf } = ctx;

  async function enroll(a: Authenticated): Promise<[number, unknown]> {
    const b = a.payload.body;
    const sig = parseOkpJwk(b.sig_jwk, "Ed25519");
    const kem = parseOkpJwk(b.kem_jwk, "X25519");
    if (
      !exactKeys(b, ["invitation", "name", "sig_jwk", "kem_jwk"]) ||
      typeof b.invitation !== "string" ||
      typeof b.name !== "string" ||
      !/^[\w .@-]{1,64}$/.test(b.name) ||
      !sig ||
      !kem
    )
      throw new Refusal(
        "bad_request",
        "enrollment body: invitation, name, sig_jwk, kem_jwk",
        "enroll.deny",
        a.deviceId,
      );
    const kemThumbprint = await thumbprint(kem);
    const t = now();
    const device: DeviceRecord = {
      id: a.deviceId,
      name: b.name,
      state: "pending",
      sigJwk: JSON.stringify(sig),
      kemJwk: JSON.stringify(kem),
      kemThumbprint,
      spki: spkiPin(publicKeyFromJwk(sig)),
      approval: null,
      createdAt: t.toISOString(),
      approvedAt: null,
      revokedAt: null,
      revokeReason: null,
    };
    const outcome = await store.enrollDevice(tokenHash(b.invitation), t, device);
    if (outcome !== "ok")
      throw new Refusal(
        outcome,
        outcome === "invitation_invalid"
          ? "the invitation is unknown, used or expired"
          : "this device is already enrolled",
        "enroll.deny",
        a.deviceId,
      );
    const sas = shortAuthString(a.deviceId, kemThumbprint, config.trusteeId);
    await record({
      event: "enroll",
      outcome: "allow",
      device: a.deviceId,
      ip: a.ip,
      request: requestInfo(a),
      detail: { name: b.name },
    });
    return [201, { device_id: a.deviceId, state: "pending", sas }];
  }

  async function self(a: Authenticated): Promise<[number, unknown]> {
    const d = a.device!;
    if (d.state === "revoked")
      throw new Refusal("device_revoked", "the device was revoked", "request.deny", d.id);
    const standing = await standingOf(d);
    const decision = evaluateStanding(standing, now());
    return [
      200,
      {
        device_id: d.id,
        name: d.name,
        state: d.state,
        standing: decision.allow ? "ok" : decision.rule,
        approval: d.approval ? JSON.parse(d.approval) : null,
      },
    ];
  }

  async function selfRevoke(a: Authenticated): Promise<[number, unknown]> {
    // Any device not yet revoked may revoke itself (pending, expired, active).
    const d = a.device!;
    if (d.state === "revoked")
      throw new Refusal("device_revoked", "the device was revoked", "request.deny", d.id);
    await revokeDevice(home, d.id, "self-revoked", "self", now());
    return [200, { device_id: d.id, state: "revoked" }];
  }

  return { enroll, self, selfRevoke };
}
