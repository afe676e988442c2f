import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmod, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { probeLower, requireFitLower } from "../../src/volume/lower-probe.js";
import { EXIT, UserError } from "../../src/errors.js";

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

  it.skipIf(process.getuid?.() === 0)(
    "names the failed check on an unwritable directory",
    async () => {
      await chmod(dir, 0o500);
      try {
        expect(await probeLower(dir)).toMatchObject({
          check: "a directory can be created",
          detail: "EACCES",
        });
        const refused = requireFitLower("init", dir, {});
        await expect(refused).rejects.toBeInstanceOf(UserError);
        await expect(refused).rejects.toMatchObject({ exitCode: EXIT.lowerUnsuitable });
      } finally {
        await chmod(dir, 0o700);
      }
    },
  );

  it("--no-probe, -o no_probe and read-only mounts skip it", async () => {
    const missing = join(dir, "nowhere", "at-all");
    // A mount of a missing lower would fail the probe; skipped, it resolves.
    await expect(requireFitLower("mount", missing, { probe: false })).resolves.toBeUndefined();
    await expect(
      requireFitLower("mount", missing, { options: ["allow_other,no_probe"] }),
    ).resolves.toBeUndefined();
    await expect(requireFitLower("mount", missing, { options: ["ro"] })).resolves.toBeUndefined();
    await expect(requireFitLower("mount", missing, { readOnly: true })).resolves.toBeUndefined();
    await expect(requireFitLower("mount", missing, {})).rejects.toMatchObject({
      exitCode: EXIT.lowerUnsuitable,
    });
  });
});
