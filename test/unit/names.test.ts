// Names: round trips of arbitrary valid names, the exact encoded lengths the
// padding gives, the long-name switch, classification of lower entries, and
// that any change to an encrypted name is refused.

import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Keyring } from "../../src/crypto/keys.js";
import { sivSeal } from "../../src/crypto/siv.js";
import { FormatError } from "../../src/format/errors.js";
import {
  DIR_ID_PREFIX,
  LONG_NAME_PREFIX,
  MAX_NAME_BYTES,
  MAX_SHORT_NAME,
  classifyLowerEntry,
  decryptName,
  decryptNameUnder,
  v1DirIdEntryName,
  encryptName,
  longNameHash,
  lowerEntryFor,
  validateName,
  verifyLongName,
} from "../../src/format/names.js";

const keyring = new Keyring(randomBytes(16), 1, new Map([[1, randomBytes(32)]]), randomBytes(32));
const nameKey = keyring.volume.names;
const dirA = randomBytes(16);
const dirB = randomBytes(16);

function isValidName(s: string): boolean {
  const bytes = Buffer.from(s, "utf8");
  return (
    s !== "" &&
    s !== "." &&
    s !== ".." &&
    !s.includes("/") &&
    !s.includes("\0") &&
    bytes.length <= MAX_NAME_BYTES &&
    bytes.toString("utf8") === s
  );
}

/** Valid names: any Unicode, from 1 byte up to the 255-byte limit. */
const validName = fc
  .oneof(
    fc.string({ unit: "binary", minLength: 1, maxLength: 90 }),
    fc.string({ unit: "binary-ascii", minLength: 100, maxLength: 255 }),
    fc.string({ unit: "grapheme", minLength: 1, maxLength: 60 }),
  )
  .filter(isValidName);

/** Encoded length for a name of `n` UTF-8 bytes: SIV tag + PKCS#7 padding to 16, base64url. */
const encodedLength = (n: number) => Math.ceil(((16 + 16 * (Math.floor(n / 16) + 1)) * 4) / 3);

describe("name round trips", () => {
  it("any valid name encrypts, maps to a lower entry and decrypts back", () => {
    fc.assert(
      fc.property(validName, (name) => {
        const encoded = encryptName(nameKey, dirA, name);
        expect(encoded).toMatch(/^[A-Za-z0-9_-]+$/);
        expect(encoded.length).toBe(encodedLength(Buffer.byteLength(name, "utf8")));
        expect(encryptName(nameKey, dirA, name)).toBe(encoded); // deterministic
        const entry = lowerEntryFor(encoded);
        if (encoded.length <= MAX_SHORT_NAME) {
          expect(entry).toEqual({ entry: encoded });
          expect(classifyLowerEntry(entry.entry)).toEqual({ kind: "name", encoded });
        } else {
          expect(entry.entry).toBe(LONG_NAME_PREFIX + longNameHash(encoded));
          expect(entry.longName).toBe(encoded);
          expect(classifyLowerEntry(entry.entry).kind).toBe("long-name");
          verifyLongName(entry.entry, encoded);
        }
        expect(decryptName(nameKey, dirA, encoded)).toBe(name);
      }),
      { numRuns: 300 },
    );
  });

  it("the same name gets different encodings in different directories", () => {
    fc.assert(
      fc.property(validName, (name) => {
        expect(encryptName(nameKey, dirA, name)).not.toBe(encryptName(nameKey, dirB, name));
      }),
      { numRuns: 50 },
    );
  });

  it("names up to 111 bytes are stored directly, from 112 bytes hashed; lower names never exceed 171 characters", () => {
    expect(encodedLength(111)).toBe(MAX_SHORT_NAME);
    expect(encodedLength(112)).toBeGreaterThan(MAX_SHORT_NAME);
    expect(lowerEntryFor(encryptName(nameKey, dirA, "n".repeat(111))).longName).toBeUndefined();
    expect(lowerEntryFor(encryptName(nameKey, dirA, "n".repeat(112))).longName).toBeDefined();
    const long = lowerEntryFor(encryptName(nameKey, dirA, "n".repeat(255)));
    expect(long.entry.length).toBe(48);
    expect((long.entry + ".n").length).toBe(50);
    expect(MAX_SHORT_NAME + 84).toBe(255);
  });

  it.each([
    ["", "NAME_INVALID"],
    [".", "NAME_INVALID"],
    ["..", "NAME_INVALID"],
    ["a/b", "NAME_INVALID"],
    ["a\0b", "NAME_INVALID"],
    ["x".repeat(256), "NAME_TOO_LONG"],
    ["é".repeat(128), "NAME_TOO_LONG"],
  ])("refuses to encrypt %j (%s)", (name, code) => {
    expect(() => validateName(name)).toThrowError(expect.objectContaining({ code }));
    expect(() => encryptName(nameKey, dirA, name)).toThrow(FormatError);
  });

  it("accepts a name of exactly 255 bytes and names like '...' or '.hidden'", () => {
    for (const name of ["é".repeat(127) + "x", "...", ".hidden", " ", "\u{1F600}"]) {
      expect(decryptName(nameKey, dirA, encryptName(nameKey, dirA, name))).toBe(name);
    }
  });
});

