import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { Keyring } from "../../src/crypto/keys.js";
import { ContentGeometry } from "../../src/format/content.js";
import { createLowerFile, openLowerFile } from "../helpers/lower-files.js";

const B = 4096;
const dir = mkdtempSync(join(tmpdir(), "cm-openfile-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const log = pino({ level: "silent" });
const keyring = () =>
  new Keyring(Buffer.alloc(16, 1), 1, new Map([[1, Buffer.alloc(32, 2)]]), Buffer.alloc(32, 3));
const geometry = new ContentGeometry(B);

type Op =
  | { kind: "write"; at: number; length: number; byte: number }
  | { kind: "truncate"; size: number }
  | { kind: "fallocate"; mode: number; at: number; length: number };

/** fallocate modes: allocate, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE, ZERO_RANGE|KEEP_SIZE. */
const MODES = [0, 1, 3, 0x10, 0x11];

const sizeNear = fc.oneof(
  fc.integer({ min: 0, max: 12 * B }),
  fc.constantFrom(0, 1, B - 1, B, B + 1, 2 * B - 1, 2 * B, 2 * B + 1, 3 * B, 7 * B + 5),
);
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant("write" as const),
    at: sizeNear,
    length: fc.integer({ min: 1, max: 2 * B + 3 }),
    byte: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({ kind: fc.constant("truncate" as const), size: sizeNear }),
  fc.record({
    kind: fc.constant("fallocate" as const),
    mode: fc.constantFrom(...MODES),
    at: sizeNear,
    length: fc.integer({ min: 1, max: 5 * B }),
  }),
);

function applyToModel(model: Buffer, o: Op): Buffer {
  if (o.kind === "fallocate") {
    const keepSize = (o.mode & 1) !== 0;
    const end = o.at + o.length;
    const next = Buffer.alloc(keepSize ? model.length : Math.max(model.length, end));
    model.copy(next);
    if (o.mode & 0x12) next.fill(0, o.at, Math.min(end, next.length));
    return next;
  }
  if (o.kind === "truncate") {
    const next = Buffer.alloc(o.size);
    model.copy(next, 0, 0, Math.min(o.size, model.length));
    return next;
  }
  const next = Buffer.alloc(Math.max(model.length, o.at + o.length));
  model.copy(next);
  next.fill(o.byte, o.at, o.at + o.length);
  return next;
}

describe("OpenFile read-modify-write", () => {
  it("matches a plain buffer after any sequence of writes, truncates and fallocates (holes), and after reopening", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops) => {
        const path = join(dir, `f${run++}`);
        const ring = keyring();
        const file = await createLowerFile(path, ring, geometry, log);
        let model: Buffer = Buffer.alloc(0);
        for (const o of ops) {
          if (o.kind === "write") await file.write(o.at, Buffer.alloc(o.length, o.byte));
          else if (o.kind === "fallocate") await file.allocate(o.mode, o.at, o.length);
          else await file.truncate(o.size);
          model = applyToModel(model, o);
          expect(file.size).toBe(model.length);
        }
        expect((await file.read(0, model.length + 10)).equals(model)).toBe(true);
        await file.close();
        const { size: lowerSize } = await (await import("node:fs/promises")).stat(path);
        expect(lowerSize).toBe(geometry.lowerSize(model.length));
        const again = await openLowerFile(path, ring, geometry, log);
        expect(again.size).toBe(model.length);
        expect((await again.read(0, model.length + 1)).equals(model)).toBe(true);
        // Reads at every block boundary neighbourhood agree with the model too.
        for (const at of [0, B - 1, B, B + 1, model.length - 1].filter((x) => x >= 0)) {
          expect((await again.read(at, B + 2)).equals(model.subarray(at, at + B + 2))).toBe(true);
        }
        await again.close();
      }),
      { numRuns: 150, seed: 42 },
    );
  });
});

