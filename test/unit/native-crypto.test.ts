// The native crypto addon (native/crypto/crypto.c) against the JS
// implementations it stands in for: the same bytes on random inputs, and no
// single flipped bit accepted.

import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { aessiv } from "@noble/ciphers/aes.js";
import { afterAll, describe, expect, it } from "vitest";
import { GCM_NONCE_SIZE, gcmOpen, gcmSeal } from "../../src/crypto/aead.js";
import { cryptoAddon } from "../../src/crypto/native.js";
import { forgetSivKey, sivOpen, sivSeal } from "../../src/crypto/siv.js";
import {
  BLOCK_OVERHEAD,
  ContentGeometry,
  openBlocks,
  sealBlocks,
} from "../../src/format/content.js";

const EBADMSG = 74;
const dir = mkdtempSync(join(tmpdir(), "cryptmount-native-crypto-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const int = (max: number) => Math.floor(Math.random() * max);

describe("AES-256-SIV through OpenSSL", () => {
  it("gives @noble/ciphers' bytes on random keys, associated data and lengths", () => {
    for (let t = 0; t < 300; t++) {
      const key = randomBytes(64);
      const aad = Array.from({ length: t % 3 }, () => randomBytes(int(40)));
      const plain = randomBytes(t % 70);
      const expected = Buffer.from(aessiv(key, ...aad).encrypt(plain));
      expect(Buffer.from(sivSeal(key, aad, plain))).toEqual(expected);
      // Again with the expanded key from the cache.
      expect(Buffer.from(sivSeal(key, aad, plain))).toEqual(expected);
      expect(Buffer.from(sivOpen(key, aad, expected)!)).toEqual(plain);
    }
  });

  it("refuses every flipped bit of the sealed name and of the associated data", () => {
    const key = randomBytes(64);
    const aad = [randomBytes(16)];
    const sealed = Buffer.from(sivSeal(key, aad, randomBytes(32)));
    for (let bit = 0; bit < sealed.length * 8; bit++) {
      const bad = Buffer.from(sealed);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      expect(sivOpen(key, aad, bad)).toBeUndefined();
    }
    for (let bit = 0; bit < 16 * 8; bit++) {
      const badAad = Buffer.from(aad[0]!);
      badAad[bit >> 3]! ^= 1 << (bit & 7);
      expect(sivOpen(key, [badAad], sealed)).toBeUndefined();
    }
  });

  it("forgets an expanded key: the native copy is freed, the key still works afresh", () => {
    const key = randomBytes(64);
    const sealed = Buffer.from(sivSeal(key, [], Buffer.from("x")));
    forgetSivKey(key);
    expect(Buffer.from(sivOpen(key, [], sealed)!).toString()).toBe("x");
    const native = cryptoAddon().sivKey(key);
    cryptoAddon().sivDispose(native);
    expect(() => cryptoAddon().sivSeal(native, [], Buffer.from("x"))).toThrow(/live SIV key/);
  });
});

/** A file's cipher state with a small block size, so every bit can be flipped. */
function cipher(blockSize: number, holes = false) {
  return {
    fileKey: randomBytes(32),
    fileId: randomBytes(16),
    geometry: new ContentGeometry(blockSize),
    holes,
  };
}

type Cipher = ReturnType<typeof cipher>;

/** docs/format.md §7: file ID | u64 BE block index | final flag. */
function blockAad(file: Cipher, index: number, final: boolean): Buffer {
  const aad = Buffer.alloc(25);
  file.fileId.copy(aad);
  aad.writeBigUInt64BE(BigInt(index), 16);
  aad[24] = final ? 1 : 0;
  return aad;
}

/** The blocks sealed one at a time with node:crypto, as the format says. */
function referenceSeal(
  file: Cipher,
  first: number,
  plain: Buffer,
  endsFile: boolean,
  nonces: Buffer[],
): Buffer {
  const B = file.geometry.blockSize;
  const full = Math.floor(plain.length / B);
  const parts = nonces.map((nonce, i) =>
    gcmSeal(
      file.fileKey,
      nonce,
      blockAad(file, first + i, i === full),
      plain.subarray(i * B, (i + 1) * B),
    ),
  );
  return Buffer.concat(parts);
}

function referenceOpen(file: Cipher, first: number, finalIndex: number, sealed: Buffer): Buffer {
  const S = file.geometry.sealedBlockSize;
  const parts: Buffer[] = [];
  for (let pos = 0, i = first; pos < sealed.length; pos += S, i++)
    parts.push(
      gcmOpen(file.fileKey, blockAad(file, i, i === finalIndex), sealed.subarray(pos, pos + S))!,
    );
  return Buffer.concat(parts);
}

async function nativeSeal(
  file: Cipher,
  first: number,
  plain: Buffer,
  endsFile: boolean,
  nonces: Buffer[],
  path: string,
): Promise<Buffer> {
  writeFileSync(path, "");
  const fd = openSync(path, "r+");
  try {
    const result = await cryptoAddon().sealWrite(
      fd,
      file.fileKey,
      file.fileId,
      first,
      plain,
      endsFile,
      Buffer.concat(nonces),
      file.geometry.blockSize,
      0,
    );
    expect(result).toBe(0);
  } finally {
    closeSync(fd);
  }
  return readFileSync(path);
}

async function nativeOpen(
  file: Cipher,
  first: number,
  finalIndex: number,
  sealed: Buffer,
  path: string,
  sealedLength = sealed.length,
): Promise<{ result: number; out: Buffer }> {
  writeFileSync(path, sealed);
  const blocks = Math.ceil(sealedLength / file.geometry.sealedBlockSize);
  const out = Buffer.alloc(sealedLength - blocks * BLOCK_OVERHEAD, 0xaa);
  const fd = openSync(path, "r");
  try {
    const result = await cryptoAddon().openRead(
      fd,
      file.fileKey,
      file.fileId,
      first,
      finalIndex,
      file.holes,
      out,
      file.geometry.blockSize,
      0,
      sealedLength,
    );
    return { result, out };
  } finally {
    closeSync(fd);
  }
}

describe("content blocks through OpenSSL, one threadpool job a request", () => {
  it("seals as node:crypto does block by block, byte for byte, and opens what it sealed", async () => {
    const path = join(dir, "roundtrip");
    for (let t = 0; t < 60; t++) {
      const blockSize = [16, 100, 4096][t % 3]!;
      const file = cipher(blockSize);
      const endsFile = t % 2 === 0;
      const full = int(5);
      const length = full * blockSize + (endsFile ? int(blockSize) : 0);
      const count = full + (endsFile ? 1 : 0);
      if (count === 0) continue;
      const plain = randomBytes(length);
      const nonces = Array.from({ length: count }, () => randomBytes(GCM_NONCE_SIZE));
      const first = t % 4 === 0 ? 2 ** 40 + int(1000) : int(1000);
      const expected = referenceSeal(file, first, plain, endsFile, nonces);
      // The job (seal + pwrite) and the inline form used by sealBlocks.
      const sealed = await nativeSeal(file, first, plain, endsFile, nonces, path);
      expect(sealed).toEqual(expected);
      expect(sealBlocks(file, first, plain, endsFile, nonces)).toEqual(expected);
      const finalIndex = endsFile ? first + full : first + full + 5;
      expect(referenceOpen(file, first, finalIndex, sealed)).toEqual(plain);
      const { result, out } = await nativeOpen(file, first, finalIndex, sealed, path);
      expect(result).toBe(plain.length);
      expect(out).toEqual(plain);
      expect(openBlocks(file, first, sealed, finalIndex)).toEqual({ cleartext: plain });
    }
  });

  it("fails on every flipped bit, and on a wrong final flag, and leaves no cleartext", async () => {
    const path = join(dir, "flip");
    const file = cipher(16);
    const plain = randomBytes(16 * 2 + 5);
    const sealed = sealBlocks(file, 7, plain, true);
    for (let bit = 0; bit < sealed.length * 8; bit++) {
      const bad = Buffer.from(sealed);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      const { result, out } = await nativeOpen(file, 7, 9, bad, path);
      expect(result).toBe(-EBADMSG);
      expect(out.every((b) => b === 0)).toBe(true);
      const inline = Buffer.alloc(out.length, 0xaa);
      const args = [file.fileKey, file.fileId, 7, 9, false, inline, 16, bad] as const;
      expect(cryptoAddon().openBlocks(...args)).toBe(-EBADMSG);
      expect(inline.every((b) => b === 0)).toBe(true);
      expect(openBlocks(file, 7, bad, 9).failure?.index).toBe(7 + Math.floor(bit / 8 / 44));
    }
    // The same blocks where the last is not the file's final one (an extended file).
    expect((await nativeOpen(file, 7, 10, sealed, path)).result).toBe(-EBADMSG);
    // Another index (blocks moved) or another file's ID.
    expect((await nativeOpen(file, 8, 10, sealed, path)).result).toBe(-EBADMSG);
    const other = { ...file, fileId: randomBytes(16) };
    expect((await nativeOpen(other, 7, 9, sealed, path)).result).toBe(-EBADMSG);
  });

  it("reads an all-zero full block as a hole only with the HOLES flag, never the final one", async () => {
    const path = join(dir, "holes");
    const file = cipher(16, true);
    const tail = sealBlocks(file, 1, Buffer.from("end"), true);
    const sealed = Buffer.concat([Buffer.alloc(file.geometry.sealedBlockSize), tail]);
    const { result, out } = await nativeOpen(file, 0, 1, sealed, path);
    expect(result).toBe(16 + 3);
    expect(out).toEqual(Buffer.concat([Buffer.alloc(16), Buffer.from("end")]));
    expect((await nativeOpen({ ...file, holes: false }, 0, 1, sealed, path)).result).toBe(-EBADMSG);
    const zeroFinal = Buffer.alloc(file.geometry.sealedBlockSize);
    expect((await nativeOpen(file, 0, 0, zeroFinal, path)).result).toBe(-EBADMSG);
  });

  it("reports a lower file shorter than asked, and a bad descriptor as its errno", async () => {
    const path = join(dir, "short");
    const file = cipher(16);
    const sealed = sealBlocks(file, 0, randomBytes(40), true);
    const { result } = await nativeOpen(file, 0, 2, sealed, path, sealed.length + 10);
    expect(result).toBe(-EBADMSG);
    const out = Buffer.alloc(16);
    const bad = await cryptoAddon().openRead(
      1 << 30,
      file.fileKey,
      file.fileId,
      0,
      0,
      false,
      out,
      16,
      0,
      44,
    );
    expect(bad).toBe(-9); // EBADF
  });
});
