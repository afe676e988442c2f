// Volume-creation grants (docs/trustee.md §8.4) against a real trustee on
// loopback: a device without a grant registers nothing; with one, its new
// volume gets a policy from the grant's template and a deposit and release
// work at once; names cannot be taken twice; the grant's budget holds; a
// revoked device registers nothing; every outcome is audited.

import { randomBytes } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { deposit, registerVolume, release } from "../../src/agent/trustee-client.js";
import { removeGrant, revokeDevice, setGrant, setPolicy } from "../../src/trustee/admin.js";
import { auditEvents, enrolled, startFixture, type Fixture } from "./helpers.js";

const name = () => "vol_" + randomBytes(12).toString("base64url");

describe("volume-creation grants", () => {
  let f: Fixture;
  beforeEach(async () => {
    f = await startFixture();
  });
  afterEach(async () => {
    await f.cleanup();
  });

  it("without a grant a device registers nothing (no_grant, audited)", async () => {
    const { device } = await enrolled(f, "laptop");
    const v = name();
    await expect(registerVolume(device, v)).rejects.toMatchObject({ rule: "no_grant" });
    expect(await f.home.store.getPolicy(v)).toBeUndefined();
    const last = (await auditEvents(f)).at(-1)!;
    expect(last).toMatchObject({ event: "volume.register.deny", rule: "no_grant" });
  });

  it("a grant's volume gets the template policy; deposit and release work at once", async () => {
    const { device } = await enrolled(f, "laptop");
    const other = await enrolled(f, "other");
    await setGrant(f.home, {
      deviceId: device.profile.deviceId,
      maxVolumes: 5,
      rules: { rate: { n: 10, per: 60 }, agentTtl: 30 },
    });
    const v = name();
    expect(await registerVolume(device, v)).toBe(1);
    expect(await f.home.store.getPolicy(v)).toEqual({
      volumeId: v,
      version: 1,
      members: [device.profile.deviceId],
      createdBy: device.profile.deviceId,
      rate: { n: 10, per: 60 },
      agentTtl: 30,
    });
    const mk = randomBytes(32);
    expect(await deposit(device, v, mk)).toBe(1);
    const r = await release(device, v);
    expect(r.mountKey.equals(mk)).toBe(true);
    expect(r.agentTtl).toBe(30);
    // The name is taken: neither this device nor another takes it again.
    await expect(registerVolume(device, v)).rejects.toMatchObject({ rule: "volume_exists" });
    await expect(registerVolume(other.device, v)).rejects.toMatchObject({ rule: "no_grant" });
    // The admin's later policy keeps who registered it.
    await setPolicy(f.home, { volumeId: v, members: [device.profile.deviceId] });
    expect((await f.home.store.getPolicy(v))!.createdBy).toBe(device.profile.deviceId);
    expect((await auditEvents(f)).map((e) => e.event)).toContain("volume.register");
  });

  it("an admin's policy name cannot be taken over by registration", async () => {
    const { device } = await enrolled(f, "laptop");
    const intruder = await enrolled(f, "intruder");
    await setGrant(f.home, {
      deviceId: intruder.device.profile.deviceId,
      maxVolumes: 5,
      rules: {},
    });
    const v = name();
    await setPolicy(f.home, { volumeId: v, members: [device.profile.deviceId] });
    await expect(registerVolume(intruder.device, v)).rejects.toMatchObject({
      rule: "volume_exists",
    });
    expect((await f.home.store.getPolicy(v))!.members).toEqual([device.profile.deviceId]);
  });

  it("the budget holds, and a withdrawn grant or a revoked device registers nothing", async () => {
    const { device } = await enrolled(f, "laptop");
    const id = device.profile.deviceId;
    await setGrant(f.home, { deviceId: id, maxVolumes: 2, rules: {} });
    await registerVolume(device, name());
    await registerVolume(device, name());
    await expect(registerVolume(device, name())).rejects.toMatchObject({
      rule: "grant_exhausted",
    });
    await setGrant(f.home, { deviceId: id, maxVolumes: 3, rules: {} });
    await registerVolume(device, name());
    expect(await removeGrant(f.home, id)).toBe(true);
    await expect(registerVolume(device, name())).rejects.toMatchObject({ rule: "no_grant" });
    await setGrant(f.home, { deviceId: id, maxVolumes: 9, rules: {} });
    await revokeDevice(f.home, id, "lost", "admin");
    await expect(registerVolume(device, name())).rejects.toMatchObject({
      rule: "device_revoked",
    });
  });

  it("a pending device registers nothing even with a grant", async () => {
    const { device } = await enrolled(f, "pending", { approve: false });
    await setGrant(f.home, { deviceId: device.profile.deviceId, maxVolumes: 1, rules: {} });
    await expect(registerVolume(device, name())).rejects.toMatchObject({
      rule: "device_pending",
    });
  });
});
