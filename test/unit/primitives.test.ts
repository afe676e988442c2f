// The primitives against published test vectors, so that a wrong mode, key
// split or tag placement in a dependency (or in our thin wrappers) cannot hide
// behind our own known-answer vectors.

import { describe, expect, it } from "vitest";
import { GCM_OVERHEAD, gcmOpen, gcmSeal } from "../../src/crypto/aead.js";
import { constantTimeEqual, fromBase64Url, toBase64Url } from "../../src/crypto/bytes.js";
import { hkdf } from "../../src/crypto/hkdf.js";
import { RandomPool } from "../../src/crypto/random.js";
import { sivOpen, sivSeal } from "../../src/crypto/siv.js";

const h = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");

describe("AES-SIV (RFC 5297, appendix A)", () => {
  // A.1: deterministic authenticated encryption, one associated-data component.
  const a1 = {
    key: h("fffefdfc fbfaf9f8 f7f6f5f4 f3f2f1f0 f0f1f2f3 f4f5f6f7 f8f9fafb fcfdfeff"),
    ad: h("10111213 14151617 18191a1b 1c1d1e1f 20212223 24252627"),
    plaintext: h("11223344 55667788 99aabbcc ddee"),
    output: h("85632d07 c6e8f37f 950acd32 0a2ecc93 40c02b96 90c4dc04 daef7f6a fe5c"),
  };

  it("A.1 deterministic example: V | C", () => {
    expect(Buffer.from(sivSeal(a1.key, [a1.ad], a1.plaintext))).toEqual(a1.output);
    expect(Buffer.from(sivOpen(a1.key, [a1.ad], a1.output)!)).toEqual(a1.plaintext);
  });

  it("A.1 rejects a changed tag, ciphertext or associated data", () => {
    for (const at of [0, 15, 16, a1.output.length - 1]) {
      const bad = Buffer.from(a1.output);
      bad[at]! ^= 0x01;
      expect(sivOpen(a1.key, [a1.ad], bad)).toBeUndefined();
    }
    expect(sivOpen(a1.key, [h("00")], a1.output)).toBeUndefined();
    expect(sivOpen(a1.key, [], a1.output)).toBeUndefined();
    expect(sivOpen(a1.key, [a1.ad], a1.output.subarray(0, 15))).toBeUndefined();
  });

  it("A.2 nonce-based example: two associated-data components and a nonce", () => {
    const key = h("7f7e7d7c 7b7a7978 77767574 73727170 40414243 44454647 48494a4b 4c4d4e4f");
    const ad = [
      h(
        "00112233 44556677 8899aabb ccddeeff deaddada deaddada ffeeddcc bbaa9988 77665544 33221100",
      ),
      h("10203040 50607080 90a0"),
      h("09f91102 9d74e35b d84156c5 635688c0"),
    ];
    const plaintext = h(
      "74686973 20697320 736f6d65 20706c61 696e7465 78742074 6f20656e 63727970 74207573 696e6720 5349562d 414553",
    );
    const output = h(
      "7bdb6e3b 432667eb 06f4d14b ff2fbd0f cb900f2f ddbe4043 26601965 c889bf17 dba77ceb 094fa663 b7a3f748 ba8af829 ea64ad54 4a272e9c 485b62a3 fd5c0d",
    );
    expect(Buffer.from(sivSeal(key, ad, plaintext))).toEqual(output);
    expect(Buffer.from(sivOpen(key, ad, output)!)).toEqual(plaintext);
    // The order of associated-data components matters.
    expect(sivOpen(key, [ad[1]!, ad[0]!, ad[2]!], output)).toBeUndefined();
  });
});