describe("a directory with several IDs (§10)", () => {
  it("decodes under the first ID that authenticates, and says which", () => {
    const encoded = encryptName(nameKey, dirB, "notes.txt");
    expect(decryptNameUnder(nameKey, [dirA, dirB], encoded)).toEqual({
      name: "notes.txt",
      dirId: dirB,
    });
    expect(decryptNameUnder(nameKey, [dirA], encoded)).toBeUndefined();
    expect(decryptNameUnder(nameKey, [], encoded)).toBeUndefined();
    expect(decryptNameUnder(nameKey, [dirA, dirB], "not base64url!")).toBeUndefined();
  });
});

describe("tampered names", () => {
  it("any flipped bit in an encrypted name is refused with NAME_AUTH", () => {
    fc.assert(
      fc.property(validName, fc.nat(), (name, where) => {
        const sealed = Buffer.from(encryptName(nameKey, dirA, name), "base64url");
        const bit = where % (sealed.length * 8);
        sealed[bit >> 3]! ^= 1 << (bit & 7);
        expect(() => decryptName(nameKey, dirA, sealed.toString("base64url"))).toThrowError(
          expect.objectContaining({ code: "NAME_AUTH" }),
        );
      }),
      { numRuns: 300 },
    );
  });

  it("any changed character of an encrypted name is refused", () => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    fc.assert(
      fc.property(validName, fc.nat(), fc.constantFrom(...alphabet), (name, where, ch) => {
        const encoded = encryptName(nameKey, dirA, name);
        const at = where % encoded.length;
        fc.pre(encoded[at] !== ch);
        const changed = encoded.slice(0, at) + ch + encoded.slice(at + 1);
        let code: string | undefined;
        try {
          decryptName(nameKey, dirA, changed);
        } catch (err) {
          code = (err as FormatError).code;
        }
        expect(["NAME_AUTH", "NAME_ENCODING"]).toContain(code);
      }),
      { numRuns: 300 },
    );
  });

  it("a name moved to another directory, truncated or extended is refused", () => {
    const encoded = encryptName(nameKey, dirA, "report.pdf");
    expect(() => decryptName(nameKey, dirB, encoded)).toThrowError(
      expect.objectContaining({ code: "NAME_AUTH" }),
    );
    expect(() => decryptName(nameKey, dirA, encoded.slice(0, -4))).toThrow(FormatError);
    expect(() => decryptName(nameKey, dirA, encoded + "AAAA")).toThrow(FormatError);
    expect(() => decryptName(nameKey, dirA, "")).toThrow(FormatError);
  });

  it("refuses what a writer never produces even when it authenticates: bad padding, bad UTF-8, invalid names", () => {
    const forge = (plain: Buffer) =>
      Buffer.from(sivSeal(nameKey, [dirA], plain)).toString("base64url");
    const padded = (s: Buffer) => {
      const n = 16 - (s.length % 16);
      return Buffer.concat([s, Buffer.alloc(n, n)]);
    };
    expect(() => decryptName(nameKey, dirA, forge(Buffer.from("abc")))).toThrowError(
      expect.objectContaining({ code: "NAME_AUTH" }),
    );
    expect(() => decryptName(nameKey, dirA, forge(Buffer.alloc(16, 0)))).toThrowError(
      expect.objectContaining({ code: "NAME_AUTH" }),
    );
    expect(() => decryptName(nameKey, dirA, forge(padded(Buffer.from([0xff, 0xfe]))))).toThrowError(
      expect.objectContaining({ code: "NAME_INVALID" }),
    );
    expect(() => decryptName(nameKey, dirA, forge(padded(Buffer.from("a/b"))))).toThrowError(
      expect.objectContaining({ code: "NAME_INVALID" }),
    );
    expect(() => decryptName(nameKey, dirA, forge(padded(Buffer.alloc(0))))).toThrowError(
      expect.objectContaining({ code: "NAME_INVALID" }),
    );
  });

  it("a long-name sidecar belongs to exactly one entry", () => {
    const a = lowerEntryFor(encryptName(nameKey, dirA, "a".repeat(200)));
    const b = lowerEntryFor(encryptName(nameKey, dirA, "b".repeat(200)));
    expect(() => verifyLongName(a.entry, b.longName!)).toThrowError(
      expect.objectContaining({ code: "LONG_NAME_MISMATCH" }),
    );
    expect(() => verifyLongName(a.entry, a.longName! + "\n")).toThrowError(
      expect.objectContaining({ code: "LONG_NAME_MISMATCH" }),
    );
  });
});

