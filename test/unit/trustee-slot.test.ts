// The trustee key slot (docs/format.md §4.3, §5.1; docs/trustee.md §12).
//
// The known answers below were computed by a second implementation written
// from docs/format.md: Python's hmac/hashlib (HKDF as RFC 5869 spells it)
// and the `cryptography` package's AES-GCM. They live here rather than in
// test/fixtures/vectors.json because scripts/make-fixture.mjs, which writes
// that file, is being changed on another branch; moving them there later
// changes nothing but their place.

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  canonicalJson,
  openSlot,
  parseConfig,
  serializeConfig,
  type KeySlot,
  type TrusteeSlotInfo,
  type VolumeConfig,
} from "../../src/format/config.js";
import { deriveKek } from "../../src/keys/kek.js";
import { CONFIG_FILE, initVolume, unlockWithSecret } from "../../src/volume/volume.js";

const hex = (h: string) => Buffer.from(h, "hex");
const range = (from: number, n: number) =>
  Buffer.from(Array.from({ length: n }, (_, i) => from + i));

const VECTOR = {
  salt: "1112131415161718191a1b1c1d1e1f20",
  secret: "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f",
  kek: "73d7604449790693d8e6824d7551f3a5a16778779b73db0d9e65fe42c3cefb5c",
  volumeId: "AQIDBAUGBwgJCgsMDQ4PEA",
  slotKey: "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeffe0e1e2e3e4e5e6e7e8e9eaebecedeeef",
  aad: '{"id":3,"kind":"trustee","purpose":"cryptmount v1 key slot","salt":"ERITFBUWFxgZGhscHR4fIA","volumeId":"AQIDBAUGBwgJCgsMDQ4PEA"}',
  /** nonce a0…ab, then the GCM ciphertext and tag of the slot key. */
  wrapped: "oKGio6SlpqeoqaqrsvAQa-TFy17Q0C3XbpJyI_nsCXOX3DZlYluheG9zN1WJoYnHND_XdtOqvVpD_39D",
};

const INFO: TrusteeSlotInfo = {
  url: "https://trustee.example:8443",
  tid: "A".repeat(43),
  pin: "B".repeat(43),
  aid: "C".repeat(43),
  volume: "photos-laptop-0001",
  key_version: 1,
  members: [{ id: "D".repeat(43), name: "laptop" }],
};

const vectorSlot: KeySlot = {
  id: 3,
  kind: "trustee",
  label: "trustee",
  salt: hex(VECTOR.salt).toString("base64url"),
  wrapped: VECTOR.wrapped,
  trustee: INFO,
};

describe("trustee slot KEK and slot (known answers)", () => {
  it("KEK = HKDF-SHA256(T, salt, 'cryptmount v1 trustee slot')", async () => {
    const kek = await deriveKek(vectorSlot, { kind: "trustee", bytes: hex(VECTOR.secret) });
    expect(kek?.toString("hex")).toBe(VECTOR.kek);
  });

  it("only a 32-byte secret is a trustee secret", async () => {
    expect(
      await deriveKek(vectorSlot, { kind: "trustee", bytes: hex(VECTOR.secret).subarray(1) }),
    ).toBeUndefined();
    expect(
      await deriveKek(vectorSlot, { kind: "recovery", bytes: hex(VECTOR.secret) }),
    ).toBeUndefined();
  });

  it("the slot opens to the slot key; its AAD is the common one, without the trustee member", () => {
    expect(openSlot(VECTOR.volumeId, vectorSlot, hex(VECTOR.kek))).toEqual(hex(VECTOR.slotKey));
    expect(
      canonicalJson({
        purpose: "cryptmount v1 key slot",
        volumeId: VECTOR.volumeId,
        id: 3,
        kind: "trustee",
        salt: vectorSlot.salt,
      }),
    ).toBe(VECTOR.aad);
    // The trustee member is covered by the config MAC, not the AAD: moving it opens the slot still.
    const moved = { ...vectorSlot, trustee: { ...INFO, url: "https://elsewhere.example" } };
    expect(openSlot(VECTOR.volumeId, moved, hex(VECTOR.kek))).toEqual(hex(VECTOR.slotKey));
    expect(openSlot(VECTOR.volumeId, { ...vectorSlot, id: 4 }, hex(VECTOR.kek))).toBeUndefined();
    expect(openSlot(VECTOR.volumeId, vectorSlot, range(0, 32))).toBeUndefined();
  });
});

describe("a volume with a trustee slot", () => {
  let dir: string;
  let lower: string;
  let config: VolumeConfig;
  const secret = range(0x60, 32);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "cm-trustee-slot-"));
    lower = join(dir, "lower");
    ({ config } = await initVolume(lower, {
      slots: [
        {
          secret: { kind: "trustee", bytes: Buffer.from(secret) },
          label: "trustee",
          trustee: INFO,
        },
      ],
      recovery: false,
    }));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("stores the trustee member and unlocks with T", async () => {
    const onDisk = parseConfig(await readFile(join(lower, CONFIG_FILE), "utf8"));
    expect(onDisk.slots).toHaveLength(1);
    expect(onDisk.slots[0]).toMatchObject({ kind: "trustee", trustee: INFO });
    const unlocked = await unlockWithSecret(lower, onDisk, {
      kind: "trustee",
      bytes: Buffer.from(secret),
    });
    expect(unlocked.slot.kind).toBe("trustee");
    unlocked.close();
    await expect(
      unlockWithSecret(lower, onDisk, { kind: "trustee", bytes: range(0, 32) }),
    ).rejects.toMatchObject({ exitCode: 3 });
  });

  it("a changed trustee member fails the config MAC (CONFIG_AUTH), after the slot opened", async () => {
    const tampered = {
      ...config,
      slots: config.slots.map((s) => ({
        ...s,
        trustee: { ...s.trustee!, volume: "someone-elses-volume" },
      })),
    };
    await expect(
      unlockWithSecret(lower, parseConfig(serializeConfig(tampered)), {
        kind: "trustee",
        bytes: Buffer.from(secret),
      }),
    ).rejects.toThrow(/failed authentication/);
  });

  it("refuses a trustee slot without a well-formed trustee member (CONFIG_INVALID)", () => {
    const withTrustee = (trustee: unknown) =>
      serializeConfig({
        ...config,
        slots: config.slots.map((s) => ({ ...s, trustee }) as unknown as KeySlot),
      });
    for (const bad of [
      undefined,
      "https://trustee.example",
      { ...INFO, url: "http://trustee.example" },
      { ...INFO, url: "not a url" },
      { ...INFO, tid: "short" },
      { ...INFO, pin: 7 },
      { ...INFO, aid: "C".repeat(44) },
      { ...INFO, volume: "short" },
      { ...INFO, volume: "has spaces in it, sixteen+" },
      { ...INFO, key_version: 0 },
      { ...INFO, key_version: 1.5 },
      { ...INFO, members: "all" },
      { ...INFO, members: [{ id: "x", name: "laptop" }] },
    ])
      expect(() => parseConfig(withTrustee(bad)), JSON.stringify(bad)).toThrow(
        expect.objectContaining({ code: "CONFIG_INVALID" }),
      );
    expect(() => parseConfig(withTrustee({ ...INFO, members: undefined }))).not.toThrow();
  });
});
