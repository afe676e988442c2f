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
  { kind: "write"; at: number; length: number; byte: number } | { kind: "truncate"; size: number };

const sizeNear = fc.oneof(
  fc.integer({ min: 0, max: 6 * B }),
  fc.constantFrom(0, 1, B - 1, B, B + 1, 2 * B - 1, 2 * B, 2 * B + 1, 3 * B),
);
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant("write" as const),
    at: sizeNear,
    length: fc.integer({ min: 1, max: 2 * B + 3 }),
    byte: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({ kind: fc.constant("truncate" as const), size: sizeNear }),
);

function applyToModel(model: Buffer, o: Op): Buffer {
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
  it("matches a plain buffer after any sequence of writes and truncates, and after reopening", async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 25 }), async (ops) => {
        const path = join(dir, `f${run++}`);
        const ring = keyring();
        const file = await createLowerFile(path, ring, geometry, log);
        let model: Buffer = Buffer.alloc(0);
        for (const o of ops) {
          if (o.kind === "write") await file.write(o.at, Buffer.alloc(o.length, o.byte));
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