describe("lower entry classification", () => {
  const id = Buffer.alloc(16, 7);
  const hash = "A".repeat(43);
  it.each([
    ["xOGtUchEd55SwttnU9nQ7I1_WZErDjDrZaga-cALdC4", "name"],
    [LONG_NAME_PREFIX + hash, "long-name"],
    [LONG_NAME_PREFIX + hash + ".n", "sidecar"],
    [v1DirIdEntryName(id), "dir-id"],
    [DIR_ID_PREFIX + "A".repeat(43), "dir-id"], // the v2 form: 32 bytes, whatever the tag
    [DIR_ID_PREFIX + "A".repeat(42) + "B", "foreign"], // stray bits: not base64url
    [DIR_ID_PREFIX + "A".repeat(43) + ".sync-conflict-x", "foreign"],
    ["cryptmount.conf", "config"],
    ["cryptmount.conf.bak", "config"],
    ["cryptmount.conf.tmp-0123456789ab", "config"],
    [
      "xOGtUchEd55SwttnU9nQ7I1_WZErDjDrZaga-cALdC4.sync-conflict-20250101-120000-ABCDEFG",
      "foreign",
    ],
    ["xOGtUchEd55SwttnU9nQ7I1_WZErDjDrZaga-cALdC4 (conflicted copy)", "foreign"],
    ["xOGtUchEd55SwttnU9nQ7I1_WZErDjDrZaga-cALdC4 (1)", "foreign"],
    [".DS_Store", "foreign"],
    ["desktop.ini", "foreign"],
    [LONG_NAME_PREFIX + "short", "foreign"],
    [LONG_NAME_PREFIX + hash + ".sync-conflict-x", "foreign"],
    [DIR_ID_PREFIX + "AAAA", "foreign"],
    [DIR_ID_PREFIX + "AAAAAAAAAAAAAAAAAAAAAA.sync-conflict-x", "foreign"],
    ["cryptmount.config", "foreign"],
    ["cryptmount.fsck", "check-record"],
    ["cryptmount.fsck.tmp-0123456789ab", "check-record"],
    ["cryptmount.fsck.sync-conflict-20250101-120000-ABCDEFG", "check-record"],
    ["cryptmount.fsckx", "foreign"],
    ["AB", "foreign"],
    ["not base64!", "foreign"],
  ])("%s is %s", (name, kind) => {
    expect(classifyLowerEntry(name).kind).toBe(kind);
  });

  it("the two ID entry forms: 16 bytes (v1) and 32 bytes, ID then tag (v2)", () => {
    const bytes = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    const kind = classifyLowerEntry(DIR_ID_PREFIX + bytes.toString("base64url"));
    expect(kind).toEqual({
      kind: "dir-id",
      form: "v2",
      id: bytes.subarray(0, 16),
      tag: bytes.subarray(16),
    });
    expect(classifyLowerEntry(v1DirIdEntryName(bytes.subarray(0, 16)))).toEqual({
      kind: "dir-id",
      form: "v1",
      id: bytes.subarray(0, 16),
    });
    for (const n of [15, 17, 24, 31, 33, 48])
      expect(classifyLowerEntry(DIR_ID_PREFIX + Buffer.alloc(n).toString("base64url")).kind).toBe(
        "foreign",
      );
  });

  it("a dir ID entry round-trips its 16 bytes", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const kind = classifyLowerEntry(v1DirIdEntryName(bytes));
        expect(kind.kind === "dir-id" && [...kind.id]).toEqual([...bytes]);
        expect(v1DirIdEntryName(bytes).length).toBe(27);
      }),
    );
  });
});
