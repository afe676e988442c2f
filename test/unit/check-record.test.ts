// fsck's check record (docs/format.md §3.4): the known-answer vectors of
// test/fixtures/vectors.json (member fsckRecord, from the second
// implementation in scripts/make-fixture.mjs), and every way a stored record
// can be damaged, truncated or forged: each is CHECK_RECORD_INVALID, never a
// record that lists anything.

import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Keyring } from "../../src/crypto/keys.js";
import {
  CHECK_RECORD_EMPTY_SIZE,
  CheckRecord,
  CheckRecordBuilder,
  statDigest,
} from "../../src/format/check-record.js";
import { isFormatError } from "../../src/format/errors.js";

interface RecordVectors {
  key: string;
  stats: { ino: string; size: number; mtimeNs: string; ctimeNs: string; digest: string }[];
  writtenAt: number;
  fullAt: number;
  stored: string;
  empty: string;
}

const all = JSON.parse(
  readFileSync(new URL("../fixtures/vectors.json", import.meta.url), "utf8"),
) as {
  inputs: { volumeId: string; volumeSecret: string; mountKey: string };
  fsckRecord: RecordVectors;
};
const v = all.fsckRecord;
const key = Buffer.from(v.key, "hex");
const stored = Buffer.from(v.stored, "hex");
const stats = v.stats.map((s) => ({
  ino: BigInt(s.ino),
  size: s.size,
  mtimeNs: BigInt(s.mtimeNs),
  ctimeNs: BigInt(s.ctimeNs),
}));

function refused(bytes: Buffer, withKey = key): string {
  try {
    CheckRecord.decode(withKey, bytes);
  } catch (err) {
    if (isFormatError(err, "CHECK_RECORD_INVALID")) return err.message;
    throw err;
  }
  throw new Error("the record was accepted");
}

/** A record with any body, authenticated with the right key (what only a key holder can make). */
function signed(body: Buffer): Buffer {
  return Buffer.concat([body, createHmac("sha256", key).update(body).digest()]);
}

describe("check record: vectors", () => {
  it("derives K_fsckRecord from the volume secret", () => {
    const k = new Keyring(
      Buffer.from(all.inputs.volumeId, "hex"),
      1,
      new Map([[1, Buffer.from(all.inputs.mountKey, "hex")]]),
      Buffer.from(all.inputs.volumeSecret, "hex"),
    );
    expect(k.volume.fsckRecord.toString("hex")).toBe(v.key);
    expect(k.secretBuffers()).toContain(k.volume.fsckRecord);
  });

  it("digests each stat as the vectors say", () => {
    for (const [i, st] of stats.entries())
      expect(statDigest(st).toString("hex")).toBe(v.stats[i]!.digest);
  });

  it("encodes and decodes the stored record", () => {
    const digests = stats.map(statDigest);
    const record = CheckRecord.of({ writtenAt: v.writtenAt, fullAt: v.fullAt }, digests);
    expect(record.encode(key).toString("hex")).toBe(v.stored);
    const opened = CheckRecord.decode(key, stored);
    expect([opened.writtenAt, opened.fullAt, opened.size]).toEqual([v.writtenAt, v.fullAt, 3]);
    for (const d of digests) expect(opened.has(d)).toBe(true);
    const other = statDigest({ ...stats[0]!, ctimeNs: stats[0]!.ctimeNs + 1n });
    expect(opened.has(other)).toBe(false);
    expect(CheckRecord.of({ writtenAt: v.writtenAt, fullAt: v.fullAt }, []).encode(key)).toEqual(
      Buffer.from(v.empty, "hex"),
    );
    expect(CheckRecord.decode(key, Buffer.from(v.empty, "hex")).size).toBe(0);
  });

  it("a change of any one stat value changes the digest", () => {
    const base = stats[0]!;
    const variants = [
      { ...base, ino: base.ino + 1n },
      { ...base, size: base.size + 1 },
      { ...base, mtimeNs: base.mtimeNs + 1n },
      { ...base, ctimeNs: base.ctimeNs + 1n },
    ];
    const digests = new Set([base, ...variants].map((s) => statDigest(s).toString("hex")));
    expect(digests.size).toBe(5);
  });
});

