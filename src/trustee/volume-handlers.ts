import { randomBytes } from "node:crypto";
import { hpkeSeal } from "../crypto/hpke.js";
import { evaluateRegistration, policyFromGrant } from "./grants.js";
import { parseOkpJwk } from "./identity.js";
import { evaluateMembership, evaluateRelease, evaluateStanding, leaseEnd } from "./policy.js";
import {
  DEVICE_ID,
  HPKE_INFO,
  MOUNT_KEY_BYTES,
  releaseAad,
  type DepositHeader,
  type RefusalName,
  type WireDeposit,
} from "./protocol.js";
import type { DepositRecord } from "./store.js";
import {
  Refusal,
  exactKeys,
  isObject,
  requestInfo,
  type Authenticated,
  type Handler,
  type TrusteeContext,
} from "./request.js";

/**
 * The trustee's volume endpoints (docs/trustee.md §5, §6, §8.5): members,
 * deposits, registration under a grant and the release, each decided by the
 * pure policy engine and audited before the answer.
 */

/** §5, §6, §8.5: a volume's members, deposits, registration and release. */
export function volumeHandlers(
  ctx: TrusteeContext,
): Record<"members" | "deposits" | "register" | "release" | "renew", Handler> {
  const { store, now, record, standingOf, loadPolicy } = ctx;

  /** §8.2 rules 1–3: the asking device in good standing and on the volume's allow-list. */
  async function asMember(a: Authenticated, volumeId: string, auditEvent: string) {
    const d = a.device!;
    const policy = await loadPolicy(volumeId);
    const decision = evaluateMembership(await standingOf(d), policy, now());
    if (!decision.allow)
      throw new Refusal(decision.rule, decision.detail, auditEvent, d.id, volumeId);
    return { d, policy: policy! };
  }

  /** §8.2: the release rules, the rate limit counted only for releases that carry a key. */
  async function releaseAllowed(
    a: Authenticated,
    volumeId: string,
    auditEvent: string,
    countRate: boolean,
  ) {
    const d = a.device!;
    const t = now();
    const policy = await loadPolicy(volumeId);
    const standing = await standingOf(d);
    const since = t.getTime() - (policy?.rate?.per ?? 0) * 1000;
    const decision = evaluateRelease({
      device: standing,
      policy,
      now: t,
      sourceAddress: a.ip,
      recentReleases:
        countRate && policy?.rate ? await store.recentReleases(d.id, volumeId, since) : [],
    });
    if (!decision.allow)
      throw new Refusal(decision.rule, decision.detail, auditEvent, d.id, volumeId);
    return { t, policy: policy!, standing };
  }

  async function members(a: Authenticated, volumeId: string): Promise<[number, unknown]> {
    const { policy } = await asMember(a, volumeId, "request.deny");
    const list = [];
    for (const id of policy.members) {
      const m = await store.getDevice(id);
      if (!m || m.state !== "active") continue;
      if (!evaluateStanding(await standingOf(m), now()).allow) continue;
      list.push({
        device_id: m.id,
        name: m.name,
        kem_jwk: JSON.parse(m.kemJwk),
        approval: JSON.parse(m.approval!),
      });
    }
    return [200, { volume_id: volumeId, policy_version: policy.version, members: list }];
  }

  async function deposits(a: Authenticated, volumeId: string): Promise<[number, unknown]> {
    const { d, policy } = await asMember(a, volumeId, "deposit.deny");
    const b = a.payload.body;
    const bad = (detail: string) =>
      new Refusal("deposit_invalid", detail, "deposit.deny", d.id, volumeId);
    if (
      !exactKeys(b, ["key_version", "deposits"]) ||
      !Number.isSafeInteger(b.key_version) ||
      (b.key_version as number) < 1 ||
      !Array.isArray(b.deposits) ||
      b.deposits.length === 0 ||
      b.deposits.length > 256
    )
      throw bad("body: key_version (≥ 1) and 1 to 256 deposits");
    const keyVersion = b.key_version as number;
    const recordsOut: DepositRecord[] = [];
    const seen = new Set<string>();
    for (const raw of b.deposits as unknown[]) {
      if (
        !isObject(raw) ||
        !exactKeys(raw, ["hdr", "enc", "ct"]) ||
        typeof raw.hdr !== "string" ||
        typeof raw.enc !== "string" ||
        typeof raw.ct !== "string"
      )
        throw bad("each deposit is {hdr, enc, ct}");
      const w = raw as unknown as WireDeposit;
      let hdr: DepositHeader;
      try {
        hdr = JSON.parse(Buffer.from(w.hdr, "base64url").toString("utf8"));
      } catch {
        throw bad("hdr is not base64url JSON");
      }
      if (
        !isObject(hdr) ||
        hdr.v !== 1 ||
        hdr.volume_id !== volumeId ||
        hdr.key_version !== keyVersion ||
        hdr.created_by !== d.id ||
        typeof hdr.recipient !== "string" ||
        !DEVICE_ID.test(hdr.recipient) ||
        typeof hdr.created_at !== "string"
      )
        throw bad("hdr does not name this volume, version and depositor");
      if (
        Buffer.from(w.enc, "base64url").length !== 32 ||
        Buffer.from(w.ct, "base64url").length !== MOUNT_KEY_BYTES + 16
      )
        throw bad("enc must be 32 bytes and ct a sealed 32-byte key");
      if (seen.has(hdr.recipient)) throw bad("two deposits for one recipient");
      seen.add(hdr.recipient);
      const r = await store.getDevice(hdr.recipient);
      if (
        !r ||
        !policy.members.includes(r.id) ||
        !evaluateStanding(await standingOf(r), now()).allow
      )
        throw bad(`recipient ${hdr.recipient} is not an active member`);
      if (hdr.recipient_kem !== r.kemThumbprint) throw bad(`recipient_kem is not ${r.id}'s key`);
      recordsOut.push({
        volumeId,
        keyVersion,
        recipient: r.id,
        hdr: w.hdr,
        enc: w.enc,
        ct: w.ct,
        createdBy: d.id,
        createdAt: now().toISOString(),
      });
    }
    await store.putDeposits(volumeId, keyVersion, recordsOut);
    await record({
      event: "deposit.put",
      outcome: "allow",
      device: d.id,
      volume: volumeId,
      ip: a.ip,
      request: requestInfo(a),
      detail: { key_version: keyVersion, recipients: recordsOut.length },
    });
    return [201, { volume_id: volumeId, key_version: keyVersion, stored: recordsOut.length }];
  }

  /** §8.4: a device with a grant registers a new volume name; its policy comes from the grant. */
  async function register(a: Authenticated, volumeId: string): Promise<[number, unknown]> {
    const d = a.device!;
    const deny = (rule: RefusalName, detail: string) =>
      new Refusal(rule, detail, "volume.register.deny", d.id, volumeId);
    if (!exactKeys(a.payload.body, [])) throw deny("bad_request", "the body is {}");
    const grant = await store.getGrant(d.id);
    const decision = evaluateRegistration(
      await standingOf(d),
      grant,
      await store.countRegistered(d.id),
      now(),
    );
    if (!decision.allow) throw deny(decision.rule, decision.detail);
    const policy = policyFromGrant(grant!, volumeId);
    // The insert decides races (name taken, budget used up); a policy whose
    // creation cannot be audited is taken back (fail closed).
    const outcome = await store.registerVolume(policy, grant!.maxVolumes, now());
    if (outcome === "volume_exists")
      throw deny("volume_exists", "a policy with this name exists already");
    if (outcome === "grant_exhausted")
      throw deny("grant_exhausted", `the device has registered ${grant!.maxVolumes} volumes`);
    try {
      await record({
        event: "volume.register",
        outcome: "allow",
        device: d.id,
        volume: volumeId,
        ip: a.ip,
        request: requestInfo(a),
        detail: { policy_version: policy.version },
      });
    } catch (err) {
      await store.removePolicy(volumeId);
      throw err;
    }
    return [201, { volume_id: volumeId, policy_version: policy.version }];
  }

  async function release(a: Authenticated, volumeId: string): Promise<[number, unknown]> {
    const d = a.device!;
    const b = a.payload.body;
    const eph = parseOkpJwk(b.eph, "X25519");
    if (
      !exactKeys(b, ["eph"], ["key_version"]) ||
      !eph ||
      (b.key_version !== undefined &&
        (!Number.isSafeInteger(b.key_version) || (b.key_version as number) < 1))
    )
      throw new Refusal(
        "bad_request",
        "body: eph (X25519 JWK) and optional key_version",
        "release.deny",
        d.id,
        volumeId,
      );
    const { t, policy, standing } = await releaseAllowed(a, volumeId, "release.deny", true);
    const deposit = await store.getDeposit(volumeId, d.id, b.key_version as number | undefined);
    if (!deposit)
      throw new Refusal(
        "no_deposit",
        "no deposit for this device at this version",
        "release.deny",
        d.id,
        volumeId,
      );
    const requestId = "r_" + randomBytes(16).toString("base64url");
    const lease = leaseEnd(policy, standing, t)?.toISOString();
    // Fail closed: the release is audited before anything leaves.
    const entry = await record({
      event: "release",
      outcome: "allow",
      rule: "ok",
      device: d.id,
      volume: volumeId,
      ip: a.ip,
      request: requestInfo(a),
      detail: {
        key_version: deposit.keyVersion,
        request_id: requestId,
        policy_version: policy.version,
        lease_expires_at: lease ?? null,
      },
    });
    await store.recordRelease(d.id, volumeId, t.getTime());
    const aad = releaseAad(volumeId, deposit.keyVersion, d.id, a.payload.nonce, requestId);
    const inner = Buffer.from(
      JSON.stringify({ hdr: deposit.hdr, enc: deposit.enc, ct: deposit.ct }),
    );
    const sealed = await hpkeSeal(
      Buffer.from(eph.x, "base64url"),
      Buffer.from(HPKE_INFO.release),
      aad,
      inner,
    );
    return [
      200,
      {
        request_id: requestId,
        volume_id: volumeId,
        key_version: deposit.keyVersion,
        release: { enc: sealed.enc.toString("base64url"), ct: sealed.ct.toString("base64url") },
        audit: { seq: entry.seq, hash: entry.hash },
        ...(policy.agentTtl !== undefined ? { agent_ttl: policy.agentTtl } : {}),
        ...(lease ? { lease: { expires_at: lease } } : {}),
      },
    ];
  }

  /**
   * §8.6: a mount's lease renewed. The release rules again (except the rate
   * limit: a renewal carries no key), and the device must still hold a
   * deposit; no key leaves, so nothing is sealed.
   */
  async function renew(a: Authenticated, volumeId: string): Promise<[number, unknown]> {
    const d = a.device!;
    const deny = (rule: RefusalName, detail: string) =>
      new Refusal(rule, detail, "lease.renew.deny", d.id, volumeId);
    if (!exactKeys(a.payload.body, [])) throw deny("bad_request", "the body is {}");
    const { t, policy, standing } = await releaseAllowed(a, volumeId, "lease.renew.deny", false);
    if (!(await store.getDeposit(volumeId, d.id)))
      throw deny("no_deposit", "no deposit for this device");
    const lease = leaseEnd(policy, standing, t)?.toISOString();
    if (!lease) throw deny("no_lease", "the volume's policy sets no lease");
    await record({
      event: "lease.renew",
      outcome: "allow",
      rule: "ok",
      device: d.id,
      volume: volumeId,
      ip: a.ip,
      request: requestInfo(a),
      detail: { policy_version: policy.version, lease_expires_at: lease },
    });
    return [200, { volume_id: volumeId, lease: { expires_at: lease } }];
  }

  return { members, deposits, register, release, renew };
}
