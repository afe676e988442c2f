// Every refusal the issue lists, against a real trustee on loopback: each
// gets its own stable name in a problem document, and each is audited.

import { randomBytes } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadDevice, setTrustee } from "../../src/agent/device.js";
import {
  TrusteeConnection,
  TrusteeRefusal,
  TrusteeUnavailable,
  connectionFor,
  deposit,
  deviceStatus,
  release,
  type SentRequest,
} from "../../src/agent/trustee-client.js";
import { createInvitation, revokeDevice } from "../../src/trustee/admin.js";
import { signJws } from "../../src/trustee/jws.js";
import { decodeInvitation, PATHS, TYP } from "../../src/trustee/protocol.js";
import {
  auditEvents,
  enrolled,
  newDevice,
  policy,
  startFixture,
  VOLUME,
  type Fixture,
} from "./helpers.js";

async function refusal(p: Promise<unknown>): Promise<TrusteeRefusal> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TrusteeRefusal);
  return err as TrusteeRefusal;
}

async function unavailable(p: Promise<unknown>): Promise<TrusteeUnavailable> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TrusteeUnavailable);
  return err as TrusteeUnavailable;
}

describe("trustee refusals", () => {
  let f: Fixture;
  beforeEach(async () => {
    f = await startFixture();
  });
  afterEach(async () => {
    await f.cleanup();
  });

  async function expectAudited(rule: string, device?: string) {
    const events = await auditEvents(f);
    const hit = events.find(
      (e) =>
        e.outcome === "deny" && e.rule === rule && (device === undefined || e.device === device),
    );
    expect(hit, `audit record for ${rule}`).toBeDefined();
  }

  async function member(name: string, extra: Parameters<typeof policy>[2] = {}) {
    const { device } = await enrolled(f, name);
    await policy(f, [device], extra);
    await deposit(device, VOLUME, randomBytes(32));
    return device;
  }

  it("unenrolled device: unknown_device", async () => {
    const d = await newDevice(f, "stranger");
    const { invitation } = await createInvitation(f.home, "stranger", 600);
    await setTrustee(d.dir, decodeInvitation(invitation)!);
    const e = await refusal(deviceStatus(await loadDevice(d.dir)));
    expect(e.rule).toBe("unknown_device");
    expect(e.status).toBe(401);
    await expectAudited("unknown_device");
  });

  it("pending device: device_pending", async () => {
    const { device } = await enrolled(f, "pending", { approve: false });
    const e = await refusal(release(device, VOLUME));
    expect(e.rule).toBe("device_pending");
    await expectAudited("device_pending", device.profile.deviceId);
  });

  it("revoked device: refused on the next request and on the next connection", async () => {
    const device = await member("lost");
    const conn = connectionFor(device);
    try {
      await release(device, VOLUME, { conn });
      await revokeDevice(f.home, device.profile.deviceId, "lost", "admin");
      const same = await refusal(release(device, VOLUME, { conn }));
      expect(same.rule).toBe("device_revoked");
      conn.reconnect();
      const fresh = await refusal(release(device, VOLUME, { conn }));
      expect(fresh.rule).toBe("device_revoked");
    } finally {
      conn.close();
    }
    // Its deposits are gone with it.
    expect(await f.home.store.getDeposit(VOLUME, device.profile.deviceId)).toBeUndefined();
    await expectAudited("device_revoked", device.profile.deviceId);
  });

  it("self-revoked device is refused afterwards", async () => {
    const device = await member("panic");
    const { selfRevoke } = await import("../../src/agent/trustee-client.js");
    await selfRevoke(device);
    expect((await refusal(release(device, VOLUME))).rule).toBe("device_revoked");
  });

  it("expired device: device_expired", async () => {
    const { device } = await enrolled(f, "temp", {
      notAfter: new Date(Date.now() + 1500).toISOString(),
    });
    await policy(f, [device]);
    await deposit(device, VOLUME, randomBytes(32));
    await new Promise((r) => setTimeout(r, 1700));
    expect((await refusal(release(device, VOLUME))).rule).toBe("device_expired");
    await expectAudited("device_expired", device.profile.deviceId);
  });

  it("outside the time window: outside_time_window; inside: released", async () => {
    const device = await member("office");
    const h = new Date().getUTCHours();
    const hh = (n: number) => String(n % 24).padStart(2, "0") + ":00";
    const all = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] as const;
    await policy(f, [device], {
      windows: [{ days: [...all], from: hh(h + 2), to: hh(h + 3), tz: "UTC" }],
    });
    expect((await refusal(release(device, VOLUME))).rule).toBe("outside_time_window");
    await expectAudited("outside_time_window", device.profile.deviceId);
    // The same hour expressed in another zone (Asia/Kolkata is UTC+05:30, no DST) lets it through.
    const local = new Intl.DateTimeFormat("en-US", {
      timeZone: "Asia/Kolkata",
      hour: "2-digit",
      hourCycle: "h23",
    }).format(new Date());
    await policy(f, [device], {
      windows: [
        {
          days: [...all],
          from: `${local}:00`,
          to: hh(Number(local) + 1), // 23:00-00:00 wraps past midnight
          tz: "Asia/Kolkata",
        },
      ],
    });
    expect((await release(device, VOLUME)).mountKey.length).toBe(32);
  });

  it("wrong source range: source_address; right range: released", async () => {
    const device = await member("net");
    await policy(f, [device], { sourceCidrs: ["10.0.0.0/8", "2001:db8::/32"] });
    expect((await refusal(release(device, VOLUME))).rule).toBe("source_address");
    await expectAudited("source_address", device.profile.deviceId);
    await policy(f, [device], { sourceCidrs: ["10.0.0.0/8", "127.0.0.0/8"] });
    expect((await release(device, VOLUME)).mountKey.length).toBe(32);
  });

  it("over the rate limit: rate_limited (429)", async () => {
    const device = await member("busy", { rate: { n: 2, per: 3600 } });
    await release(device, VOLUME);
    await release(device, VOLUME);
    const e = await refusal(release(device, VOLUME));
    expect(e.rule).toBe("rate_limited");
    expect(e.status).toBe(429);
    await expectAudited("rate_limited", device.profile.deviceId);
  });

  it("replayed request: replay on the same connection, channel_binding on a new one", async () => {
    const device = await member("replay");
    const conn = connectionFor(device);
    let captured: SentRequest | undefined;
    conn.onSent = (s) => (captured ??= s);
    try {
      await release(device, VOLUME, { conn });
      const again = () => conn.send(PATHS.release(VOLUME), async () => captured!);
      expect((await refusal(again())).rule).toBe("replay");
      conn.reconnect();
      expect((await refusal(again())).rule).toBe("channel_binding");
    } finally {
      conn.close();
    }
    await expectAudited("replay", device.profile.deviceId);
    await expectAudited("channel_binding", device.profile.deviceId);
  });

  it("stale timestamp: stale_timestamp", async () => {
    const device = await member("clock");
    const conn = connectionFor(device);
    try {
      const e = await refusal(
        conn.send(PATHS.self, async (tlsx) => {
          const nonce = randomBytes(16).toString("base64url");
          const payload = {
            aud: device.profile.trustee!.tid,
            htm: "POST",
            htu: PATHS.self,
            ts: new Date(Date.now() - 5 * 60_000).toISOString(),
            nonce,
            tlsx,
            body: {},
          };
          return {
            body: JSON.stringify(
              await signJws(payload, TYP.request, device.profile.deviceId, device.sig),
            ),
            nonce,
          };
        }),
      );
      expect(e.rule).toBe("stale_timestamp");
    } finally {
      conn.close();
    }
    await expectAudited("stale_timestamp", device.profile.deviceId);
  });

  it("tampered body: bad_signature", async () => {
    const device = await member("tamper");
    const conn = connectionFor(device);
    try {
      const e = await refusal(
        conn.send(PATHS.self, async (tlsx) => {
          const nonce = randomBytes(16).toString("base64url");
          const payload = {
            aud: device.profile.trustee!.tid,
            htm: "POST",
            htu: PATHS.self,
            ts: new Date().toISOString(),
            nonce,
            tlsx,
            body: {},
          };
          const jws = await signJws(payload, TYP.request, device.profile.deviceId, device.sig);
          const changed = Buffer.from(
            JSON.stringify({ ...payload, body: { admin: true } }),
          ).toString("base64url");
          return { body: JSON.stringify({ ...jws, payload: changed }), nonce };
        }),
      );
      expect(e.rule).toBe("bad_signature");
    } finally {
      conn.close();
    }
    await expectAudited("bad_signature", device.profile.deviceId);
  });

  it("wrong trustee pin: the client stops before sending anything", async () => {
    const device = await member("pinned");
    const before = f.logs.filter((l) => l.includes('"msg":"request"')).length;
    const trustee = { ...device.profile.trustee!, pin: Buffer.alloc(32, 7).toString("base64url") };
    const conn = new TrusteeConnection(trustee, {
      deviceId: device.profile.deviceId,
      sig: device.sig,
      certificate: device.certificate,
    });
    try {
      const e = await unavailable(conn.request(PATHS.self, {}));
      expect(e.reason).toBe("wrong_pin");
    } finally {
      conn.close();
    }
    await new Promise((r) => setTimeout(r, 100));
    expect(f.logs.filter((l) => l.includes('"msg":"request"')).length).toBe(before);
  });

  it("TLS 1.2 client: refused in the handshake, audited as tls.refused", async () => {
    const device = await member("old");
    const conn = connectionFor(device, { minVersion: "TLSv1.2", maxVersion: "TLSv1.2" });
    try {
      const e = await unavailable(conn.request(PATHS.self, {}));
      expect(e.reason).toBe("unreachable");
    } finally {
      conn.close();
    }
    await new Promise((r) => setTimeout(r, 100));
    const events = await auditEvents(f);
    expect(events.some((e) => e.event === "tls.refused" && e.outcome === "deny")).toBe(true);
  });

  it("not a member / no policy / no deposit are refused by name", async () => {
    const { device: a } = await enrolled(f, "a");
    const { device: b } = await enrolled(f, "b");
    expect((await refusal(release(a, VOLUME))).rule).toBe("no_policy");
    await policy(f, [a]);
    expect((await refusal(release(b, VOLUME))).rule).toBe("not_member");
    expect((await refusal(release(a, VOLUME))).rule).toBe("no_deposit");
  });
});
