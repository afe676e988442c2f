// The volume lock (src/mount/volume-lock.ts) in one process: flock locks
// belong to open file descriptions, so two opens here conflict as two
// processes would. Mounts share; a rewrite is exclusive and waits for none.

import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { lockForMount, withVolumeExclusive } from "../../src/mount/volume-lock.js";

describe("volume lock", () => {
  it("mounts share it; a rewrite is refused under a mount and refuses mounts while it runs", async () => {
    const lower = mkdtempSync(join(tmpdir(), "cm-lock-"));
    const a = lockForMount(lower);
    const b = lockForMount(lower);
    await expect(withVolumeExclusive(lower, "rekey", async () => 1)).rejects.toMatchObject({
      exitCode: 6,
      message: expect.stringMatching(/in use/),
    });
    a.release();
    b.release();
    b.release(); // twice is harmless
    const inside = await withVolumeExclusive(lower, "rekey", async () => {
      expect(() => lockForMount(lower)).toThrow(/rekey, upgrade or fsck --repair/);
      await expect(withVolumeExclusive(lower, "upgrade", async () => 2)).rejects.toMatchObject({
        exitCode: 6,
      });
      return 3;
    });
    expect(inside).toBe(3);
    lockForMount(lower).release(); // free again
    // Released even when the work fails.
    await expect(
      withVolumeExclusive(lower, "rekey", async () => {
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    lockForMount(lower).release();
  });
});