describe("check record: refused", () => {
  it("every flipped bit (header, digests, MAC)", () => {
    for (let at = 0; at < stored.length; at++) {
      const bad = Buffer.from(stored);
      bad[at]! ^= 0x01;
      expect(refused(bad), `byte ${at}`).toMatch(/check record/);
    }
  });

  it("every truncation and an extension", () => {
    for (let length = 0; length < stored.length; length++)
      expect(refused(stored.subarray(0, length)), `length ${length}`).toMatch(/check record/);
    expect(refused(Buffer.concat([stored, Buffer.alloc(16)]))).toMatch(/check record/);
  });

  it("another volume's key (a record copied from another volume)", () => {
    expect(refused(stored, Buffer.alloc(32, 1))).toMatch(/does not authenticate/);
  });

  it("a digest dropped or added without the key", () => {
    const dropped = Buffer.concat([stored.subarray(0, 28 + 32), stored.subarray(28 + 48)]);
    expect(refused(dropped)).toMatch(/does not authenticate/);
    const forged = Buffer.concat([
      stored.subarray(0, 28 + 48),
      Buffer.alloc(16, 0xff),
      stored.subarray(28 + 48),
    ]);
    expect(refused(forged)).toMatch(/does not authenticate/);
  });

  it("well authenticated but malformed: count, order, duplicates, reserved bytes, version", () => {
    const body = stored.subarray(0, stored.length - 32);
    const head = Buffer.from(body.subarray(0, 28));
    const digests = body.subarray(28);
    const d = (i: number) => digests.subarray(i * 16, i * 16 + 16);

    const count = Buffer.from(head);
    count.writeUInt32BE(2, 24);
    expect(refused(signed(Buffer.concat([count, digests])))).toMatch(/says 2 files but holds 3/);

    expect(refused(signed(Buffer.concat([head, d(1), d(0), d(2)])))).toMatch(/ascending/);
    expect(refused(signed(Buffer.concat([head, d(0), d(0), d(2)])))).toMatch(/ascending/);

    const reserved = Buffer.from(head);
    reserved[6] = 1;
    expect(refused(signed(Buffer.concat([reserved, digests])))).toMatch(/reserved/);

    const version = Buffer.from(head);
    version[4] = 2;
    expect(refused(signed(Buffer.concat([version, digests])))).toMatch(/version 2/);

    const magic = Buffer.from(head);
    magic.write("XMFK", 0, "latin1");
    expect(refused(signed(Buffer.concat([magic, digests])))).toMatch(/CMFK/);
  });

  it("a length no record has", () => {
    expect(refused(Buffer.alloc(CHECK_RECORD_EMPTY_SIZE + 15))).toMatch(/length/);
    expect(refused(Buffer.alloc(0))).toMatch(/length/);
  });
});

describe("check record: builder", () => {
  it("sorts and deduplicates many digests; lookups find exactly those", () => {
    const builder = new CheckRecordBuilder();
    const digests = Array.from({ length: 5000 }, (_, i) =>
      statDigest({ ino: BigInt(i), size: i, mtimeNs: 0n, ctimeNs: BigInt(i) }),
    );
    for (const d of digests) builder.add(d);
    for (const d of digests.slice(0, 100)) builder.add(d); // hard links
    const record = builder.build({ writtenAt: 1, fullAt: 0 });
    expect(record.size).toBe(5000);
    const opened = CheckRecord.decode(key, record.encode(key));
    for (const d of digests) expect(opened.has(d)).toBe(true);
    expect(opened.has(statDigest({ ino: 5000n, size: 5000, mtimeNs: 0n, ctimeNs: 5000n }))).toBe(
      false,
    );
    expect(record.encode(key).length).toBe(CHECK_RECORD_EMPTY_SIZE + 16 * 5000);
  });
});
