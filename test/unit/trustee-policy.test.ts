import { describe, expect, it } from "vitest";
import {
  addressInRanges,
  evaluateRelease,
  insideWindow,
  parseRate,
  parseWindow,
  type DeviceStanding,
  type VolumePolicy,
} from "../../src/trustee/policy.js";

const device: DeviceStanding = { id: "dev", state: "active", approvalValid: true };
const base: VolumePolicy = { volumeId: "volume-AAAAAAAAAAAA", version: 1, members: ["dev"] };
const at = (iso: string) => new Date(iso);
const decide = (
  p: Partial<VolumePolicy>,
  extra: Partial<Parameters<typeof evaluateRelease>[0]> = {},
) =>
  evaluateRelease({
    device,
    policy: { ...base, ...p },
    now: at("2026-03-29T10:00:00Z"),
    sourceAddress: "192.0.2.7",
    recentReleases: [],
    ...extra,
  });
const rule = (d: ReturnType<typeof evaluateRelease>) => (d.allow ? "allow" : d.rule);

describe("release policy (pure)", () => {
  it("default deny: no policy, not a member, bad standing", () => {
    expect(
      rule(
        evaluateRelease({
          device,
          policy: undefined,
          now: new Date(),
          sourceAddress: "::1",
          recentReleases: [],
        }),
      ),
    ).toBe("no_policy");
    expect(rule(decide({ members: ["other"] }))).toBe("not_member");
    expect(rule(decide({}, { device: { ...device, state: "pending" } }))).toBe("device_pending");
    expect(rule(decide({}, { device: { ...device, state: "revoked" } }))).toBe("device_revoked");
    expect(rule(decide({}, { device: { ...device, approvalValid: false } }))).toBe(
      "device_approval_invalid",
    );
    expect(rule(decide({}, { device: { ...device, notAfter: "2026-03-29T10:00:00Z" } }))).toBe(
      "device_expired",
    );
    expect(rule(decide({}))).toBe("allow");
  });

  it("validity period edges: not_before inclusive, not_after exclusive", () => {
    expect(rule(decide({ notBefore: "2026-03-29T10:00:00Z" }))).toBe("allow");
    expect(rule(decide({ notBefore: "2026-03-29T10:00:01Z" }))).toBe("volume_not_yet_valid");
    expect(rule(decide({ notAfter: "2026-03-29T10:00:00Z" }))).toBe("volume_expired");
    expect(rule(decide({ notAfter: "2026-03-29T10:00:01Z" }))).toBe("allow");
  });

  it("time windows in IANA zones, across the DST change in Berlin", () => {
    const w = parseWindow("mon-fri 07:00-20:00 Europe/Berlin")!;
    expect(w.days).toEqual(["mon", "tue", "wed", "thu", "fri"]);
    // Friday 2026-03-27: CET (UTC+1). 06:30Z is 07:30 local.
    expect(insideWindow(w, at("2026-03-27T06:30:00Z"))).toBe(true);
    expect(insideWindow(w, at("2026-03-27T05:30:00Z"))).toBe(false);
    // Monday 2026-03-30: CEST (UTC+2). 05:30Z is 07:30 local, 18:30Z is 20:30.
    expect(insideWindow(w, at("2026-03-30T05:30:00Z"))).toBe(true);
    expect(insideWindow(w, at("2026-03-30T18:30:00Z"))).toBe(false);
    // Sunday is not listed.
    expect(insideWindow(w, at("2026-03-29T10:00:00Z"))).toBe(false);
    expect(rule(decide({ windows: [w] }))).toBe("outside_time_window");
  });

  it("a window past midnight belongs to the day it starts", () => {
    const w = parseWindow("fri 22:00-02:00 UTC")!;
    expect(insideWindow(w, at("2026-03-27T23:00:00Z"))).toBe(true); // Fri 23:00
    expect(insideWindow(w, at("2026-03-28T01:00:00Z"))).toBe(true); // Sat 01:00
    expect(insideWindow(w, at("2026-03-28T03:00:00Z"))).toBe(false);
    expect(insideWindow(w, at("2026-03-28T23:00:00Z"))).toBe(false); // Sat 23:00
    expect(parseWindow("mon 07:00-20:00 Mars/Olympus")).toBeUndefined();
    expect(parseWindow("fri-mon 00:00-23:59 UTC")!.days).toEqual(["sun", "mon", "fri", "sat"]);
  });

  it("source ranges, IPv4 and IPv6, IPv4-mapped peers count as IPv4", () => {
    const ranges = ["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"];
    expect(addressInRanges("10.1.2.3", ranges)).toBe(true);
    expect(addressInRanges("::ffff:192.0.2.9", ranges)).toBe(true);
    expect(addressInRanges("11.0.0.1", ranges)).toBe(false);
    expect(addressInRanges("2001:db8:1::5", ranges)).toBe(true);
    expect(addressInRanges("2001:db9::5", ranges)).toBe(false);
    expect(addressInRanges("not an address", ranges)).toBe(false);
    expect(rule(decide({ sourceCidrs: ["198.51.100.0/24"] }))).toBe("source_address");
    expect(rule(decide({ sourceCidrs: ["192.0.2.0/24"] }))).toBe("allow");
  });

  it("rate limits count releases inside the sliding window", () => {
    const now = at("2026-03-29T10:00:00Z").getTime();
    const rate = parseRate("2/3600")!;
    expect(rule(decide({ rate }, { recentReleases: [now - 10_000] }))).toBe("allow");
    expect(rule(decide({ rate }, { recentReleases: [now - 10_000, now - 20_000] }))).toBe(
      "rate_limited",
    );
    expect(rule(decide({ rate }, { recentReleases: [now - 3_600_001, now - 20_000] }))).toBe(
      "allow",
    );
    expect(parseRate("0/10")).toBeUndefined();
  });

  it("rules apply in the documented order: the first failure names the refusal", () => {
    const d = decide({ notAfter: "2026-01-01T00:00:00Z", sourceCidrs: ["10.0.0.0/8"] });
    expect(rule(d)).toBe("volume_expired");
  });
});
