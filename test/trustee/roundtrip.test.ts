import Database from "better-sqlite3";
import { randomBytes } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadDevice } from "../../src/agent/device.js";
import {
  connectionFor,
  deposit,
  release,
  sealDeposit,
  TrusteeRefusal,
  TrusteeUnavailable,
} from "../../src/agent/trustee-client.js";
import { verifyAudit } from "../../src/trustee/admin.js";
import { x25519Raw } from "../../src/trustee/identity.js";
import { PATHS } from "../../src/trustee/protocol.js";
import { enrolled, newDevice, policy, startFixture, VOLUME, type Fixture } from "./helpers.js";

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

describe("a trustee that moves deposits around gains nothing", () => {
  let f: Fixture;
  beforeEach(async () => {
    f = await startFixture();
  });
  afterEach(async () => {
    await f.cleanup();
  });

  it("a deposit moved to another volume, version or device does not open", async () => {
    const a = await enrolled(f, "a");
    const b = await enrolled(f, "b");
    const OTHER = "vol_BBBBBBBBBBBBBBBBBBBB";
    await policy(f, [a.device, b.device]);
    await policy(f, [a.device, b.device], {}, OTHER);
    await deposit(a.device, VOLUME, randomBytes(32), { members: [a.device.profile.deviceId] });
    const db = new Database(join(f.dir, "state.db"));
    const move = (sql: string, ...args: unknown[]) => db.prepare(sql).run(...args);
    try {
      // To another volume.
      move("UPDATE deposits SET volume_id = ?", OTHER);
      expect(await failure(release(a.device, OTHER))).toBe("bad_response");
      // To another key version.
      move("UPDATE deposits SET volume_id = ?, key_version = 2", VOLUME);
      expect(await failure(release(a.device, VOLUME, { keyVersion: 2 }))).toBe("bad_response");
      // To another device.
      move("UPDATE deposits SET key_version = 1, recipient = ?", b.device.profile.deviceId);
      expect(await failure(release(b.device, VOLUME))).toBe("bad_response");
    } finally {
      db.close();
    }
  });

  it("the trustee refuses a deposit whose header names another volume or recipient", async () => {
    const a = await enrolled(f, "a");
    const b = await enrolled(f, "b");
    await policy(f, [a.device]);
    const conn = connectionFor(a.device);
    try {
      const member = (d: typeof a.device) => ({
        deviceId: d.profile.deviceId,
        name: d.profile.name,
        kemPublic: x25519Raw(d.kem).publicRaw,
        kemThumbprint: d.profile.kemThumbprint,
      });
      const elsewhere = await sealDeposit(
        "vol_CCCCCCCCCCCCCCCCCCCC",
        1,
        member(a.device),
        a.device.profile.deviceId,
        randomBytes(32),
      );
      const toStranger = await sealDeposit(
        VOLUME,
        1,
        member(b.device),
        a.device.profile.deviceId,
        randomBytes(32),
      );
      for (const d of [elsewhere, toStranger]) {
        const e = await conn
          .request(PATHS.deposits(VOLUME), { key_version: 1, deposits: [d] })
          .catch((x: unknown) => x);
        expect(e).toBeInstanceOf(TrusteeRefusal);
        expect((e as TrusteeRefusal).rule).toBe("deposit_invalid");
      }
    } finally {
      conn.close();
    }
  });
});

describe("device keys", () => {
  it("are 0600 and, when protected, open only with the passphrase", async () => {
    const f = await startFixture();
    try {
      const pass = Buffer.from("correct horse battery staple");
      const d = await newDevice(f, "sealed", Buffer.from(pass));
      for (const name of ["sign.key", "kem.key", "device.json", "device.crt"])
        expect((await stat(join(d.dir, name))).mode & 0o777).toBe(0o600);
      expect((await stat(d.dir)).mode & 0o777).toBe(0o700);
      const text = await readFile(join(d.dir, "sign.key"), "utf8");
      expect(text).not.toContain("pkcs8");
      await expect(loadDevice(d.dir)).rejects.toThrow(/passphrase-protected/);
      await expect(loadDevice(d.dir, Buffer.from("wrong"))).rejects.toThrow(/wrong passphrase/);
      expect((await loadDevice(d.dir, pass)).profile.deviceId).toBe(d.profile.deviceId);
    } finally {
      await f.cleanup();
    }
  });
});

async function failure(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(TrusteeUnavailable);
  return (e as TrusteeUnavailable).reason;
}
