// File contents: size arithmetic, round trips around block boundaries, and
// that no single-bit change anywhere in a sealed file goes unnoticed.

import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Keyring } from "../../src/crypto/keys.js";
import {
  BLOCK_OVERHEAD,
  ContentGeometry,
  openBlocks,
  sealBlocks,
} from "../../src/format/content.js";
import { FormatError, type FormatErrorCode } from "../../src/format/errors.js";
import { HEADER_SIZE, createHeader, openHeader } from "../../src/format/header.js";
import { decryptFile } from "./lower-walk.js";

const B = 4096;
const S = B + BLOCK_OVERHEAD;
const geometry = new ContentGeometry(B);
const keyring = new Keyring(randomBytes(16), 1, new Map([[1, randomBytes(32)]]), randomBytes(32));

function sealFile(data: Uint8Array): Buffer {
  const { bytes, header } = createHeader(keyring, { blockSize: B });
  return Buffer.concat([
    bytes,
    sealBlocks({ fileKey: header.fileKey, fileId: header.fileId, geometry }, 0, data, true),
  ]);
}

const boundarySizes = [0, 1, B - 1, B, B + 1, 2 * B - 1, 2 * B, 2 * B + 1, 3 * B, 3 * B + 1];
/** Sizes on and around block boundaries, plus anything up to four blocks. */
const size = fc.oneof(fc.constantFrom(...boundarySizes), fc.integer({ min: 0, max: 4 * B }));
const contents = size.chain((n) => fc.uint8Array({ minLength: n, maxLength: n }));

/** The documented rule (docs/format.md, "Size arithmetic") for which lower lengths are valid. */
function documentedCleartextSize(lower: number): number | FormatErrorCode {
  if (lower < HEADER_SIZE) return "SHORT_HEADER";
  const body = lower - HEADER_SIZE;
  const full = Math.floor(body / S);
  const rest = body - full * S;
  if (rest === 0) return "TRUNCATED"; // no final block
  if (rest < BLOCK_OVERHEAD) return "BAD_LENGTH"; // a final block cannot be this short
  return full * B + rest - BLOCK_OVERHEAD;
}

describe("size arithmetic", () => {
  it.each([
    [0, HEADER_SIZE + 28],
    [1, HEADER_SIZE + 1 + 28],
    [B - 1, HEADER_SIZE + B - 1 + 28],
    [B, HEADER_SIZE + S + 28],
    [B + 1, HEADER_SIZE + S + 1 + 28],
    [2 * B, HEADER_SIZE + 2 * S + 28],
  ])("cleartext %i bytes <-> lower %i bytes", (clear, lower) => {
    expect(geometry.lowerSize(clear)).toBe(lower);
    expect(geometry.cleartextSize(lower)).toBe(clear);
  });

  it("every lower length up to five blocks is either the image of exactly one size or refused as documented", () => {
    for (let lower = 0; lower <= HEADER_SIZE + 5 * S + 1; lower++) {
      const expected = documentedCleartextSize(lower);
      if (typeof expected === "number") {
        expect(geometry.cleartextSize(lower)).toBe(expected);
        expect(geometry.lowerSize(expected)).toBe(lower);
      } else {
        let code: string | undefined;
        try {
          geometry.cleartextSize(lower);
        } catch (err) {
          code = (err as FormatError).code;
        }
        expect({ lower, code }).toEqual({ lower, code: expected });
      }
    }
  });

  it("lowerSize and cleartextSize are inverse for any size and block size", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 12, max: 20 }),
        fc.integer({ min: 0, max: 2 ** 40 }),
        (shift, n) => {
          const g = new ContentGeometry(2 ** shift);
          expect(g.cleartextSize(g.lowerSize(n))).toBe(n);
          expect(g.blockCount(n)).toBe(Math.floor(n / 2 ** shift) + 1);
          expect(g.finalIndex(n)).toBe(g.blockCount(n) - 1);
        },
      ),
    );
  });
});

