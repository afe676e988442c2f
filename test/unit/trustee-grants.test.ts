import { describe, expect, it } from "vitest";
import {
  evaluateRegistration,
  grantProblem,
  policyFromGrant,
  type VolumeGrant,
} from "../../src/trustee/grants.js";
import type { DeviceStanding } from "../../src/trustee/policy.js";

const DEV = "d".repeat(43);
const active: DeviceStanding = { id: DEV, state: "active", approvalValid: true };
const now = new Date("2026-12-02T12:00:00Z");
const grant: VolumeGrant = {
  deviceId: DEV,
  maxVolumes: 2,
  rules: { windows: [{ days: ["mon"], from: "08:00", to: "09:00", tz: "UTC" }], agentTtl: 0 },
};

describe("volume-creation grants (pure)", () => {
  it("makes a version-1 policy with the device as its only member and the grant's rules", () => {
    expect(policyFromGrant(grant, "vol_0123456789abcdef")).toEqual({
      volumeId: "vol_0123456789abcdef",
      version: 1,
      members: [DEV],
      createdBy: DEV,
      windows: grant.rules.windows,
      agentTtl: 0,
    });
  });

  it("checks grants like policies", () => {
    expect(grantProblem(grant)).toBeUndefined();
    expect(grantProblem({ ...grant, maxVolumes: 0 })).toMatch(/maxVolumes/);
    expect(grantProblem({ ...grant, rules: { agentTtl: -1 } })).toMatch(/agent TTL/);
    expect(
      grantProblem({
        ...grant,
        rules: { windows: [{ days: ["mon"], from: "8", to: "9", tz: "UTC" }] },
      }),
    ).toMatch(/window/);
    expect(grantProblem({ ...grant, approvals: 2 } as unknown as VolumeGrant)).toMatch(/approvals/);
  });

  it("refuses in order: standing, grant, budget", () => {
    expect(evaluateRegistration(active, grant, 1, now)).toEqual({ allow: true });
    expect(evaluateRegistration(active, grant, 2, now)).toMatchObject({ rule: "grant_exhausted" });
    expect(evaluateRegistration(active, undefined, 0, now)).toMatchObject({ rule: "no_grant" });
    expect(evaluateRegistration({ ...active, state: "revoked" }, grant, 0, now)).toMatchObject({
      rule: "device_revoked",
    });
    expect(
      evaluateRegistration({ ...active, notAfter: "2026-01-01T00:00:00Z" }, grant, 0, now),
    ).toMatchObject({ rule: "device_expired" });
  });
});
