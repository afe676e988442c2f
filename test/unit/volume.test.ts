// Creating and unlocking volumes on disk: passphrase and recovery key open
// the same keys, a wrong passphrase is exit code 3, and a damaged primary
// config falls back to its backup.

import { mkdtemp, readFile, readdir, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ARGON2_MINIMUM, parseConfig } from "../../src/format/config.js";
import { parseRecoveryKey } from "../../src/format/recovery.js";
import type { Secret } from "../../src/keys/kek.js";
import { UserError } from "../../src/errors.js";
import { rejection } from "../helpers/user-error.js";
import {
  CONFIG_BACKUP,
  CONFIG_FILE,
  initVolume,
  loadConfig,
  unlockVolume,
} from "../../src/volume/volume.js";

const PASSPHRASE = "unit test passphrase";
const passphrase = (text: string): Secret => ({
  kind: "passphrase",
  bytes: Buffer.from(text, "utf8"),
});

let temp: string;
let lower: string;
let recoveryKey: string;

beforeAll(async () => {
  temp = await mkdtemp(join(tmpdir(), "cryptmount-unit-"));
  lower = join(temp, "volume");
  const made = await initVolume(lower, {
    slots: [{ secret: passphrase(PASSPHRASE), kdf: ARGON2_MINIMUM }],
    blockSize: 4096,
  });
  recoveryKey = made.recoveryKey!;
});

afterAll(async () => {
  await rm(temp, { recursive: true, force: true });
});

describe("initVolume", () => {
  it("writes a config and its backup, and nothing else", async () => {
    expect((await readdir(lower)).sort()).toEqual([CONFIG_FILE, CONFIG_BACKUP].sort());
    const primary = await readFile(join(lower, CONFIG_FILE), "utf8");
    expect(await readFile(join(lower, CONFIG_BACKUP), "utf8")).toBe(primary);
    const config = parseConfig(primary);
    expect(config.blockSize).toBe(4096);
    expect(config.epoch).toBe(1);
    expect(config.slots.map((s) => s.kind)).toEqual(["passphrase", "recovery"]);
    expect(config.slots[0]!.kdf).toEqual(ARGON2_MINIMUM);
    expect(recoveryKey).toMatch(/^([0-9A-HJKMNP-TV-Z]{5}-){10}[0-9A-HJKMNP-TV-Z]{5}$/);
  });

  it("refuses a directory that is already a volume, or not empty", async () => {
    expect(
      (
        await rejection(
          initVolume(lower, { slots: [{ secret: passphrase("x"), kdf: ARGON2_MINIMUM }] }),
        )
      ).exitCode,
    ).toBe(1);
    const other = join(temp, "not-empty");
    await initVolume(join(other, "sub"), {
      slots: [{ secret: passphrase("x"), kdf: ARGON2_MINIMUM }],
      recovery: false,
    });
    await expect(
      initVolume(other, { slots: [{ secret: passphrase("x"), kdf: ARGON2_MINIMUM }] }),
    ).rejects.toThrow(UserError);
  });
});

describe("unlock", () => {
  it("the passphrase and the recovery key open the same volume keys", async () => {
    const byPassphrase = await unlockVolume(lower, passphrase(PASSPHRASE));
    const byRecovery = await unlockVolume(lower, {
      kind: "recovery",
      bytes: parseRecoveryKey(recoveryKey),
    });
    expect(byPassphrase.slot.kind).toBe("passphrase");
    expect(byRecovery.slot.kind).toBe("recovery");
    expect(byPassphrase.keyring.volume.names).toEqual(byRecovery.keyring.volume.names);
    expect(byPassphrase.keyring.volume.rootDirId).toEqual(byRecovery.keyring.volume.rootDirId);
    expect(byPassphrase.keyring.current.headerWrap).toEqual(byRecovery.keyring.current.headerWrap);
    expect(byPassphrase.slotKey).toEqual(byRecovery.slotKey);
    expect(byPassphrase.usedBackup).toBe(false);
  });

  it("a wrong passphrase is a UserError with exit code 3", async () => {
    const err = await rejection(unlockVolume(lower, passphrase("not the passphrase")));
    expect(err.exitCode).toBe(3);
    expect(err.message).not.toContain("not the passphrase");
  });

  it("a wrong recovery key and a missing slot kind are exit code 3 too", async () => {
    expect(
      (await rejection(unlockVolume(lower, { kind: "recovery", bytes: Buffer.alloc(32, 1) })))
        .exitCode,
    ).toBe(3);
    expect(
      (await rejection(unlockVolume(lower, { kind: "keyfile", bytes: Buffer.alloc(64, 1) })))
        .exitCode,
    ).toBe(3);
  });

  it("a directory that is not a volume is exit code 4", async () => {
    const empty = await mkdtemp(join(temp, "empty-"));
    expect((await rejection(unlockVolume(empty, passphrase(PASSPHRASE)))).exitCode).toBe(4);
    expect(
      (await rejection(unlockVolume(join(temp, "missing"), passphrase(PASSPHRASE)))).exitCode,
    ).toBe(4);
  });
});

