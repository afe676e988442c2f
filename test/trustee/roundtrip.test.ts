import { randomBytes } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { deposit, release } from "../../src/agent/trustee-client.js";
import { verifyAudit } from "../../src/trustee/admin.js";
import { enrolled, policy, startFixture, VOLUME, type Fixture } from "./helpers.js";

describe("trustee round trip (real server on loopback)", () => {
  let f: Fixture;
  beforeEach(async () => {
    f = await startFixture();
  });
  afterEach(async () => {
    await f.cleanup();
  });

  it("enroll → approve → deposit → release for two devices", async () => {
    const a = await enrolled(f, "laptop");
    const b = await enrolled(f, "server");
    expect(a.sas).toMatch(/^[A-Z2-9]{4}(-[A-Z2-9]{4}){3}$/);
    await policy(f, [a.device, b.device]);
    const mk = randomBytes(32);
    expect(await deposit(a.device, VOLUME, mk)).toBe(2);
    const ra = await release(a.device, VOLUME);
    expect(ra.mountKey.equals(mk)).toBe(true);
    const rb = await release(b.device, VOLUME);
    expect(rb.mountKey.equals(mk)).toBe(true);
    expect(rb.keyVersion).toBe(1);
    const v = await verifyAudit(f.home);
    expect(v.problem).toBeUndefined();
    expect(v.records).toBeGreaterThan(5);
  });
});
