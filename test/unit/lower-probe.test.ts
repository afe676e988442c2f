import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmod, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { probeLower, requireFitLower } from "../../src/volume/lower-probe.js";

describe("lower probe", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "cryptmount-probe-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("passes on a local directory and leaves it empty", async () => {
    expect(await probeLower(dir)).toBeUndefined();
    expect(await readdir(dir)).toEqual([]);
  });

  it("probes the nearest existing parent for init of a missing lower, and creates nothing", async () => {
    expect(await probeLower(join(dir, "a", "b"), { mayNotExist: true })).toBeUndefined();
    expect(await readdir(dir)).toEqual([]);
  });

  it("leaves a non-directory or an unwritable directory to the command's own errors", async () => {
    await writeFile(join(dir, "file"), "x");
    try {
      expect(await probeLower(join(dir, "file"))).toBeUndefined();
      expect(await probeLower(join(dir, "file", "below"), { mayNotExist: true })).toBeUndefined();
      // init never writes into a non-empty directory (it refuses it anyway).
      await expect(requireFitLower("init", dir, {})).resolves.toBeUndefined();
    } finally {
      await rm(join(dir, "file"));
    }
    if (process.getuid?.() !== 0) {
      await chmod(dir, 0o500);
      try {
        expect(await probeLower(dir)).toBeUndefined();
      } finally {
        await chmod(dir, 0o700);
      }
    }
  });

  it("--no-probe, -o no_probe and read-only mounts skip it", async () => {
    const opts = [
      { probe: false },
      { options: ["allow_other,no_probe"] },
      { options: ["ro"] },
      { readOnly: true },
      {},
    ];
    for (const o of opts) await expect(requireFitLower("mount", dir, o)).resolves.toBeUndefined();
    expect(await readdir(dir)).toEqual([]);
  });
});
