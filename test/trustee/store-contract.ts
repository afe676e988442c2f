// What every TrusteeStore must do (src/trustee/store.ts), written once so
// that a second backend (PostgreSQL, for several trustee nodes) runs the same
// checks: call describeTrusteeStore with a function that opens a fresh store.

import { generateKeyPairSync } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildRecord } from "../../src/trustee/audit.js";
import type { VolumePolicy } from "../../src/trustee/policy.js";
import type { DepositRecord, DeviceRecord, TrusteeStore } from "../../src/trustee/store.js";

export interface StoreUnderTest {
  readonly store: TrusteeStore;
  cleanup(): Promise<void>;
}

const T0 = new Date("2026-12-02T10:00:00Z");
const later = (s: number) => new Date(T0.getTime() + s * 1000);

function device(id: string, spki = `spki-${id}`): DeviceRecord {
  return {
    id: id.padEnd(43, "x"),
    name: id,
    state: "pending",
    sigJwk: "{}",
    kemJwk: "{}",
    kemThumbprint: `kem-${id}`,
    spki,
    approval: null,
    createdAt: T0.toISOString(),
    approvedAt: null,
    revokedAt: null,
    revokeReason: null,
  };
}

function depositFor(volumeId: string, keyVersion: number, recipient: string): DepositRecord {
  return {
    volumeId,
    keyVersion,
    recipient,
    hdr: `hdr-${keyVersion}-${recipient}`,
    enc: "enc",
    ct: "ct",
    createdBy: recipient,
    createdAt: T0.toISOString(),
  };
}

