import { createHash, createPublicKey, randomBytes, type KeyObject } from "node:crypto";
import { EXIT, UserError } from "../errors.js";
import {
  buildRecord,
  verifyChain,
  type AuditEvent,
  type AuditRecord,
  type VerifyResult,
} from "./audit.js";
import { signApproval } from "./approval.js";
import type { OkpJwk } from "./identity.js";
import type { TrusteeHome } from "./home.js";
import { grantProblem, type VolumeGrant } from "./grants.js";
import { policyProblem, type VolumePolicy } from "./policy.js";
import { encodeInvitation, shortAuthString, VOLUME_ID } from "./protocol.js";
import type { DeviceRecord } from "./store.js";

/**
 * Administration, run locally against the trustee directory
 * (docs/trustee.md §3.2): whoever can read the directory's admin key and
 * write its database is the admin. Every action is audited.
 */

export async function audit(
  home: TrusteeHome,
  event: AuditEvent,
  now = new Date(),
): Promise<AuditRecord> {
  return home.store.appendAudit((head) => buildRecord(head, event, now, home.key));
}

export function tokenHash(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}

export async function createInvitation(
  home: TrusteeHome,
  name: string,
  ttlSeconds: number,
  now = new Date(),
): Promise<{ invitation: string; expiresAt: string }> {
  if (!/^[\w .@-]{1,64}$/.test(name))
    throw new UserError("--name: 1 to 64 letters, digits, spaces, . _ @ -", EXIT.usage);
  const token = randomBytes(32).toString("base64url");
  const expiresAt = new Date(now.getTime() + ttlSeconds * 1000).toISOString();
  await home.store.addInvitation({
    hash: tokenHash(token),
    name,
    createdAt: now.toISOString(),
    expiresAt,
  });
  await audit(
    home,
    { event: "invitation.create", outcome: "info", detail: { name, expires_at: expiresAt } },
    now,
  );
  const { config } = home;
  const invitation = encodeInvitation({
    url: config.url,
    pin: config.tlsPin,
    tid: config.trusteeId,
    aid: config.adminId,
    ajwk: { kty: "OKP", crv: "Ed25519", x: config.adminJwk.x },
    token,
    exp: expiresAt,
  });
  return { invitation, expiresAt };
}

export function deviceSas(home: TrusteeHome, d: DeviceRecord): string {
  return shortAuthString(d.id, d.kemThumbprint, home.config.trusteeId);
}

const normSas = (s: string) => s.toUpperCase().replace(/[^A-Z0-9]/g, "");

export async function approveDevice(
  home: TrusteeHome,
  adminKey: KeyObject,
  deviceId: string,
  options: { sas?: string; notAfter?: string },
  now = new Date(),
): Promise<DeviceRecord> {
  const adminPub = createPublicKey(adminKey);
  if (
    JSON.stringify(adminPub.export({ format: "jwk" }).x) !== JSON.stringify(home.config.adminJwk.x)
  )
    throw new UserError("this admin key is not the trustee's admin key", EXIT.wrongKey);
  const d = await home.store.getDevice(deviceId);
  if (!d) throw new UserError(`no device ${deviceId}`, EXIT.usage);
  if (d.state !== "pending")
    throw new UserError(`device ${deviceId} is ${d.state}, not pending`, EXIT.usage);
  if (options.sas !== undefined && normSas(options.sas) !== normSas(deviceSas(home, d)))
    throw new UserError(
      `verification code does not match the device's (${deviceSas(home, d)}): do not approve`,
      EXIT.wrongKey,
    );
  if (options.notAfter !== undefined && Number.isNaN(Date.parse(options.notAfter)))
    throw new UserError(`--not-after: not a date: ${options.notAfter}`, EXIT.usage);
  const approval = await signApproval(
    {
      tid: home.config.trusteeId,
      device_id: d.id,
      name: d.name,
      sig_jwk: JSON.parse(d.sigJwk) as OkpJwk,
      kem_jwk: JSON.parse(d.kemJwk) as OkpJwk,
      kem_thumbprint: d.kemThumbprint,
      approved_at: now.toISOString(),
      not_after: options.notAfter ? new Date(options.notAfter).toISOString() : null,
    },
    home.config.adminId,
    adminKey,
  );
  if (!(await home.store.approveDevice(d.id, approval, now)))
    throw new UserError(`device ${deviceId} changed state; list devices again`, EXIT.failure);
  await audit(
    home,
    {
      event: "device.approve",
      outcome: "info",
      device: d.id,
      detail: { not_after: options.notAfter ?? null },
    },
    now,
  );
  return (await home.store.getDevice(d.id))!;
}