describe("round trips", () => {
  it("random contents around block boundaries decrypt to themselves", () => {
    fc.assert(
      fc.property(contents, (data) => {
        const lower = sealFile(data);
        expect(lower.length).toBe(geometry.lowerSize(data.length));
        expect(decryptFile(keyring, geometry, lower)).toEqual(Buffer.from(data));
      }),
      { numRuns: 200 },
    );
  });

  it("sealing in pieces (full non-final blocks, then the tail) gives a file that decrypts the same", () => {
    fc.assert(
      fc.property(contents, fc.nat(), (data, cut) => {
        const { bytes, header } = createHeader(keyring, { blockSize: B });
        const file = { fileKey: header.fileKey, fileId: header.fileId, geometry };
        const blocks = geometry.blockCount(data.length);
        const split = cut % blocks; // number of full blocks sealed first
        const head =
          split > 0 ? sealBlocks(file, 0, data.subarray(0, split * B), false) : Buffer.alloc(0);
        const tail = sealBlocks(file, split, data.subarray(split * B), true);
        const lower = Buffer.concat([bytes, head, tail]);
        expect(decryptFile(keyring, geometry, lower)).toEqual(Buffer.from(data));
      }),
      { numRuns: 100 },
    );
  });

  it("reading a range of blocks from the middle gives those blocks", () => {
    const data = randomBytes(5 * B + 123);
    const lower = sealFile(data);
    const header = openHeader(keyring, lower, B);
    const file = { fileKey: header.fileKey, fileId: header.fileId, geometry };
    const { cleartext, failure } = openBlocks(
      file,
      2,
      lower.subarray(geometry.blockOffset(2), geometry.blockOffset(4)),
      5,
    );
    expect(failure).toBeUndefined();
    expect(cleartext).toEqual(data.subarray(2 * B, 4 * B));
  });

  it("refuses to seal a short block that is not final", () => {
    const { header } = createHeader(keyring, { blockSize: B });
    const file = { fileKey: header.fileKey, fileId: header.fileId, geometry };
    expect(() => sealBlocks(file, 0, Buffer.alloc(B - 1), false)).toThrow(RangeError);
    expect(() => sealBlocks(file, 0, Buffer.alloc(B + 1), false)).toThrow(RangeError);
    // Whole blocks that do not end the file seal to full non-final blocks only; nothing is nothing.
    expect(sealBlocks(file, 0, Buffer.alloc(0), false)).toHaveLength(0);
    expect(sealBlocks(file, 3, Buffer.alloc(2 * B), false)).toHaveLength(2 * S);
  });

  it("the final block holds size mod block size: empty when the size is a multiple of it", () => {
    const { header } = createHeader(keyring, { blockSize: B });
    const file = { fileKey: header.fileKey, fileId: header.fileId, geometry };
    for (const n of [0, 1, B - 1, B, B + 1, 2 * B]) {
      const sealed = sealBlocks(file, 0, Buffer.alloc(n, 7), true);
      const full = Math.floor(n / B);
      expect(sealed.length).toBe(full * S + (n % B) + BLOCK_OVERHEAD);
      // Every full block is non-final; the final one is at index floor(n / B).
      expect(geometry.finalIndex(n)).toBe(full);
      const { cleartext, failure } = openBlocks(file, 0, sealed, full);
      expect(failure).toBeUndefined();
      expect(cleartext).toEqual(Buffer.alloc(n, 7));
    }
  });

  it("appending at a block boundary seals only new blocks: earlier full blocks stay byte for byte", () => {
    const { bytes, header } = createHeader(keyring, { blockSize: B });
    const file = { fileKey: header.fileKey, fileId: header.fileId, geometry };
    const first = randomBytes(2 * B);
    const before = Buffer.concat([bytes, sealBlocks(file, 0, first, true)]);
    const more = randomBytes(B + 17);
    // The append overwrites the empty final block (at offset blockOffset(2)) and goes on from there.
    const after = Buffer.concat([
      before.subarray(0, geometry.blockOffset(2)),
      sealBlocks(file, 2, more, true),
    ]);
    expect(after.subarray(0, geometry.blockOffset(2))).toEqual(
      before.subarray(0, geometry.blockOffset(2)),
    );
    expect(decryptFile(keyring, geometry, after)).toEqual(Buffer.concat([first, more]));
  });

  it("holes are ordinary sealed zero blocks: an all-zero block on disk is refused", () => {
    const data = Buffer.alloc(3 * B); // what a sparse write of 3 blocks produces
    const lower = sealFile(data);
    expect(decryptFile(keyring, geometry, lower)).toEqual(data);
    lower.fill(0, geometry.blockOffset(1), geometry.blockOffset(2));
    expect(() => decryptFile(keyring, geometry, lower)).toThrowError(
      expect.objectContaining({ code: "BLOCK_AUTH" }),
    );
  });
});

const HEADER_CODES: FormatErrorCode[] = [
  "BAD_MAGIC",
  "UNKNOWN_VERSION",
  "UNKNOWN_FLAGS",
  "BLOCK_SIZE_MISMATCH",
  "HEADER_AUTH",
  "UNKNOWN_EPOCH",
];