describe("holes (docs/format.md §9)", () => {
  const lowerStat = async (path: string) => (await import("node:fs/promises")).stat(path);
  const headerFlags = async (path: string) => {
    const { open } = await import("node:fs/promises");
    const handle = await open(path, "r");
    try {
      const { buffer } = await handle.read(Buffer.alloc(8), 0, 8, 0);
      return buffer[5];
    } finally {
      await handle.close();
    }
  };

  it("truncate -s far and a byte written far away cost no lower space, and read back as zeros", async () => {
    const path = join(dir, "sparse");
    const ring = keyring();
    const file = await createLowerFile(path, ring, geometry, log);
    await file.write(0, Buffer.from("head"));
    expect(await headerFlags(path)).toBe(0);
    await file.truncate(1 << 30);
    await file.write(2 ** 31, Buffer.from("X"));
    expect(file.size).toBe(2 ** 31 + 1);
    expect(await headerFlags(path)).toBe(1);
    const st = await lowerStat(path);
    expect(st.size).toBe(geometry.lowerSize(2 ** 31 + 1));
    expect(st.blocks * 512).toBeLessThan(64 * 1024);
    await file.close();
    const again = await openLowerFile(path, ring, geometry, log);
    expect((await again.read(0, 8)).toString("latin1")).toBe("head\0\0\0\0");
    expect((await again.read(1 << 29, B)).equals(Buffer.alloc(B))).toBe(true);
    expect((await again.read(2 ** 31 - 2, 10)).toString("latin1")).toBe("\0\0X");
    await again.close();
  });

  it("a file never grown past a gap keeps every block authenticated: no HOLES flag", async () => {
    const path = join(dir, "dense");
    const file = await createLowerFile(path, keyring(), geometry, log);
    await file.write(0, Buffer.alloc(5 * B, 7));
    await file.truncate(6 * B + 3); // grows by less than two blocks: sealed zeros
    await file.close();
    expect(await headerFlags(path)).toBe(0);
  });

  it("sizes beyond MAX_FILE_SIZE are EFBIG and change nothing", async () => {
    const path = join(dir, "toobig");
    const file = await createLowerFile(path, keyring(), geometry, log);
    await file.write(0, Buffer.from("abc"));
    const before = (await lowerStat(path)).size;
    for (const attempt of [
      () => file.truncate(geometry.maxSize + 1),
      () => file.write(geometry.maxSize, Buffer.from("xy")),
      () => file.allocate(0, geometry.maxSize, 2),
    ]) {
      await expect(attempt()).rejects.toMatchObject({ errno: "EFBIG" });
      expect(file.size).toBe(3);
      expect((await lowerStat(path)).size).toBe(before);
    }
    await file.close();
  });

  it("a growth the lower refuses (ENOSPC) leaves size and content as they were", async () => {
    const path = join(dir, "nospace");
    const ring = keyring();
    const { directLowerOps } = await import("../../src/fs/lower/ops.js");
    const limit = geometry.blockOffset(40);
    const full = {
      ...directLowerOps,
      pwrite: (fd: number, buf: Buffer, off: number, len: number, pos: number) =>
        pos + len > limit
          ? Promise.reject(Object.assign(new Error("ENOSPC"), { code: "ENOSPC" }))
          : directLowerOps.pwrite(fd, buf, off, len, pos),
    };
    const file = await createLowerFile(path, ring, geometry, log, full);
    const content = Buffer.alloc(2 * B + 100, 9);
    await file.write(0, content);
    const before = (await lowerStat(path)).size;
    await expect(file.truncate(100 * B)).rejects.toMatchObject({ code: "ENOSPC" });
    await expect(file.write(90 * B, Buffer.from("x"))).rejects.toMatchObject({ code: "ENOSPC" });
    expect(file.size).toBe(content.length);
    expect((await lowerStat(path)).size).toBe(before);
    await file.close();
    const again = await openLowerFile(path, ring, geometry, log);
    expect((await again.read(0, 10 * B)).equals(content)).toBe(true);
    await again.close();
  });

  it("a hole zeroed behind our back is accepted only in a HOLES file; the final block never", async () => {
    const { readFile, writeFile } = await import("node:fs/promises");
    const ring = keyring();
    for (const sparse of [false, true]) {
      const path = join(dir, `zeroed-${sparse}`);
      const file = await createLowerFile(path, ring, geometry, log);
      await file.write(0, Buffer.alloc(3 * B + 10, 5));
      if (sparse) await file.allocate(3, 10 * B, B); // a punch beyond the end: only sets nothing…
      if (sparse) await file.allocate(3, 2 * B, B); // …a punch of block 2 sets HOLES
      await file.close();
      const bytes = await readFile(path);
      bytes.fill(0, geometry.blockOffset(1), geometry.blockOffset(2));
      await writeFile(path, bytes);
      const again = await openLowerFile(path, ring, geometry, log);
      if (sparse) {
        const expected = Buffer.alloc(3 * B + 10, 5);
        expected.fill(0, B, 3 * B);
        expect((await again.read(0, 4 * B)).equals(expected)).toBe(true);
      } else {
        await expect(again.read(B, 10)).rejects.toMatchObject({ errno: "EIO" });
      }
      await again.close();
      bytes.fill(0, geometry.blockOffset(3));
      await writeFile(path, bytes);
      const cut = await openLowerFile(path, ring, geometry, log);
      await expect(cut.read(3 * B, 10)).rejects.toMatchObject({ errno: "EIO" });
      await cut.close();
    }
  });
});

describe("SEEK_DATA and SEEK_HOLE", () => {
  it("find the data and the holes of a sparse file, also where holes were copied as zeros", async () => {
    const path = join(dir, "seek");
    const ring = keyring();
    const file = await createLowerFile(path, ring, geometry, log);
    await file.write(0, Buffer.alloc(B, 1)); // block 0: data
    await file.truncate(20 * B + 7); // blocks 1..19: holes, final block 20
    await file.write(10 * B + 5, Buffer.from("x")); // block 10: data
    expect(await file.seek(0, "data")).toBe(0);
    expect(await file.seek(0, "hole")).toBe(B);
    expect(await file.seek(B + 3, "data")).toBe(10 * B);
    expect(await file.seek(10 * B + 9, "hole")).toBe(11 * B);
    expect(await file.seek(11 * B, "data")).toBe(20 * B);
    expect(await file.seek(20 * B + 1, "hole")).toBe(20 * B + 7);
    await expect(file.seek(20 * B + 7, "data")).rejects.toMatchObject({ errno: "ENXIO" });
    await file.truncate(21 * B); // the final block is now empty, at the end
    await expect(file.seek(20 * B + 100, "data")).resolves.toBe(20 * B + 100);
    await file.close();
    // The same file after a copy that wrote its holes out as zeros.
    const { copyFile } = await import("node:fs/promises");
    await copyFile(path, path + ".copy");
    const copy = await openLowerFile(path + ".copy", ring, geometry, log);
    expect(await copy.seek(B + 3, "data")).toBe(10 * B);
    // SEEK_HOLE trusts the lower past data (reading on could mean reading the whole file):
    // in a copy without lower holes, the next hole it reports is the end.
    expect(await copy.seek(10 * B + 9, "hole")).toBe(21 * B);
    await copy.close();
    const dense = await createLowerFile(join(dir, "seek-dense"), keyring(), geometry, log);
    await dense.write(0, Buffer.alloc(3 * B, 2));
    expect(await dense.seek(5, "data")).toBe(5);
    expect(await dense.seek(5, "hole")).toBe(3 * B);
    await dense.close();
  });
});
