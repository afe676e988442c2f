// cryptmount upgrade (docs/format.md §22.2, §23.2): a crash after any step,
// or after any directory of steps 1, 3 and 4, leaves a volume that still
// reads the same tree, and running upgrade again finishes the job. Works on
// copies of the checked-in v1 and v2 fixture volumes.

import { cp, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ARGON2_MINIMUM } from "../../src/format/config.js";
import { classifyLowerEntry, v1DirIdEntryName } from "../../src/format/names.js";
import { upgrade, type UpgradeResult, type UpgradeStep } from "../../src/volume/upgrade.js";
import {
  CONFIG_BACKUP,
  CONFIG_FILE,
  initVolume,
  loadConfig,
  unlockVolume,
} from "../../src/volume/volume.js";
import { readVolumeTree, type TreeEntry } from "./lower-walk.js";

const fixture = fileURLToPath(new URL("../fixtures/volume-v1", import.meta.url));
const expected = JSON.parse(
  readFileSync(new URL("../fixtures/volume-v1.expected.json", import.meta.url), "utf8"),
) as { passphrase: string; blockSize: number; entries: TreeEntry[] };
const secret = () => ({ kind: "passphrase" as const, bytes: Buffer.from(expected.passphrase) });

let temp: string;
let n = 0;
beforeAll(async () => {
  temp = await mkdtemp(join(tmpdir(), "cryptmount-upgrade-"));
});
afterAll(async () => {
  await rm(temp, { recursive: true, force: true });
});

async function copy(): Promise<string> {
  const dir = join(temp, `v${n++}`);
  await cp(fixture, dir, { recursive: true, verbatimSymlinks: true });
  return dir;
}

class Crash extends Error {}

/** Runs upgrade, crashing at the `at`-th call of onStep; true when it crashed. */
async function run(lower: string, at = Infinity) {
  const unlocked = await unlockVolume(lower, secret());
  let calls = 0;
  try {
    return await upgrade(unlocked, {
      onStep: (_step: UpgradeStep) => {
        if (++calls === at) throw new Crash();
      },
    });
  } catch (err) {
    if (err instanceof Crash) return "crashed";
    throw err;
  } finally {
    unlocked.keyring.wipe();
  }
}

/** The tree as the volume's own version reads it. */
async function tree(lower: string): Promise<TreeEntry[]> {
  const unlocked = await unlockVolume(lower, secret());
  try {
    return (
      await readVolumeTree(lower, unlocked.keyring, expected.blockSize, unlocked.config.version)
    ).entries;
  } finally {
    unlocked.keyring.wipe();
  }
}

/** Lower symlinks left anywhere in the volume (none once step 4 is done). */
async function lowerSymlinks(lower: string): Promise<number> {
  const entries = await readdir(lower, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isSymbolicLink()).length;
}

async function idForms(lower: string): Promise<string[]> {
  const forms: string[] = [];
  for (const p of await readdir(lower, { recursive: true })) {
    const kind = classifyLowerEntry(String(p).split("/").pop()!);
    if (kind.kind === "dir-id") forms.push(kind.form);
  }
  return forms.sort();
}

