// The checked-in volumes test/fixtures/volume-v1 (written by the v1 code;
// regenerated once before the first release, when the final-block rule
// changed), test/fixtures/volume-v2 (written by the v2 code, with a
// merged directory and planted directory IDs) and test/fixtures/volume-v3
// (the v3 code: objects for symlinks and special files, a file with holes)
// are old volumes: every later
// build must unlock them and read back exactly the tree in their
// .expected.json. A failure here means old volumes would no longer open.
// Never regenerate a fixture to make this pass.

import { cp, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Keyring } from "../../src/crypto/keys.js";
import { AUTHENTICATED_DIR_IDS } from "../../src/format/config.js";
import { classifyLowerEntry } from "../../src/format/names.js";
import { parseRecoveryKey } from "../../src/format/recovery.js";
import { Fsck } from "../../src/volume/fsck.js";
import { upgrade } from "../../src/volume/upgrade.js";
import { CONFIG_BACKUP, CONFIG_FILE, loadConfig, unlockVolume } from "../../src/volume/volume.js";
import { readVolumeTree, type TreeEntry } from "./lower-walk.js";

interface Expected {
  passphrase: string;
  recoveryKey: string;
  blockSize: number;
  entries: TreeEntry[];
  foreign: string[];
  forgedDirIds?: string[];
}

const fixturePath = (v: number) =>
  fileURLToPath(new URL(`../fixtures/volume-v${v}`, import.meta.url));
const expectedOf = (v: number) =>
  JSON.parse(
    readFileSync(new URL(`../fixtures/volume-v${v}.expected.json`, import.meta.url), "utf8"),
  ) as Expected;

let temp: string;
beforeAll(async () => {
  temp = await mkdtemp(join(tmpdir(), "cryptmount-fixture-"));
});
afterAll(async () => {
  await rm(temp, { recursive: true, force: true });
});

/** Every lower entry name below `root`, relative, sorted: the v1 fixture must not change on disk. */
async function lowerNames(root: string): Promise<string[]> {
  return (await readdir(root, { recursive: true })).map(String).sort();
}

/**
 * What fsck reports on the fixtures: the foreign entry (desktop.ini), the
 * Syncthing conflict copy of a genuine name, which the mount shows (§3.3)
 * and fsck therefore reads: it holds 13 cleartext bytes, not a file of the
 * format (SHORT_HEADER); the merge; and in v2 and v3 the planted IDs.
 */
const FIXTURE_CODES = ["CONFLICT_COPY", "FOREIGN_ENTRY", "MERGED_DIR_IDS", "SHORT_HEADER"];
const WITH_PLANTED_IDS = [...FIXTURE_CODES, "FORGED_DIR_ID", "FORGED_DIR_ID"].sort();

