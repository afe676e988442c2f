// Rekey at the volume level (docs/format.md, "Rekey"): plain rekey moves
// every header to the new epoch and keeps every slot; rekey with revokeWith
// also replaces the slot key, keeps only the slot that unlocked (rewrapped)
// and a new recovery slot, so every other secret, even together with an old
// copy of the config, opens nothing new.

import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Keyring } from "../../src/crypto/keys.js";
import {
  ARGON2_MINIMUM,
  openMountKeys,
  parseConfig,
  type VolumeConfig,
} from "../../src/format/config.js";
import { ContentGeometry, sealBlocks } from "../../src/format/content.js";
import { isFormatError } from "../../src/format/errors.js";
import { createHeader, openHeader, HEADER_SIZE } from "../../src/format/header.js";
import { dirIdEntryName } from "../../src/format/dir-ids.js";
import { SIDECAR_SUFFIX, encryptName, lowerEntryFor } from "../../src/format/names.js";
import { parseRecoveryKey } from "../../src/format/recovery.js";
import { createLowerFile } from "../helpers/lower-files.js";
import type { Secret } from "../../src/keys/kek.js";
import { rejection } from "../helpers/user-error.js";
import { Fsck } from "../../src/volume/fsck.js";
import { rekey } from "../../src/volume/rekey.js";
import {
  CONFIG_FILE,
  initVolume,
  unlockVolume,
  unlockWithSecret,
} from "../../src/volume/volume.js";
import { lowerFiles, readVolumeTree, type TreeEntry } from "./lower-walk.js";

const B = 4096;
const geometry = new ContentGeometry(B);
const log = pino({ level: "silent" });
const passphrase = (text: string): Secret => ({
  kind: "passphrase",
  bytes: Buffer.from(text, "utf8"),
});
const MAIN = passphrase("main passphrase");
const OTHER = passphrase("other passphrase");
const KEYFILE: Secret = { kind: "keyfile", bytes: randomBytes(64) };
const recovery = (text: string): Secret => ({ kind: "recovery", bytes: parseRecoveryKey(text) });

let temp: string;
beforeAll(async () => {
  temp = await mkdtemp(join(tmpdir(), "cryptmount-rekey-"));
});
afterAll(async () => {
  await rm(temp, { recursive: true, force: true });
});

/** Exit code of a rejected unlock (3 for a wrong secret). */
async function refusal(promise: Promise<unknown>): Promise<number> {
  return (await rejection(promise)).exitCode;
}

/**
 * A volume with three user slots and a recovery slot, holding files of
 * several shapes: written with OpenFile and with the format functions, in
 * the root and in a subdirectory, one under a long name.
 */
async function makeVolume(name: string): Promise<{ lower: string; recoveryKey: string }> {
  const lower = join(temp, name);
  const { recoveryKey } = await initVolume(lower, {
    slots: [
      { secret: MAIN, label: "main", kdf: ARGON2_MINIMUM },
      { secret: OTHER, label: "laptop", kdf: ARGON2_MINIMUM },
      { secret: KEYFILE, label: "server" },
    ],
    blockSize: B,
  });
  const { keyring } = await unlockVolume(lower, MAIN);
  const entry = (dirId: Buffer, dir: string, clear: string) => {
    const e = lowerEntryFor(encryptName(keyring.volume.names, dirId, clear));
    return { path: join(dir, e.entry), sidecar: e.longName };
  };
  const raw = async (path: string, data: Buffer) => {
    const { bytes, header } = createHeader(keyring, { blockSize: B });
    const file = { fileKey: header.fileKey, fileId: header.fileId, geometry };
    await writeFile(path, Buffer.concat([bytes, sealBlocks(file, 0, data, true)]));
  };
  const root = keyring.volume.rootDirId;
  for (const [clear, size] of [
    ["empty", 0],
    ["one-block", B],
    ["partial", B + 5],
    ["three-blocks", 3 * B],
  ] as const) {
    await raw(entry(root, lower, clear).path, pattern(size));
  }
  // Through OpenFile, as the filesystem writes: created empty, then appended in pieces.
  const written = entry(root, lower, "written");
  const file = await createLowerFile(written.path, keyring, geometry, log);
  await file.write(0, pattern(B - 1));
  await file.write(B - 1, pattern(B + 2).subarray(B - 1));
  await file.close();
  // A subdirectory with its ID entry, a file in it, and a long name.
  const sub = entry(root, lower, "sub");
  await mkdir(sub.path);
  const subId = randomBytes(16);
  await writeFile(join(sub.path, dirIdEntryName(keyring.volume.dirIds, subId)), "");
  await raw(entry(subId, sub.path, "inner").path, pattern(10));
  const long = entry(subId, sub.path, "L".repeat(150));
  await writeFile(long.path + SIDECAR_SUFFIX, long.sidecar!);
  await raw(long.path, pattern(2 * B + 1));
  keyring.wipe();
  return { lower, recoveryKey: recoveryKey! };
}