export function describeTrusteeStore(name: string, open: () => Promise<StoreUnderTest>): void {
  describe(`TrusteeStore contract: ${name}`, () => {
    let s: StoreUnderTest;
    let store: TrusteeStore;
    beforeEach(async () => {
      s = await open();
      store = s.store;
    });
    afterEach(async () => {
      await s.cleanup();
    });

    it("invitations are single-use and expire", async () => {
      await store.addInvitation({
        hash: "h1",
        name: "a",
        createdAt: T0.toISOString(),
        expiresAt: later(60).toISOString(),
      });
      await store.addInvitation({
        hash: "h2",
        name: "b",
        createdAt: T0.toISOString(),
        expiresAt: later(60).toISOString(),
      });
      expect(await store.enrollDevice("nope", T0, device("a"))).toBe("invitation_invalid");
      expect(await store.enrollDevice("h2", later(61), device("b"))).toBe("invitation_invalid");
      expect(await store.enrollDevice("h1", T0, device("a"))).toBe("ok");
      expect(await store.enrollDevice("h1", T0, device("c"))).toBe("invitation_invalid");
      // The same key (spki) cannot enroll twice under another ID.
      expect(await store.enrollDevice("h2", T0, device("d", "spki-a"))).toBe("already_enrolled");
      expect((await store.getDeviceBySpki("spki-a"))!.name).toBe("a");
      expect((await store.listDevices()).map((d) => d.name)).toEqual(["a"]);
    });

    it("approval only from pending; revocation deletes the device's deposits", async () => {
      await store.addInvitation({
        hash: "h",
        name: "a",
        createdAt: T0.toISOString(),
        expiresAt: later(60).toISOString(),
      });
      const d = device("a");
      await store.enrollDevice("h", T0, d);
      expect(await store.approveDevice(d.id, "approval", T0)).toBe(true);
      expect(await store.approveDevice(d.id, "again", T0)).toBe(false);
      expect((await store.getDevice(d.id))!).toMatchObject({
        state: "active",
        approval: "approval",
      });
      await store.putDeposits("vol_AAAAAAAAAAAAAAAA", 1, [
        depositFor("vol_AAAAAAAAAAAAAAAA", 1, d.id),
      ]);
      expect(await store.revokeDevice(d.id, "lost", later(1))).toBe(true);
      expect(await store.revokeDevice(d.id, "lost", later(1))).toBe(false);
      expect(await store.getDeposit("vol_AAAAAAAAAAAAAAAA", d.id)).toBeUndefined();
      expect((await store.getDevice(d.id))!).toMatchObject({
        state: "revoked",
        revokeReason: "lost",
      });
    });

    it("policies: set replaces, remove deletes, register never takes a name and keeps to the budget", async () => {
      const p: VolumePolicy = { volumeId: "vol_PPPPPPPPPPPPPPPP", version: 1, members: ["m"] };
      await store.setPolicy(p, T0);
      await store.setPolicy({ ...p, version: 2, members: ["m", "n"] }, T0);
      expect(await store.getPolicy(p.volumeId)).toEqual({ ...p, version: 2, members: ["m", "n"] });
      const mine = (v: string): VolumePolicy => ({
        volumeId: v,
        version: 1,
        members: ["dev"],
        createdBy: "dev",
      });
      expect(await store.registerVolume(mine(p.volumeId), 5, T0)).toBe("volume_exists");
      // Racing registrations under a budget of 2: exactly two win.
      const outcomes = await Promise.all(
        ["vol_R1RRRRRRRRRRRRRR", "vol_R2RRRRRRRRRRRRRR", "vol_R3RRRRRRRRRRRRRR"].map((v) =>
          store.registerVolume(mine(v), 2, T0),
        ),
      );
      expect(outcomes.filter((o) => o === "ok")).toHaveLength(2);
      expect(outcomes.filter((o) => o === "grant_exhausted")).toHaveLength(1);
      expect(await store.countRegistered("dev")).toBe(2);
      expect(await store.removePolicy(p.volumeId)).toBe(true);
      expect(await store.removePolicy(p.volumeId)).toBe(false);
      expect(await store.getPolicy(p.volumeId)).toBeUndefined();
    });

    it("grants: set replaces, get, remove", async () => {
      const g = { deviceId: "dev", maxVolumes: 3, rules: { agentTtl: 0 } };
      expect(await store.getGrant("dev")).toBeUndefined();
      await store.setGrant(g, T0);
      await store.setGrant({ ...g, maxVolumes: 4 }, T0);
      expect(await store.getGrant("dev")).toEqual({ ...g, maxVolumes: 4 });
      expect(await store.removeGrant("dev")).toBe(true);
      expect(await store.removeGrant("dev")).toBe(false);
    });

    it("deposits: a version's set is replaced whole; without a version the highest is found", async () => {
      const v = "vol_DDDDDDDDDDDDDDDD";
      await store.putDeposits(v, 1, [depositFor(v, 1, "a"), depositFor(v, 1, "b")]);
      await store.putDeposits(v, 2, [depositFor(v, 2, "a")]);
      expect((await store.getDeposit(v, "a"))!.keyVersion).toBe(2);
      expect((await store.getDeposit(v, "b"))!.keyVersion).toBe(1);
      await store.putDeposits(v, 1, [depositFor(v, 1, "a")]);
      expect(await store.getDeposit(v, "b", 1)).toBeUndefined();
      expect((await store.getDeposit(v, "a", 1))!.hdr).toBe("hdr-1-a");
    });

    it("nonces: seen once per device until they expire; release history by time", async () => {
      const t = T0.getTime();
      expect(await store.rememberNonce("a", "n1", t + 1000, t)).toBe(true);
      expect(await store.rememberNonce("a", "n1", t + 1000, t)).toBe(false);
      expect(await store.rememberNonce("b", "n1", t + 1000, t)).toBe(true);
      expect(await store.rememberNonce("a", "n1", t + 3000, t + 2000)).toBe(true); // expired, pruned
      await store.recordRelease("a", "v", t);
      await store.recordRelease("a", "v", t + 10);
      await store.recordRelease("a", "w", t + 10);
      expect((await store.recentReleases("a", "v", t)).sort()).toEqual([t + 10]);
      expect((await store.recentReleases("a", "v", t - 1)).length).toBe(2);
    });

    it("audit: appends chain on the head, are read in order, and the kept head follows", async () => {
      const { privateKey } = generateKeyPairSync("ed25519");
      expect(await store.auditHead()).toBeUndefined();
      const records = [];
      for (let i = 0; i < 3; i++)
        records.push(
          await store.appendAudit((head) =>
            buildRecord(head, { event: "test", outcome: "info" }, T0, privateKey),
          ),
        );
      expect(records.map((r) => r.seq)).toEqual([1, 2, 3]);
      expect(records[1]!.prev).toBe(records[0]!.hash);
      expect((await store.readAudit()).map((r) => r.rowSeq)).toEqual([1, 2, 3]);
      expect(await store.auditHead()).toEqual({ seq: 3, hash: records[2]!.hash });
    });
  });
}
