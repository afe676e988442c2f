// HPKE (RFC 9180) known answers for the suite the trustee uses, and the
// deposit binding: a deposit opens only for its volume, version and device.
// Vector values: RFC 9180 appendix A.1 (DHKEM(X25519, HKDF-SHA256)) and the
// CFRG test-vectors.json published with the RFC (the same KEM and KDF with
// AEAD 0x0002, AES-256-GCM).

import { describe, expect, it } from "vitest";
import { freshX25519, hpkeDeriveKeyPair, hpkeOpen, hpkeSeal } from "../../src/crypto/hpke.js";
import { openDeposit, sealDeposit } from "../../src/agent/trustee-client.js";
import type { DeviceKeys } from "../../src/agent/device.js";
import {
  generateEd25519,
  generateX25519,
  publicJwk,
  thumbprint,
  x25519Raw as rawOf,
} from "../../src/trustee/identity.js";

const h = (s: string) => Buffer.from(s, "hex");

describe("RFC 9180 DHKEM(X25519, HKDF-SHA256)", () => {
  it("A.1.1: DeriveKeyPair gives the vector's recipient and ephemeral keys", async () => {
    const [skR, pkR] = await hpkeDeriveKeyPair(
      h("6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037"),
    );
    expect(skR.toString("hex")).toBe(
      "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8",
    );
    expect(pkR.toString("hex")).toBe(
      "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d",
    );
    const [skE, pkE] = await hpkeDeriveKeyPair(
      h("7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234"),
    );
    expect(skE.toString("hex")).toBe(
      "52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736",
    );
    expect(pkE.toString("hex")).toBe(
      "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431",
    );
  });
});

describe("RFC 9180 base mode, X25519 / HKDF-SHA256 / AES-256-GCM (suite 0x0020/0x0001/0x0002)", () => {
  const info = h("4f6465206f6e2061204772656369616e2055726e"); // "Ode on a Grecian Urn"
  const ikmE = h("2cd7c601cefb3d42a62b04b7a9041494c06c7843818e0ce28a8f704ae7ab20f9");
  const ikmR = h("dac33b0e9db1b59dbbea58d59a14e7b5896e9bdf98fad6891e99d1686492b9ee");
  const skRm = h("497b4502664cfea5d5af0b39934dac72242a74f8480451e1aee7d6a53320333d");
  const pkRm = h("430f4b9859665145a6b1ba274024487bd66f03a2dd577d7753c68d7d7d00c00c");
  const enc = h("6c93e09869df3402d7bf231bf540fadd35cd56be14f97178f0954db94b7fc256");
  const pt = h("4265617574792069732074727574682c20747275746820626561757479"); // "Beauty is truth, truth beauty"
  const aad = h("436f756e742d30"); // "Count-0"
  const ct = h(
    "e5d84cd531cfb583096e7cfa9641bd3079cf3a91cda813c52deb5f512be9931980a41de125a925cdad859d5b7a",
  );

  it("derives the recipient key pair from ikmR", async () => {
    const [sk, pk] = await hpkeDeriveKeyPair(ikmR);
    expect(sk.equals(skRm)).toBe(true);
    expect(pk.equals(pkRm)).toBe(true);
  });

  it("seals with the vector's ephemeral key to the vector's enc and first ciphertext", async () => {
    const sealed = await hpkeSeal(pkRm, info, aad, pt, ikmE);
    expect(sealed.enc.toString("hex")).toBe(enc.toString("hex"));
    expect(sealed.ct.toString("hex")).toBe(ct.toString("hex"));
  });

  it("opens the vector's ciphertext, and refuses it with another aad, info or key", async () => {
    expect((await hpkeOpen(skRm, pkRm, info, aad, { enc, ct }))?.equals(pt)).toBe(true);
    expect(await hpkeOpen(skRm, pkRm, info, h("436f756e742d31"), { enc, ct })).toBeUndefined();
    expect(await hpkeOpen(skRm, pkRm, Buffer.from("other"), aad, { enc, ct })).toBeUndefined();
    const other = freshX25519();
    expect(
      await hpkeOpen(other.privateRaw, other.publicRaw, info, aad, { enc, ct }),
    ).toBeUndefined();
    const flipped = Buffer.from(ct);
    flipped[3]! ^= 1;
    expect(await hpkeOpen(skRm, pkRm, info, aad, { enc, ct: flipped })).toBeUndefined();
  });
});