describe("upgrade", () => {
  it("counts its steps: one per directory in steps 1, 3 and 4, and one after each step", async () => {
    const lower = await copy();
    const steps: string[] = [];
    const unlocked = await unlockVolume(lower, secret());
    const result = await upgrade(unlocked, { onStep: (s, d) => steps.push(d ? `${s}:dir` : s) });
    unlocked.keyring.wipe();
    const dirs = result.directories;
    expect(steps).toEqual([
      ...Array<string>(dirs).fill("entries:dir"),
      "entries",
      "config",
      ...Array<string>(dirs).fill("cleanup:dir"),
      "cleanup",
      ...Array<string>(dirs + 1).fill("symlinks:dir"), // the root too
      "symlinks",
    ]);
    expect(await idForms(lower)).toEqual(Array<string>(result.created).fill("v2"));
    expect(result.symlinks).toBe(expected.entries.filter((e) => e.type === "symlink").length);
    expect(await lowerSymlinks(lower)).toBe(0);
  });

  it("a crash at any step leaves a readable volume, and a rerun finishes it", async () => {
    const probe = await copy();
    const { directories } = (await run(probe)) as UpgradeResult;
    const steps = 3 * directories + 5;
    for (let at = 1; at <= steps; at++) {
      const lower = await copy();
      expect(await run(lower, at)).toBe("crashed");
      expect(await tree(lower)).toEqual(expected.entries);
      const again = await run(lower);
      expect(again).toMatchObject({ leftovers: [] });
      expect((await loadConfig(lower)).config.version).toBe(3);
      expect(await tree(lower)).toEqual(expected.entries);
      expect(await lowerSymlinks(lower)).toBe(0);
      // No temporary object of step 4 stays behind.
      expect((await readdir(lower, { recursive: true })).filter((p) => /\.tmp-/.test(p))).toEqual(
        [],
      );
      expect(await idForms(lower)).toEqual((await idForms(fixture)).map(() => "v2"));
      expect(await readFile(join(lower, CONFIG_BACKUP), "utf8")).toBe(
        await readFile(join(lower, CONFIG_FILE), "utf8"),
      );
    }
  });

  it("a crash between the two config renames (primary v3, backup v1) is finished by a rerun", async () => {
    // The v3 config this volume gets (same keys: a copy of the same fixture).
    const lower = await copy();
    const v1Backup = await readFile(join(lower, CONFIG_BACKUP), "utf8");
    const { directories } = (await run(lower)) as UpgradeResult;
    // Step 1 done, then the primary renamed into place but not the backup.
    const again = await copy();
    expect(await run(again, directories + 1)).toBe("crashed");
    await writeFile(join(again, CONFIG_FILE), await readFile(join(lower, CONFIG_FILE), "utf8"));
    await writeFile(join(again, CONFIG_BACKUP), v1Backup);
    const result = await run(again);
    expect(result).toMatchObject({ from: 3, leftovers: [] });
    expect(await readFile(join(again, CONFIG_BACKUP), "utf8")).toBe(
      await readFile(join(again, CONFIG_FILE), "utf8"),
    );
    expect(await tree(again)).toEqual(expected.entries);
  });

  it("reports a v1 entry that appears after the upgrade, and leaves it", async () => {
    const lower = await copy();
    await run(lower);
    const dir = join(
      lower,
      (await readdir(lower, { withFileTypes: true })).find(
        (e) => e.isDirectory() && classifyLowerEntry(e.name).kind === "name",
      )!.name,
    );
    const late = v1DirIdEntryName(Buffer.alloc(16, 9));
    await writeFile(join(dir, late), "");
    const result = await run(lower);
    expect(result).toMatchObject({ from: 3, created: 0, removed: 0 });
    expect((result as UpgradeResult).leftovers).toEqual([join(dir, late).slice(lower.length + 1)]);
    expect(await readdir(dir)).toContain(late);
  });

  it("reports an ID found in two directories (it is authenticated anyway)", async () => {
    const lower = await copy();
    const dirs = (await readdir(lower, { withFileTypes: true }))
      .filter((e) => e.isDirectory() && classifyLowerEntry(e.name).kind === "name")
      .map((e) => join(lower, e.name));
    const id = (await readdir(dirs[0]!)).find((e) => classifyLowerEntry(e).kind === "dir-id")!;
    await writeFile(join(dirs[1]!, id), "");
    const result = (await run(lower)) as UpgradeResult;
    expect(result.duplicates).toHaveLength(1);
  });

  it("does nothing to a volume that is already version 3", async () => {
    const lower = join(temp, "fresh");
    await initVolume(lower, {
      slots: [{ secret: secret(), kdf: ARGON2_MINIMUM }],
      recovery: false,
    });
    const before = await readFile(join(lower, CONFIG_FILE), "utf8");
    expect(await run(lower)).toMatchObject({
      from: 3,
      directories: 0,
      created: 0,
      removed: 0,
      leftovers: [],
    });
    expect(await readFile(join(lower, CONFIG_FILE), "utf8")).toBe(before);
  });
});

describe("upgrade of a version-2 volume", () => {
  const v2 = fileURLToPath(new URL("../fixtures/volume-v2", import.meta.url));
  const v2Expected = JSON.parse(
    readFileSync(new URL("../fixtures/volume-v2.expected.json", import.meta.url), "utf8"),
  ) as { passphrase: string; blockSize: number; entries: TreeEntry[] };

  it("keeps its IDs, turns its symlinks into objects, and reads the same tree", async () => {
    const lower = join(temp, "from-v2");
    await cp(v2, lower, { recursive: true, verbatimSymlinks: true });
    // What a crash inside step 4 leaves: a temporary object beside the symlink it was for.
    const link = (await readdir(lower, { withFileTypes: true })).find((e) => e.isSymbolicLink())!;
    const temporary = `${link.name}.tmp-0123456789ab`;
    await writeFile(join(lower, temporary), "half-written");
    const key = { kind: "passphrase" as const, bytes: Buffer.from(v2Expected.passphrase) };
    const unlocked = await unlockVolume(lower, key);
    const result = await upgrade(unlocked);
    unlocked.keyring.wipe();
    expect(result).toMatchObject({ from: 2, created: 0, unconverted: [] });
    expect(result.symlinks).toBe(v2Expected.entries.filter((e) => e.type === "symlink").length);
    expect(await lowerSymlinks(lower)).toBe(0);
    expect(await readdir(lower)).not.toContain(temporary);
    const reopened = await unlockVolume(lower, key);
    expect(reopened.config.version).toBe(3);
    const read = await readVolumeTree(lower, reopened.keyring, v2Expected.blockSize, 3);
    reopened.keyring.wipe();
    expect(read.entries).toEqual(v2Expected.entries);
  });
});
