// A seeded random sequence of thousands of operations (test/helpers/random_ops.py)
// applied to a plain directory and to the mount by the same script: the
// transcripts (which include hashes of everything read back along the way)
// and the final trees must be equal, also after a remount.

import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { HELPERS, Sandbox, haveFuse, run, runOk, sandboxSuite } from "../helpers/volume.js";

const script = join(HELPERS, "random_ops.py");
const COUNT = 3000;

let sb: Sandbox;

async function apply(root: string, seed: number): Promise<string> {
  const r = await run("python3", [script, "apply", root, String(seed), String(COUNT)], {
    timeoutMs: 240_000,
  });
  expect(r.stderr).toBe("");
  // Exit 1 means some operation failed; the transcript says which (compared below).
  expect([0, 1]).toContain(r.code);
  return r.stdout;
}

const manifest = (root: string) =>
  runOk("python3", [script, "manifest", root], { timeoutMs: 120_000 });

/** The first differing line of two transcripts, for a readable failure. */
function firstDifference(a: string, b: string): string | undefined {
  const la = a.split("\n");
  const lb = b.split("\n");
  for (let i = 0; i < Math.max(la.length, lb.length); i++) {
    if (la[i] !== lb[i]) return `line ${i + 1}:\n  plain: ${la[i]}\n  mount: ${lb[i]}`;
  }
  return undefined;
}

describe.skipIf(!haveFuse)("random operations", () => {
  sandboxSuite("random", (s) => {
    sb = s;
  });

  for (const seed of [20240601, 7]) {
    it(`seed ${seed}: ${COUNT} operations give the same results and tree as a plain directory`, async () => {
      const lower = await sb.createVolume();
      let m = await sb.mount(lower);
      const plain = await sb.mkdir("plain");
      const inMount = join(m.mountpoint, "tree");
      await runOk("mkdir", [inMount]);

      const expected = await apply(plain, seed);
      expect(expected).not.toContain(" ERROR ");
      const actual = await apply(inMount, seed);
      expect(firstDifference(expected, actual)).toBeUndefined();

      const want = await manifest(plain);
      expect(want.split("\n").length).toBeGreaterThan(50);
      expect(await manifest(inMount)).toBe(want);
      expect((await run("diff", ["-r", "--no-dereference", plain, inMount])).stdout).toBe("");

      m = await sb.remount(m);
      expect(await manifest(inMount)).toBe(want);
      expect((await run("diff", ["-r", "--no-dereference", plain, inMount])).stdout).toBe("");
      await sb.unmount(m);
    }, 300_000);
  }
});
