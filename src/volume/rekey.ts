import { open, readdir } from "node:fs/promises";
import { join } from "node:path";
import { Keyring, MOUNT_KEY_SIZE, deriveEpochKeys } from "../crypto/keys.js";
import { randomPool } from "../crypto/random.js";
import {
  SLOT_KEY_SIZE,
  sealMountKeys,
  sealVolumeSecret,
  unlockConfig,
  type VolumeConfig,
} from "../format/config.js";
import { isFormatError } from "../format/errors.js";
import { HEADER_SIZE, openHeader, planRewrap } from "../format/header.js";
import { classifyLowerEntry } from "../format/names.js";
import { currentMounts, FSTYPE } from "../mount/mountinfo.js";
import { fsnameFor } from "../mount/serve.js";
import { EXIT, UserError } from "./errors.js";
import { noProgress, type Progress } from "./progress.js";
import { makeSlot, nextSlotId, resign, saveConfig, type UnlockedVolume } from "./volume.js";
import { RECOVERY_KEY_SIZE, formatRecoveryKey } from "../format/recovery.js";
import type { Secret } from "../keys/kek.js";

/**
 * Rekey: rotates the mount key by rewrapping every file header; file data is
 * never rewritten, so the cost grows with the number of files.
 *
 *   1. config: bundle {old, new}, epoch = new, rekey = {from, to}   (atomic)
 *   2. every header: new wrap into a free slot, fsync, zero the old slot, fsync
 *   3. config: bundle {new}, no rekey state                          (atomic)
 *
 * Interrupted anywhere, the volume still mounts (both keys are in the bundle
 * until step 3) and running rekey again resumes at step 2.
 */
export interface RekeyResult {
  readonly from: number;
  readonly to: number;
  readonly files: number;
  readonly rewrapped: number;
  readonly problems: { lower: string; message: string }[];
  /** With revokeWith: the new recovery key, to show once. */
  readonly recoveryKey?: string;
}

/** Regular files of the volume (lower paths), the format's own entries excluded. */
export async function* volumeFiles(root: string): AsyncGenerator<string> {
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const kind = classifyLowerEntry(entry.name).kind;
      if (kind !== "name" && kind !== "long-name") continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) stack.push(path);
      else if (entry.isFile()) yield path;
    }
  }
}

async function rewrapFile(path: string, keyring: Keyring, blockSize: number): Promise<boolean> {
  const handle = await open(path, "r+");
  try {
    const bytes = Buffer.alloc(HEADER_SIZE);
    const { bytesRead } = await handle.read(bytes, 0, HEADER_SIZE, 0);
    const header = openHeader(keyring, bytes.subarray(0, bytesRead), blockSize);
    const patches = planRewrap(keyring, header, bytes);
    header.fileKey.fill(0);
    for (const patch of patches) {
      await handle.write(patch.bytes, 0, patch.bytes.length, patch.offset);
      await handle.datasync();
    }
    return patches.length > 0;
  } finally {
    await handle.close();
  }
}

export interface RekeyOptions {
  /**
   * Revoke every other secret too: replace the slot key, keep only the slot
   * this secret opens (rewrapped) and a new recovery key. Without it, the
   * slots stay and anyone holding a slot secret, or an old copy of the config
   * plus a removed slot's secret, can still unwrap the new mount key.
   */
  readonly revokeWith?: Secret;
}

/**
 * Refuses (EXIT.alreadyMounted) while the volume is mounted on this machine;
 * `action` names the command in the message. Shared by rekey and upgrade.
 */
export async function refuseIfMounted(lower: string, action = "rekey"): Promise<void> {
  if ((await currentMounts()).some((m) => m.fstype === FSTYPE && m.source === fsnameFor(lower))) {
    throw new UserError(
      `${lower}: volume is mounted; unmount it before ${action}`,
      EXIT.alreadyMounted,
    );
  }
}

export async function rekey(
  unlocked: UnlockedVolume,
  progress: Progress = noProgress,
  options: RekeyOptions = {},
): Promise<RekeyResult> {
  const { lower } = unlocked;
  await refuseIfMounted(lower);
  let config: VolumeConfig = unlocked.config;
  const mountKeys = new Map(unlocked.mountKeys);
  const volumeId = Buffer.from(config.volumeId, "base64url");
  const { volumeSecret } = unlockConfig(config, mountKeys);

  if (options.revokeWith && config.rekey) {
    throw new UserError(
      `${lower}: a rekey is unfinished; run rekey without --revoke-others to finish it first`,
      EXIT.usage,
    );
  }
  let slotKey = unlocked.slotKey;
  let recoveryKey: string | undefined;
  if (!config.rekey) {
    const from = config.epoch;
    const to = from + 1;
    mountKeys.set(to, randomPool.bytes(MOUNT_KEY_SIZE));
    const next = deriveEpochKeys(mountKeys.get(to)!, volumeId, to);
    let slots = config.slots;
    if (options.revokeWith) {
      // One atomic config write moves to the new slot key, the new bundle and the new slot list.
      slotKey = randomPool.bytes(SLOT_KEY_SIZE);
      const recovery = randomPool.bytes(RECOVERY_KEY_SIZE);
      recoveryKey = formatRecoveryKey(recovery);
      const kept = await makeSlot(
        config.volumeId,
        unlocked.slot.id,
        {
          secret: options.revokeWith,
          ...(unlocked.slot.label ? { label: unlocked.slot.label } : {}),
          ...(unlocked.slot.kdf ? { kdf: unlocked.slot.kdf } : {}),
        },
        slotKey,
      );
      const fresh = await makeSlot(
        config.volumeId,
        nextSlotId(config.slots),
        { secret: { kind: "recovery", bytes: recovery }, label: "recovery key" },
        slotKey,
      );
      recovery.fill(0);
      slots = [kept, fresh];
    }
    config = resign(
      {
        ...config,
        epoch: to,
        rekey: { from, to },
        slots,
        volumeSecret: sealVolumeSecret(config.volumeId, next, volumeSecret),
        keys: sealMountKeys(config.volumeId, slotKey, mountKeys),
      },
      mountKeys,
    );
    await saveConfig(lower, config);
  }
  const { from, to } = config.rekey!;
  const keyring = new Keyring(volumeId, to, mountKeys, volumeSecret);

  const files: string[] = [];
  for await (const file of volumeFiles(lower)) files.push(file);
  progress.start(files.length);
  const problems: { lower: string; message: string }[] = [];
  let rewrapped = 0;
  try {
    for (const file of files) {
      try {
        if (await rewrapFile(file, keyring, config.blockSize)) rewrapped++;
      } catch (err) {
        if (!isFormatError(err) && (err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        if (isFormatError(err)) problems.push({ lower: file, message: err.message });
      }
      progress.tick();
    }
  } finally {
    progress.stop();
    keyring.wipe();
  }
  // With problems the old key stays: those files still need it (rerun after fsck/repair).
  if (problems.length === 0) {
    const finalKeys = new Map([[to, mountKeys.get(to)!]]);
    const { rekey: _done, ...rest } = config;
    config = resign(
      { ...rest, keys: sealMountKeys(config.volumeId, slotKey, finalKeys) },
      finalKeys,
    );
    await saveConfig(lower, config);
  }
  volumeSecret.fill(0);
  for (const key of mountKeys.values()) key.fill(0);
  if (slotKey !== unlocked.slotKey) slotKey.fill(0);
  const result = { from, to, files: files.length, rewrapped, problems };
  return recoveryKey ? { ...result, recoveryKey } : result;
}
