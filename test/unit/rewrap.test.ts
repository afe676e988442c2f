// Header rewrap (rekey): planRewrap's patches, applied one by one with a
// simulated crash after each, must never leave a header that a keyring
// holding both epochs refuses; after the last one, a keyring holding only the
// new epoch opens it and one holding only the old epoch does not.

import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Keyring } from "../../src/crypto/keys.js";
import { FormatError } from "../../src/format/errors.js";
import {
  HEADER_SIZE,
  SLOT_OFFSETS,
  SLOT_SIZE,
  createHeader,
  openHeader,
  planRewrap,
  type HeaderPatch,
} from "../../src/format/header.js";

const B = 4096;
const volumeId = randomBytes(16);
const volumeSecret = randomBytes(32);
const mountKeys = new Map(Array.from({ length: 6 }, (_, i) => [i + 1, randomBytes(32)] as const));

/** A keyring whose current epoch is `current` and which knows `epochs`. */
function ring(current: number, epochs: number[] = [current]): Keyring {
  return new Keyring(
    volumeId,
    current,
    new Map(epochs.map((e) => [e, mountKeys.get(e)!])),
    volumeSecret,
  );
}

function apply(bytes: Buffer, patch: HeaderPatch): void {
  expect(patch.bytes.length).toBe(SLOT_SIZE);
  expect(SLOT_OFFSETS).toContain(patch.offset);
  patch.bytes.copy(bytes, patch.offset);
}

/** Rewraps `bytes` from `from` to `to`, checking the header after every step (a crash point). */
function rewrap(bytes: Buffer, fileKey: Buffer, from: number[], to: number): HeaderPatch[] {
  const during = ring(to, [...new Set([...from, to])]);
  const header = openHeader(during, bytes, B);
  const patches = planRewrap(during, header, bytes);
  for (const patch of patches) {
    apply(bytes, patch);
    // Crash here: the volume still has both keys until rekey finishes.
    const reopened = openHeader(during, bytes, B);
    expect(reopened.fileKey).toEqual(fileKey);
  }
  return patches;
}

describe("header rewrap", () => {
  it("moves a fresh header from epoch 1 to 2 in two steps: write slot B, then clear slot A", () => {
    const { bytes, header } = createHeader(ring(1), { blockSize: B });
    const original = Buffer.from(bytes);
    const patches = rewrap(bytes, header.fileKey, [1], 2);
    expect(patches.map((p) => p.offset)).toEqual([SLOT_OFFSETS[1], SLOT_OFFSETS[0]]);
    expect(patches[1]!.bytes).toEqual(Buffer.alloc(SLOT_SIZE));
    expect(bytes.subarray(0, SLOT_OFFSETS[0])).toEqual(original.subarray(0, SLOT_OFFSETS[0]));

    const after = openHeader(ring(2), bytes, B);
    expect(after.fileKey).toEqual(header.fileKey);
    expect(after.fileId).toEqual(header.fileId);
    expect(after.slotEpochs).toEqual([undefined, 2]);
    expect(() => openHeader(ring(1), bytes, B)).toThrowError(
      expect.objectContaining({ code: "UNKNOWN_EPOCH" }),
    );
  });

  it("the intermediate state (both slots) needs both epochs", () => {
    const { bytes } = createHeader(ring(1), { blockSize: B });
    const both = ring(2, [1, 2]);
    const [first] = planRewrap(both, openHeader(both, bytes, B), bytes);
    apply(bytes, first!);
    expect(openHeader(both, bytes, B).slotEpochs).toEqual([1, 2]);
    expect(() => openHeader(ring(2), bytes, B)).toThrowError(
      expect.objectContaining({ code: "UNKNOWN_EPOCH" }),
    );
    expect(() => openHeader(ring(1), bytes, B)).toThrowError(
      expect.objectContaining({ code: "UNKNOWN_EPOCH" }),
    );
  });

  it("is idempotent: a finished header needs no patch, a half-done one only the clearing step", () => {
    const { bytes, header } = createHeader(ring(1), { blockSize: B });
    rewrap(bytes, header.fileKey, [1], 2);
    expect(planRewrap(ring(2), openHeader(ring(2), bytes, B), bytes)).toEqual([]);

    const fresh = createHeader(ring(1), { blockSize: B });
    const both = ring(2, [1, 2]);
    const [write] = planRewrap(both, openHeader(both, fresh.bytes, B), fresh.bytes);
    apply(fresh.bytes, write!);
    const resumed = planRewrap(both, openHeader(both, fresh.bytes, B), fresh.bytes);
    expect(resumed).toEqual([{ offset: SLOT_OFFSETS[0], bytes: Buffer.alloc(SLOT_SIZE) }]);
  });

  it("replaces the older epoch when both slots are full (a rekey interrupted, then another started)", () => {
    const { bytes, header } = createHeader(ring(1), { blockSize: B });
    const both = ring(2, [1, 2]);
    apply(bytes, planRewrap(both, openHeader(both, bytes, B), bytes)[0]!); // slots: 1, 2
    const patches = rewrap(bytes, header.fileKey, [1, 2], 3);
    expect(patches[0]!.offset).toBe(SLOT_OFFSETS[0]); // epoch 1 was older
    expect(openHeader(ring(3), bytes, B).slotEpochs).toEqual([3, undefined]);
  });

  it("any sequence of rekeys keeps the file key and ends with one slot of the last epoch", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), (steps) => {
        const { bytes, header } = createHeader(ring(1), { blockSize: B });
        for (let to = 2; to <= steps + 1; to++) rewrap(bytes, header.fileKey, [to - 1], to);
        const last = steps + 1;
        const opened = openHeader(ring(last), bytes, B);
        expect(opened.fileKey).toEqual(header.fileKey);
        expect(opened.slotEpochs.filter((e) => e !== undefined)).toEqual([last]);
        expect(bytes.length).toBe(HEADER_SIZE);
      }),
      { numRuns: 20 },
    );
  });

  it("a torn slot write is refused, not silently accepted (readers are strict)", () => {
    const { bytes } = createHeader(ring(1), { blockSize: B });
    const both = ring(2, [1, 2]);
    const [write] = planRewrap(both, openHeader(both, bytes, B), bytes);
    write!.bytes.subarray(0, 32).copy(bytes, write!.offset); // half of the new slot reached the disk
    expect(() => openHeader(both, bytes, B)).toThrow(FormatError);
  });
});
