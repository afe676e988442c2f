// Leases at the trustee (docs/trustee.md §8.6), against a real server on
// loopback: a release under a lease policy carries its end, capped by the
// policy's and the device's limits; renewals extend it and are audited;
// after a revocation or a removed policy a renewal is refused.

import { randomBytes } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { deposit, release, renewLease } from "../../src/agent/trustee-client.js";
import { removePolicy, revokeDevice } from "../../src/trustee/admin.js";
import { auditEvents, enrolled, policy, startFixture, VOLUME, type Fixture } from "./helpers.js";

describe("leases", () => {
  let f: Fixture;
  beforeEach(async () => {
    f = await startFixture();
  });
  afterEach(async () => {
    await f.cleanup();
  });

  it("a release carries the lease; renewals extend it; a revocation ends them", async () => {
    const { device } = await enrolled(f, "laptop");
    await policy(f, [device], { leaseTtl: 300 });
    await deposit(device, VOLUME, randomBytes(32));
    const before = Date.now();
    const r = await release(device, VOLUME);
    const end = Date.parse(r.leaseExpiresAt!);
    expect(end).toBeGreaterThanOrEqual(before + 299_000);
    expect(end).toBeLessThanOrEqual(Date.now() + 300_000);
    f.clock.offsetMs = 60_000;
    expect(Date.parse(await renewLease(device, VOLUME))).toBeGreaterThan(end);
    const events = await auditEvents(f);
    expect(events.at(-1)).toMatchObject({ event: "lease.renew", outcome: "allow" });
    await revokeDevice(f.home, device.profile.deviceId, "stolen", "admin");
    await expect(renewLease(device, VOLUME)).rejects.toMatchObject({ rule: "device_revoked" });
    expect((await auditEvents(f)).at(-1)).toMatchObject({
      outcome: "deny",
      rule: "device_revoked",
    });
  });

  it("never past the policy's end or the device's; no lease without leaseTtl; a removed policy ends it", async () => {
    const deviceEnd = new Date(Date.now() + 100_000).toISOString();
    const { device } = await enrolled(f, "laptop", { notAfter: deviceEnd });
    const policyEnd = new Date(Date.now() + 50_000).toISOString();
    await policy(f, [device], { leaseTtl: 3600, notAfter: policyEnd });
    await deposit(device, VOLUME, randomBytes(32));
    expect((await release(device, VOLUME)).leaseExpiresAt).toBe(policyEnd);
    await policy(f, [device], { leaseTtl: 3600 });
    expect(await renewLease(device, VOLUME)).toBe(deviceEnd);
    await policy(f, [device]);
    expect((await release(device, VOLUME)).leaseExpiresAt).toBeUndefined();
    await expect(renewLease(device, VOLUME)).rejects.toMatchObject({ rule: "no_lease" });
    await policy(f, [device], { leaseTtl: 60 });
    await removePolicy(f.home, VOLUME);
    await expect(renewLease(device, VOLUME)).rejects.toMatchObject({ rule: "no_policy" });
  });
});