export async function revokeDevice(
  home: TrusteeHome,
  deviceId: string,
  reason: string,
  by: "admin" | "self",
  now = new Date(),
): Promise<boolean> {
  const changed = await home.store.revokeDevice(deviceId, reason, now);
  if (changed)
    await audit(
      home,
      { event: "device.revoke", outcome: "info", device: deviceId, detail: { reason, by } },
      now,
    );
  return changed;
}

export async function setPolicy(
  home: TrusteeHome,
  policy: Omit<VolumePolicy, "version">,
  now = new Date(),
): Promise<VolumePolicy> {
  if (!VOLUME_ID.test(policy.volumeId))
    throw new UserError(`not a volume ID: ${policy.volumeId}`, EXIT.usage);
  const old = await home.store.getPolicy(policy.volumeId);
  const full: VolumePolicy = {
    ...policy,
    version: (old?.version ?? 0) + 1,
    // Who registered the volume stays on record (it counts against their grant).
    ...(old?.createdBy ? { createdBy: old.createdBy } : {}),
  };
  const problem = policyProblem(full);
  if (problem) throw new UserError(problem, EXIT.usage);
  for (const m of full.members)
    if (!(await home.store.getDevice(m))) throw new UserError(`no device ${m}`, EXIT.usage);
  await home.store.setPolicy(full, now);
  await audit(
    home,
    {
      event: "policy.set",
      outcome: "info",
      volume: full.volumeId,
      detail: { version: full.version, members: full.members.length },
    },
    now,
  );
  return full;
}

/** `trustee grant DEVICE --create-volumes`: the device may register volumes itself (§8.4). */
export async function setGrant(
  home: TrusteeHome,
  grant: VolumeGrant,
  now = new Date(),
): Promise<VolumeGrant> {
  const problem = grantProblem(grant);
  if (problem) throw new UserError(problem, EXIT.usage);
  const d = await home.store.getDevice(grant.deviceId);
  if (!d) throw new UserError(`no device ${grant.deviceId}`, EXIT.usage);
  if (d.state === "revoked") throw new UserError(`device ${d.id} is revoked`, EXIT.usage);
  await home.store.setGrant(grant, now);
  await audit(
    home,
    {
      event: "grant.set",
      outcome: "info",
      device: grant.deviceId,
      detail: { max_volumes: grant.maxVolumes },
    },
    now,
  );
  return grant;
}

export async function removeGrant(
  home: TrusteeHome,
  deviceId: string,
  now = new Date(),
): Promise<boolean> {
  const removed = await home.store.removeGrant(deviceId);
  if (removed) await audit(home, { event: "grant.remove", outcome: "info", device: deviceId }, now);
  return removed;
}

export async function removePolicy(
  home: TrusteeHome,
  volumeId: string,
  now = new Date(),
): Promise<boolean> {
  const removed = await home.store.removePolicy(volumeId);
  if (removed)
    await audit(home, { event: "policy.remove", outcome: "info", volume: volumeId }, now);
  return removed;
}

export async function verifyAudit(home: TrusteeHome): Promise<VerifyResult> {
  return verifyChain(await home.store.readAudit(), home.publicKey, await home.store.auditHead());
}