describe("config backup", () => {
  async function copyOfVolume(name: string): Promise<string> {
    const dir = join(temp, name);
    await initVolume(dir, {
      slots: [{ secret: passphrase(PASSPHRASE), kdf: ARGON2_MINIMUM }],
      recovery: false,
    });
    return dir;
  }

  it("a corrupted primary config falls back to the backup", async () => {
    const dir = await copyOfVolume("corrupt-primary");
    await writeFile(join(dir, CONFIG_FILE), '{"format": "cryptmount", "vers');
    const loaded = await loadConfig(dir);
    expect(loaded.usedBackup).toBe(true);
    const unlocked = await unlockVolume(dir, passphrase(PASSPHRASE));
    expect(unlocked.usedBackup).toBe(true);
    expect(unlocked.keyring.currentEpoch).toBe(1);
  });

  it("a missing primary config falls back to the backup", async () => {
    const dir = await copyOfVolume("missing-primary");
    await unlink(join(dir, CONFIG_FILE));
    expect((await unlockVolume(dir, passphrase(PASSPHRASE))).usedBackup).toBe(true);
  });

  it("a primary from a newer version is a refusal, not damage: no fallback (exit code 4)", async () => {
    const dir = await copyOfVolume("newer-primary");
    const text = await readFile(join(dir, CONFIG_FILE), "utf8");
    await writeFile(join(dir, CONFIG_FILE), text.replace('"version": 3', '"version": 4'));
    expect((await rejection(loadConfig(dir))).exitCode).toBe(4);
  });

  it("both copies damaged is exit code 4", async () => {
    const dir = await copyOfVolume("both-damaged");
    await writeFile(join(dir, CONFIG_FILE), "garbage");
    await writeFile(join(dir, CONFIG_BACKUP), "garbage");
    expect((await rejection(loadConfig(dir))).exitCode).toBe(4);
  });
});

describe("the unlocked volume owns its secrets", () => {
  const zero = (b: Uint8Array) => b.every((x) => x === 0);

  it("derives its keyring only when asked, and close() wipes keyring, mount keys and slot key", async () => {
    const unlocked = await unlockVolume(lower, passphrase(PASSPHRASE));
    const mountKeys = [...unlocked.mountKeys.values()];
    expect(unlocked.secretBuffers()).toHaveLength(mountKeys.length); // no keyring yet
    const keyring = unlocked.keyring;
    expect(unlocked.keyring).toBe(keyring);
    const buffers = unlocked.secretBuffers();
    expect(buffers.length).toBeGreaterThan(mountKeys.length);
    expect(buffers.some(zero)).toBe(false);
    unlocked.close();
    expect(unlocked.isClosed).toBe(true);
    for (const b of [...buffers, unlocked.slotKey]) expect(zero(b)).toBe(true);
    expect(() => unlocked.keyring).toThrow(/closed/);
    unlocked.close(); // idempotent
  });

  it("openCopy() is independent of the original; keyringOnly() wipes the mount keys it no longer needs", async () => {
    const unlocked = await unlockVolume(lower, passphrase(PASSPHRASE));
    const copy = unlocked.openCopy();
    unlocked.close();
    const copied = [...copy.mountKeys.values()];
    expect(copied.some(zero)).toBe(false);
    const keyring = copy.keyringOnly();
    expect(copied.every(zero)).toBe(true);
    expect(copy.mountKeys.size).toBe(0);
    expect(copy.keyring).toBe(keyring);
    const headerWrap = keyring.current.headerWrap;
    expect(headerWrap.some((x) => x !== 0)).toBe(true);
    copy.close();
    expect(zero(headerWrap)).toBe(true);
    // A closed volume's keyring refuses to hand out keys at all.
    expect(() => keyring.current).toThrow(/wiped/);
  });
});