async function fakeDevice(): Promise<DeviceKeys> {
  const sig = generateEd25519();
  const kem = generateX25519();
  const sigJwk = publicJwk(sig);
  const kemJwk = publicJwk(kem);
  return {
    dir: "/nonexistent",
    sig,
    kem,
    certificate: "",
    profile: {
      v: 1,
      name: "t",
      deviceId: await thumbprint(sigJwk),
      kemThumbprint: await thumbprint(kemJwk),
      sigJwk,
      kemJwk,
    },
  };
}

describe("deposits are bound to volume, version and device", () => {
  it("open only where they were made for", async () => {
    const a = await fakeDevice();
    const b = await fakeDevice();
    const mk = Buffer.alloc(32, 0x5a);
    const member = (d: DeviceKeys) => ({
      deviceId: d.profile.deviceId,
      name: "x",
      kemPublic: rawOf(d.kem).publicRaw,
      kemThumbprint: d.profile.kemThumbprint,
    });
    const d = await sealDeposit("volume-one-AAAAAAAA", 3, member(a), a.profile.deviceId, mk);
    expect(
      (await openDeposit(a, d, { volumeId: "volume-one-AAAAAAAA", keyVersion: 3 }))?.equals(mk),
    ).toBe(true);
    // Another volume, another version, another device.
    expect(
      await openDeposit(a, d, { volumeId: "volume-two-AAAAAAAA", keyVersion: 3 }),
    ).toBeUndefined();
    expect(
      await openDeposit(a, d, { volumeId: "volume-one-AAAAAAAA", keyVersion: 4 }),
    ).toBeUndefined();
    expect(
      await openDeposit(b, d, { volumeId: "volume-one-AAAAAAAA", keyVersion: 3 }),
    ).toBeUndefined();
    // A header rewritten to name the other place: the aad no longer matches.
    const hdr = JSON.parse(Buffer.from(d.hdr, "base64url").toString());
    for (const change of [{ volume_id: "volume-two-AAAAAAAA" }, { key_version: 4 }]) {
      const moved = {
        ...d,
        hdr: Buffer.from(JSON.stringify({ ...hdr, ...change })).toString("base64url"),
      };
      const where = {
        volumeId: change.volume_id ?? hdr.volume_id,
        keyVersion: change.key_version ?? hdr.key_version,
      };
      expect(await openDeposit(a, moved, where)).toBeUndefined();
    }
    const toB = {
      ...d,
      hdr: Buffer.from(
        JSON.stringify({
          ...hdr,
          recipient: b.profile.deviceId,
          recipient_kem: b.profile.kemThumbprint,
        }),
      ).toString("base64url"),
    };
    expect(
      await openDeposit(b, toB, { volumeId: "volume-one-AAAAAAAA", keyVersion: 3 }),
    ).toBeUndefined();
  });
});

describe("RFC 9180 A.1.1 through the same library (AES-128-GCM, the appendix's own suite)", () => {
  it("reproduces enc and the first ciphertext", async () => {
    const { CipherSuite, DhkemX25519HkdfSha256, HkdfSha256, Aes128Gcm } =
      await import("@hpke/core");
    const suite = new CipherSuite({
      kem: new DhkemX25519HkdfSha256(),
      kdf: new HkdfSha256(),
      aead: new Aes128Gcm(),
    });
    const ab = (b: Buffer) =>
      b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
    const pkR = await suite.kem.importKey(
      "raw",
      ab(h("3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d")),
      true,
    );
    const sender = await suite.createSenderContext({
      recipientPublicKey: pkR,
      info: ab(h("4f6465206f6e2061204772656369616e2055726e")),
      ekm: ab(h("7268600d403fce431561aef583ee1613527cff655c1343f29812e66706df3234")),
    });
    expect(Buffer.from(sender.enc).toString("hex")).toBe(
      "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431",
    );
    const ct = await sender.seal(
      ab(h("4265617574792069732074727574682c20747275746820626561757479")),
      ab(h("436f756e742d30")),
    );
    expect(Buffer.from(ct).toString("hex")).toBe(
      "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a",
    );
  });
});