function pattern(size: number): Buffer {
  return Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + 3) & 0xff));
}

async function tree(lower: string, keyring: Keyring): Promise<TreeEntry[]> {
  return (await readVolumeTree(lower, keyring, B)).entries;
}

async function fsckProblems(lower: string, keyring: Keyring) {
  return (await new Fsck(lower, keyring, B).run()).problems;
}

async function headerEpochs(lower: string, keyring: Keyring): Promise<(number | undefined)[][]> {
  const epochs = [];
  for (const { content } of await lowerFiles(lower)) {
    const bytes = content.subarray(0, HEADER_SIZE);
    epochs.push([...openHeader(keyring, bytes, B).slotEpochs]);
  }
  return epochs;
}

describe("rekey", () => {
  it("plain rekey moves every header to the new epoch and keeps every slot and the slot key", async () => {
    const { lower, recoveryKey } = await makeVolume("plain");
    const before = await unlockVolume(lower, MAIN);
    const expected = await tree(lower, before.keyring);
    expect(expected.map((e) => e.path)).toContain("sub/inner");
    const oldSlotKey = Buffer.from(before.slotKey);

    const result = await rekey(before, undefined, {});
    expect(result).toMatchObject({ from: 1, to: 2, files: 7, rewrapped: 7, problems: [] });
    expect(result.recoveryKey).toBeUndefined();

    const config = parseConfig(await readFile(join(lower, CONFIG_FILE), "utf8"));
    expect(config.epoch).toBe(2);
    expect(config.rekey).toBeUndefined();
    expect(config.slots).toEqual(before.config.slots);
    for (const secret of [MAIN, OTHER, KEYFILE, recovery(recoveryKey)]) {
      const unlocked = await unlockVolume(lower, secret);
      expect(unlocked.slotKey).toEqual(oldSlotKey);
      expect(unlocked.keyring.knownEpochs()).toEqual([2]);
      unlocked.close();
    }
    const after = await unlockVolume(lower, MAIN);
    expect(await tree(lower, after.keyring)).toEqual(expected);
    expect(await headerEpochs(lower, after.keyring)).toEqual(
      Array.from({ length: 7 }, () => [undefined, 2]),
    );
    expect(await fsckProblems(lower, after.keyring)).toEqual([]);
    // The gap --revoke-others closes: the unchanged slot key opens the new bundle.
    expect(openMountKeys(config, oldSlotKey).has(2)).toBe(true);
    after.close();
    before.close();
  });

  it("rekey with revokeWith keeps only the unlocking slot and a new recovery key", async () => {
    const { lower, recoveryKey } = await makeVolume("revoke");
    const oldConfigText = await readFile(join(lower, CONFIG_FILE), "utf8");
    const oldConfig = parseConfig(oldConfigText);
    const before = await unlockVolume(lower, MAIN);
    const expected = await tree(lower, before.keyring);
    const oldSlotKey = Buffer.from(before.slotKey);

    const result = await rekey(before, undefined, { revokeWith: MAIN });
    expect(result).toMatchObject({ from: 1, to: 2, files: 7, rewrapped: 7, problems: [] });
    expect(result.recoveryKey).toMatch(/^([0-9A-HJKMNP-TV-Z]{5}-){10}[0-9A-HJKMNP-TV-Z]{5}$/);
    expect(result.recoveryKey).not.toBe(recoveryKey);

    // The config: the main slot (same id, label and KDF, fresh salt) and a new recovery slot.
    const config: VolumeConfig = parseConfig(await readFile(join(lower, CONFIG_FILE), "utf8"));
    expect(config.epoch).toBe(2);
    expect(config.rekey).toBeUndefined();
    const [main, fresh, ...rest] = config.slots;
    expect(rest).toEqual([]);
    const oldMain = oldConfig.slots.find((s) => s.label === "main")!;
    expect(main).toMatchObject({ id: oldMain.id, kind: "passphrase", label: "main" });
    expect(main!.kdf).toEqual(oldMain.kdf);
    expect(main!.salt).not.toBe(oldMain.salt);
    expect(main!.wrapped).not.toBe(oldMain.wrapped);
    expect(fresh).toMatchObject({ kind: "recovery", label: "recovery key" });
    expect(fresh!.id).toBe(Math.max(...oldConfig.slots.map((s) => s.id)) + 1);

    // The kept passphrase and the new recovery key open the volume, under a new slot key.
    const byMain = await unlockVolume(lower, MAIN);
    const byNewRecovery = await unlockVolume(lower, recovery(result.recoveryKey!));
    expect(byMain.slotKey).not.toEqual(oldSlotKey);
    expect(byNewRecovery.slotKey).toEqual(byMain.slotKey);
    expect(byMain.keyring.knownEpochs()).toEqual([2]);
    expect(byNewRecovery.keyring.volume.names).toEqual(byMain.keyring.volume.names);
    byNewRecovery.close();

    // Every other secret is refused as a wrong secret (exit code 3).
    expect(await refusal(unlockVolume(lower, OTHER))).toBe(3);
    expect(await refusal(unlockVolume(lower, KEYFILE))).toBe(3);
    expect(await refusal(unlockVolume(lower, recovery(recoveryKey)))).toBe(3);

    // A removed secret with an old copy of the config still yields the old slot key,
    // but that no longer opens the current mount-key bundle.
    const stale = await unlockWithSecret(lower, oldConfig, OTHER);
    expect(stale.slotKey).toEqual(oldSlotKey);
    stale.close();
    let caught: unknown;
    try {
      openMountKeys(config, oldSlotKey);
    } catch (err) {
      caught = err;
    }
    expect(isFormatError(caught, "CONFIG_AUTH")).toBe(true);

    // Every file reads back unchanged, every header is under epoch 2 only, fsck is clean.
    expect(await tree(lower, byMain.keyring)).toEqual(expected);
    expect(await headerEpochs(lower, byMain.keyring)).toEqual(
      Array.from({ length: 7 }, () => [undefined, 2]),
    );
    expect(await fsckProblems(lower, byMain.keyring)).toEqual([]);
    byMain.close();
    before.close();
  });

  it("revoking from a key-file slot keeps that key file and drops both passphrases", async () => {
    const { lower, recoveryKey } = await makeVolume("revoke-keyfile");
    const unlocked = await unlockVolume(lower, KEYFILE);
    const result = await rekey(unlocked, undefined, { revokeWith: KEYFILE });
    expect(result.problems).toEqual([]);
    const config = parseConfig(await readFile(join(lower, CONFIG_FILE), "utf8"));
    expect(config.slots.map((s) => [s.kind, s.label])).toEqual([
      ["keyfile", "server"],
      ["recovery", "recovery key"],
    ]);
    expect(config.slots[0]!.kdf).toBeUndefined();
    expect(await refusal(unlockVolume(lower, MAIN))).toBe(3);
    expect(await refusal(unlockVolume(lower, recovery(recoveryKey)))).toBe(3);
    const again = await unlockVolume(lower, KEYFILE);
    expect(await fsckProblems(lower, again.keyring)).toEqual([]);
    again.close();
    unlocked.close();
  });

  it("rewraps the conflict copies the mount shows; one that is a directory keeps the old key until renamed", async () => {
    const { lower } = await makeVolume("conflicts");
    const before = await unlockVolume(lower, MAIN);
    const root = before.keyring.volume.rootDirId;
    const name = (clear: string) => encryptName(before.keyring.volume.names, root, clear);
    // rclone bisync's copies of a file, a directory copy, and a name that does not authenticate.
    await copyFile(join(lower, name("partial")), join(lower, `${name("partial")}..path1`));
    await copyFile(join(lower, name("one-block")), join(lower, `${name("partial")}..path2`));
    await mkdir(join(lower, `${name("sub")}..path2`));
    await writeFile(join(lower, "AAAA..path1"), "not a file of the volume");

    const first = await rekey(before, undefined, {});
    expect(first).toMatchObject({ files: 9, rewrapped: 9 });
    expect(first.problems).toEqual([
      {
        lower: join(lower, `${name("sub")}..path2`),
        message: expect.stringMatching(/conflict copy of a directory/),
      },
    ]);
    await rm(join(lower, `${name("sub")}..path2`), { recursive: true });
    const again = await unlockVolume(lower, MAIN);
    expect(again.keyring.knownEpochs()).toEqual([1, 2]);
    expect(await rekey(again, undefined, {})).toMatchObject({ rewrapped: 0, problems: [] });
    const after = await unlockVolume(lower, MAIN);
    expect(after.keyring.knownEpochs()).toEqual([2]);
    const problems = await fsckProblems(lower, after.keyring);
    expect(problems.filter((p) => p.severity === "error")).toEqual([]);
    expect(problems.filter((p) => p.code === "CONFLICT_COPY").map((p) => p.path)).toEqual([
      "/partial (conflict path1)",
      "/partial (conflict path2)",
    ]);
    for (const copy of ["..path1", "..path2"]) {
      const bytes = (await readFile(join(lower, name("partial") + copy))).subarray(0, HEADER_SIZE);
      expect([...openHeader(after.keyring, bytes, B).slotEpochs]).toEqual([undefined, 2]);
    }
    after.close();
    again.close();
    before.close();
  });
});