describe("single-bit flips", () => {
  it("any flipped bit in a sealed file is refused: header codes in the header, BLOCK_AUTH in a block", () => {
    fc.assert(
      fc.property(contents, fc.nat(), (data, where) => {
        const lower = sealFile(data);
        const bit = where % (lower.length * 8);
        lower[bit >> 3]! ^= 1 << (bit & 7);
        const inHeader = bit >> 3 < HEADER_SIZE;
        let code: FormatErrorCode | undefined;
        try {
          if (inHeader) {
            openHeader(keyring, lower.subarray(0, HEADER_SIZE), B);
          } else {
            decryptFile(keyring, geometry, lower);
          }
        } catch (err) {
          if (!(err instanceof FormatError)) throw err;
          code = err.code;
        }
        if (inHeader) expect(HEADER_CODES).toContain(code);
        else expect(code).toBe("BLOCK_AUTH");
      }),
      { numRuns: 500 },
    );
  });

  it("every bit of the header matters (exhaustive over one header)", () => {
    const lower = sealFile(Buffer.from("x"));
    for (let bit = 0; bit < HEADER_SIZE * 8; bit++) {
      const copy = Buffer.from(lower.subarray(0, HEADER_SIZE));
      copy[bit >> 3]! ^= 1 << (bit & 7);
      expect(() => openHeader(keyring, copy, B), `bit ${bit}`).toThrow(FormatError);
    }
  });
});

describe("holes (format version 3, §9)", () => {
  const fileKey = randomBytes(32);
  const fileId = randomBytes(16);
  const cipher = (holes: boolean) => ({ fileKey, fileId, geometry, holes });
  /** 1 to 5 full blocks of random bytes, a final block of 0 … B−1 bytes, and which full blocks are zeroed. */
  const sparseFile = fc
    .tuple(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 0, max: B - 1 }))
    .chain(([full, rest]) =>
      fc.record({
        data: fc.uint8Array({ minLength: full * B + rest, maxLength: full * B + rest }),
        zeroed: fc.uniqueArray(fc.integer({ min: 0, max: full - 1 }), { maxLength: full }),
      }),
    );

  it("zeroed full blocks read as zeros with HOLES, the rest as written; without HOLES each is BLOCK_AUTH", () => {
    fc.assert(
      fc.property(sparseFile, ({ data, zeroed }) => {
        const body = sealBlocks(cipher(true), 0, data, true);
        const expected = Buffer.from(data);
        for (const i of zeroed) {
          body.fill(0, i * S, (i + 1) * S);
          expected.fill(0, i * B, (i + 1) * B);
        }
        const finalIndex = geometry.finalIndex(data.length);
        const withHoles = openBlocks(cipher(true), 0, body, finalIndex);
        expect(withHoles.failure).toBeUndefined();
        expect(withHoles.cleartext.equals(expected)).toBe(true);

        const without = openBlocks(cipher(false), 0, body, finalIndex);
        const first = zeroed.length > 0 ? Math.min(...zeroed) : undefined;
        expect(without.failure?.index).toBe(first);
        if (first !== undefined) {
          expect(without.failure?.error.code).toBe("BLOCK_AUTH");
          expect(without.cleartext.equals(expected.subarray(0, first * B))).toBe(true);
        }
        for (let i = 0; i <= finalIndex; i++) {
          const piece = body.subarray(i * S, (i + 1) * S);
          const alone = openBlocks(cipher(false), i, piece, finalIndex);
          if (zeroed.includes(i)) expect(alone.failure?.error.code).toBe("BLOCK_AUTH");
          else expect(alone.cleartext.equals(expected.subarray(i * B, (i + 1) * B))).toBe(true);
        }
      }),
    );
  });

  it("a full block zeroed but for one byte is BLOCK_AUTH, also with HOLES", () => {
    fc.assert(
      fc.property(
        sparseFile,
        fc.nat(),
        fc.integer({ min: 0, max: S - 1 }),
        fc.integer({ min: 1, max: 255 }),
        ({ data }, which, at, value) => {
          const body = sealBlocks(cipher(true), 0, data, true);
          const block = which % geometry.finalIndex(data.length);
          body.fill(0, block * S, (block + 1) * S);
          body[block * S + at] = value;
          const got = openBlocks(cipher(true), 0, body, geometry.finalIndex(data.length));
          expect({ code: got.failure?.error.code, index: got.failure?.index }).toEqual({
            code: "BLOCK_AUTH",
            index: block,
          });
          expect(got.cleartext.equals(Buffer.from(data).subarray(0, block * B))).toBe(true);
        },
      ),
      { numRuns: 50 },
    );
  });

  it("the final block is never a hole, whatever its length", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: B - 1 }),
        (full, rest) => {
          const data = randomBytes(full * B + rest);
          const body = sealBlocks(cipher(true), 0, data, true);
          body.fill(0, full * S);
          const got = openBlocks(cipher(true), 0, body, full);
          expect({ code: got.failure?.error.code, index: got.failure?.index }).toEqual({
            code: "BLOCK_AUTH",
            index: full,
          });
        },
      ),
      { numRuns: 50 },
    );
  });
});