describe.each([
  { version: 1, fsckCodes: FIXTURE_CODES },
  { version: 2, fsckCodes: WITH_PLANTED_IDS },
  { version: 3, fsckCodes: WITH_PLANTED_IDS },
])("fixture volume v$version", ({ version, fsckCodes }) => {
  const fixture = fixturePath(version);
  const expected = expectedOf(version);
  const passphrase = {
    kind: "passphrase" as const,
    bytes: Buffer.from(expected.passphrase, "utf8"),
  };
  let keyring: Keyring;

  beforeAll(async () => {
    const unlocked = await unlockVolume(fixture, passphrase);
    expect(unlocked.config.version).toBe(version);
    keyring = unlocked.keyring;
  });
  afterAll(() => keyring?.wipe());

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
    const tree = await readVolumeTree(fixture, keyring, expected.blockSize, version);
    expect(tree.entries).toEqual(expected.entries);
    expect(tree.forgedDirIds).toEqual(expected.forgedDirIds ?? []);
  });

  it("sees sync-conflict copies and other foreign entries as foreign", async () => {
    const tree = await readVolumeTree(fixture, keyring, expected.blockSize, version);
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
    if (version >= 3) {
      for (const type of ["fifo", "socket", "chardev", "blockdev"])
        expect(expected.entries.some((e) => e.type === type)).toBe(true);
      expect(byPath.get("docs/longest-link")).toMatchObject({ type: "symlink" });
      expect(byPath.get("holes.bin")).toMatchObject({ type: "file" });
    }
    if (version >= 2) {
      // Both plants: the v2 form with a made-up tag, and the bare v1 form.
      const forms = expected.forgedDirIds!.map((p) => {
        const kind = classifyLowerEntry(p.split("/").pop()!);
        return kind.kind === "dir-id" ? kind.form : kind.kind;
      });
      expect(forms.sort()).toEqual(["v1", "v2"]);
    }
  });

  it("fsck finds only the expected problems: foreign entries, the conflict copy, the merge, and (v2) the planted IDs", async () => {
    // record: false, so that the checked-in fixture is never written (no check record, §3.4).
    const report = await new Fsck(fixture, keyring, expected.blockSize, {
      formatVersion: version,
      record: false,
    }).run();
    expect(report.problems.map((p) => p.code).sort()).toEqual(fsckCodes);
    expect(
      report.problems
        .filter((p) => p.code === "FORGED_DIR_ID")
        .map((p) => p.lower)
        .sort(),
    ).toEqual(expected.forgedDirIds ?? []);
    // Every file, and the conflict copy.
    expect(report.files).toBe(expected.entries.filter((e) => e.type === "file").length + 1);
  });

  it("a copy with a damaged primary config still unlocks from the backup", async () => {
    const copy = join(temp, `damaged-v${version}`);
    await cp(fixture, copy, { recursive: true, verbatimSymlinks: true });
    await writeFile(
      join(copy, CONFIG_FILE),
      (await readFile(join(copy, CONFIG_FILE), "utf8")).slice(0, 100),
    );
    const unlocked = await unlockVolume(copy, passphrase);
    expect(unlocked.usedBackup).toBe(true);
    expect(
      (await readVolumeTree(copy, unlocked.keyring, expected.blockSize, version)).entries,
    ).toEqual(expected.entries);
    unlocked.close();
  });
});

describe("fixture volume v1, upgraded", () => {
  const fixture = fixturePath(1);
  const expected = expectedOf(1);
  const passphrase = {
    kind: "passphrase" as const,
    bytes: Buffer.from(expected.passphrase, "utf8"),
  };

  it("upgrade of a copy gives a version-3 volume that reads identically; the fixture is untouched", async () => {
    const before = await lowerNames(fixture);
    const copy = join(temp, "upgraded");
    await cp(fixture, copy, { recursive: true, verbatimSymlinks: true });
    const unlocked = await unlockVolume(copy, passphrase);
    const result = await upgrade(unlocked);
    unlocked.keyring.wipe();
    const ids = before.filter((p) => /(^|\/)cm\.d\.[^/]+$/.test(p)).length;
    expect(result).toMatchObject({ from: 1, created: ids, removed: ids, leftovers: [] });

    const { config } = await loadConfig(copy);
    expect(config.version).toBe(3);
    expect(config.features).toContain(AUTHENTICATED_DIR_IDS);
    expect(await readFile(join(copy, CONFIG_BACKUP), "utf8")).toBe(
      await readFile(join(copy, CONFIG_FILE), "utf8"),
    );
    const reopened = await unlockVolume(copy, passphrase);
    const tree = await readVolumeTree(copy, reopened.keyring, expected.blockSize, 3);
    expect(tree.entries).toEqual(expected.entries);
    expect(tree.foreign).toEqual([...expected.foreign].sort());
    expect(tree.forgedDirIds).toEqual([]);
    const report = await new Fsck(copy, reopened.keyring, expected.blockSize).run();
    expect(report.problems.map((p) => p.code).sort()).toEqual(FIXTURE_CODES);
    // Every ID entry is now in the v2 form.
    for (const p of await lowerNames(copy)) {
      const kind = classifyLowerEntry(p.split("/").pop()!);
      if (kind.kind === "dir-id") expect(kind.form).toBe("v2");
    }
    reopened.keyring.wipe();
    expect(await lowerNames(fixture)).toEqual(before);
  });
});