describe("AES-256-GCM (McGrew & Viega, GCM specification test cases 13, 14, 16)", () => {
  const zeroKey = Buffer.alloc(32);
  const zeroIv = Buffer.alloc(12);

  it("test case 13: empty plaintext, zero key", () => {
    const sealed = gcmSeal(zeroKey, zeroIv, Buffer.alloc(0), Buffer.alloc(0));
    expect(sealed).toEqual(Buffer.concat([zeroIv, h("530f8afbc74536b9a963b4f1c4cb738b")]));
    expect(gcmOpen(zeroKey, Buffer.alloc(0), sealed)).toEqual(Buffer.alloc(0));
  });

  it("test case 14: one zero block, zero key", () => {
    const sealed = gcmSeal(zeroKey, zeroIv, Buffer.alloc(0), Buffer.alloc(16));
    expect(sealed).toEqual(
      Buffer.concat([
        zeroIv,
        h("cea7403d4d606b6e074ec5d3baf39d18"),
        h("d0d1c8a799996bf0265b98b5d48ab919"),
      ]),
    );
  });

  it("test case 16: 60-byte plaintext with 20 bytes of AAD", () => {
    const key = h("feffe9928665731c6d6a8f9467308308 feffe9928665731c6d6a8f9467308308");
    const iv = h("cafebabefacedbaddecaf888");
    const aad = h("feedfacedeadbeeffeedfacedeadbeef abaddad2");
    const plaintext = h(
      "d9313225f88406e5a55909c5aff5269a 86a7a9531534f7da2e4c303d8a318a72 1c3c0c95956809532fcf0e2449a6b525 b16aedf5aa0de657ba637b39",
    );
    const ciphertext = h(
      "522dc1f099567d07f47f37a32a84427d 643a8cdcbfe5c0c97598a2bd2555d1aa 8cb08e48590dbb3da7b08b1056828838 c5f61e6393ba7a0abcc9f662",
    );
    const tag = h("76fc6ece0f4e1768cddf8853bb2d551b");
    const sealed = gcmSeal(key, iv, aad, plaintext);
    expect(sealed).toEqual(Buffer.concat([iv, ciphertext, tag]));
    expect(sealed.length).toBe(plaintext.length + GCM_OVERHEAD);
    expect(gcmOpen(key, aad, sealed)).toEqual(plaintext);
    expect(gcmOpen(key, aad.subarray(1), sealed)).toBeUndefined();
    const bad = Buffer.from(sealed);
    bad[bad.length - 1]! ^= 0x80;
    expect(gcmOpen(key, aad, bad)).toBeUndefined();
    expect(gcmOpen(key, aad, sealed.subarray(0, GCM_OVERHEAD - 1))).toBeUndefined();
  });
});

describe("HKDF-SHA256 (RFC 5869)", () => {
  it("test case 3: empty salt and info", () => {
    expect(hkdf(Buffer.alloc(22, 0x0b), Buffer.alloc(0), "", 42)).toEqual(
      h("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"),
    );
  });
});

describe("byte helpers", () => {
  it("base64url has no padding and round-trips", () => {
    for (let n = 0; n < 40; n++) {
      const bytes = Buffer.from(Array.from({ length: n }, (_, i) => (i * 97 + n) & 0xff));
      const text = toBase64Url(bytes);
      expect(text).toMatch(/^[A-Za-z0-9_-]*$/);
      expect(fromBase64Url(text)).toEqual(bytes);
    }
  });

  it.each([
    ["padding", "AAAA=="],
    ["standard alphabet", "ab+/"],
    ["a dot", "abc.def"],
    ["whitespace", "AAAA AAAA"],
    ["impossible length", "AAAAA"],
    ["stray low bits", "AB"],
  ])("base64url refuses %s", (_what, text) => {
    expect(fromBase64Url(text)).toBeUndefined();
  });

  it("constant-time compare handles unequal lengths", () => {
    expect(constantTimeEqual(h("0102"), h("0102"))).toBe(true);
    expect(constantTimeEqual(h("0102"), h("0103"))).toBe(false);
    expect(constantTimeEqual(h("0102"), h("010203"))).toBe(false);
  });

  it("the nonce pool never hands out the same bytes twice and zeroes what it gave", () => {
    const pool = new RandomPool(64);
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) seen.add(pool.bytes(12).toString("hex"));
    expect(seen.size).toBe(200);
    expect(pool.bytes(100).length).toBe(100);
  });
});
