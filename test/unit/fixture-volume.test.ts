// The checked-in volume test/fixtures/volume-v1 was written by the v1 code
// (scripts/make-fixture.mjs; regenerated once before the first release, when
// the final-block rule changed). Every later build must unlock it and read
// back exactly the tree in volume-v1.expected.json: a failure here means old
// volumes would no longer open. Never regenerate the fixture to make this pass.

import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Keyring } from "../../src/crypto/keys.js";
import { parseRecoveryKey } from "../../src/format/recovery.js";
import { Fsck } from "../../src/volume/fsck.js";
import { CONFIG_FILE, unlockVolume } from "../../src/volume/volume.js";
import { readVolumeTree, type TreeEntry } from "./lower-walk.js";

const fixture = fileURLToPath(new URL("../fixtures/volume-v1", import.meta.url));
const expected = JSON.parse(
  readFileSync(new URL("../fixtures/volume-v1.expected.json", import.meta.url), "utf8"),
) as {
  passphrase: string;
  recoveryKey: string;
  blockSize: number;
  entries: TreeEntry[];
  foreign: string[];
};
const passphrase = { kind: "passphrase" as const, bytes: Buffer.from(expected.passphrase, "utf8") };

let keyring: Keyring;
let temp: string;

beforeAll(async () => {
  keyring = (await unlockVolume(fixture, passphrase)).keyring;
  temp = await mkdtemp(join(tmpdir(), "cryptmount-fixture-"));
});

afterAll(async () => {
  keyring?.wipe();
  await rm(temp, { recursive: true, force: true });
});

describe("fixture volume v1", () => {
  it("unlocks with its passphrase and with its recovery key", async () => {
    const byRecovery = await unlockVolume(fixture, {
      kind: "recovery",
      bytes: parseRecoveryKey(expected.recoveryKey),
    });
    expect(byRecovery.keyring.volume.names).toEqual(keyring.volume.names);
    expect(byRecovery.config.blockSize).toBe(expected.blockSize);
    byRecovery.close();
  });

  it("reads back exactly the expected cleartext tree", async () => {
    const tree = await readVolumeTree(fixture, keyring, expected.blockSize);
    expect(tree.entries).toEqual(expected.entries);
  });

  it("sees sync-conflict copies and other foreign entries as foreign", async () => {
    const tree = await readVolumeTree(fixture, keyring, expected.blockSize);
    expect(tree.foreign).toEqual([...expected.foreign].sort());
  });

  it("covers what it is meant to: a long name, a merged directory, an empty file, a symlink, a subdirectory", () => {
    const byPath = new Map(expected.entries.map((e) => [e.path, e]));
    expect([...byPath.keys()].some((p) => Buffer.byteLength(p, "utf8") >= 112)).toBe(true);
    expect(byPath.get("empty.txt")).toMatchObject({ type: "file", size: 0 });
    expect(byPath.get("link-to-hello")).toMatchObject({ type: "symlink" });
    expect(byPath.get("docs/deeper/leaf.txt")).toMatchObject({ type: "file" });
    expect(byPath.get("merged/from-first-machine.txt")).toMatchObject({ type: "file" });
    expect(byPath.get("merged/from-second-machine.txt")).toMatchObject({ type: "file" });
  });

  it("fsck finds no error, only the merged directory and the foreign entries", async () => {
    const report = await new Fsck(fixture, keyring, expected.blockSize).run();
    expect(report.problems.filter((p) => p.severity === "error")).toEqual([]);
    expect(report.problems.map((p) => p.code).sort()).toEqual([
      "FOREIGN_ENTRY",
      "FOREIGN_ENTRY",
      "MERGED_DIR_IDS",
    ]);
    expect(report.files).toBe(expected.entries.filter((e) => e.type === "file").length);
  });

  it("a copy with a damaged primary config still unlocks from the backup", async () => {
    const copy = join(temp, "damaged");
    await cp(fixture, copy, { recursive: true, verbatimSymlinks: true });
    await writeFile(
      join(copy, CONFIG_FILE),
      (await readFile(join(copy, CONFIG_FILE), "utf8")).slice(0, 100),
    );
    const unlocked = await unlockVolume(copy, passphrase);
    expect(unlocked.usedBackup).toBe(true);
    expect((await readVolumeTree(copy, unlocked.keyring, expected.blockSize)).entries).toEqual(
      expected.entries,
    );
    unlocked.close();
  });
});
