import { constants } from "node:fs";
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
import {
  nameConflictCopies,
  countFiles,
  lowerPathOf,
  openRegularFile,
  walkVolume,
  withArticle,
  type WalkedDirectory,
} from "../fs/lower/layout.js";
import { readDirIds } from "../format/dir-ids.js";
import { decryptNameUnder } from "../format/names.js";
import {
  readFully,
  threadedLowerOps,
  writeFully,
  type Fd,
  type LowerOps,
} from "../fs/lower/ops.js";
import { withVolumeExclusive } from "../mount/volume-lock.js";
import { EXIT, UserError } from "../errors.js";
import { noProgress, type Progress } from "./progress.js";
import {
  makeSlot,
  nextSlotId,
  resign,
  saveConfig,
  withLowerRoot,
  type UnlockedVolume,
} from "./volume.js";
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

/** Rewraps the header of one open lower file (§16.1, step 2); true when it changed. */
async function rewrapFile(
  io: LowerOps,
  fd: Fd,
  keyring: Keyring,
  blockSize: number,
): Promise<boolean> {
  const bytes = Buffer.alloc(HEADER_SIZE);
  const bytesRead = await readFully(io, fd, bytes, HEADER_SIZE, 0);
  const header = openHeader(keyring, bytes.subarray(0, bytesRead), blockSize);
  const patches = planRewrap(keyring, header, bytes);
  header.fileKey.fill(0);
  for (const patch of patches) {
    await writeFully(io, fd, patch.bytes, patch.offset);
    await io.fsync(fd, true);
  }
  return patches.length > 0;
}

/**
 * Step 2 over the whole volume: every regular file reached through a name
 * entry, and every conflict copy the mount shows (§3.3), each opened relative to its directory's handle (never a symlink,
 * never a FIFO). Anything it cannot rewrap is a problem, so the old key
 * stays: a damaged header, a FIFO, socket or device where a file should be,
 * a directory that turned into something else during the walk. Entries
 * that vanish are skipped.
 */
async function rewrapVolume(
  io: LowerOps,
  lower: string,
  keyring: Keyring,
  blockSize: number,
  formatVersion: number,
  progress: Progress,
): Promise<{ files: number; rewrapped: number; problems: { lower: string; message: string }[] }> {
  const problems: { lower: string; message: string }[] = [];
  let files = 0;
  let rewrapped = 0;
  /** Rewraps the regular file `name` in `dir`; false when something else stands there now. */
  const rewrapAt = async (dir: Fd, name: string, at: string): Promise<boolean> => {
    const opened = await openRegularFile(io, dir, name, constants.O_RDWR);
    if ("refused" in opened) {
      if (opened.refused !== "gone")
        problems.push({ lower: at, message: `now ${withArticle(opened.refused)}, not a file` });
      return false;
    }
    files++;
    try {
      if (await rewrapFile(io, opened.fd, keyring, blockSize)) rewrapped++;
    } catch (err) {
      if (!isFormatError(err)) throw err;
      problems.push({ lower: at, message: err.message });
    } finally {
      await io.close(opened.fd);
    }
    return true;
  };
  await withLowerRoot(io, lower, async (root) => {
    progress.start(await countFiles(io, root));
    try {
      await walkVolume(
        io,
        root,
        {
          // The conflict copies the mount shows (§3.3) are versions of files: they keep opening.
          directory: async (dir) => {
            for (const entry of await shownConflictCopies(io, dir, keyring, formatVersion)) {
              const at = join(lower, lowerPathOf(dir.lower, entry));
              const type = (await io.stat(dir.fd, entry).catch(() => undefined))?.mode;
              if (type === undefined) continue;
              if ((type & constants.S_IFMT) === constants.S_IFREG)
                await rewrapAt(dir.fd, entry, at);
              else if ((type & constants.S_IFMT) === constants.S_IFDIR)
                // The walk does not enter it: keep the old key until it is renamed to a name of its own.
                problems.push({
                  lower: at,
                  message:
                    "a conflict copy of a directory: its files were not rewrapped (rename it in the mount, then rekey again)",
                });
            }
          },
          entry: async (dir, entry) => {
            const at = join(lower, entry.lower);
            if (entry.type === "directory" || entry.type === "symlink") return undefined;
            if (entry.type !== "file") {
              problems.push({ lower: at, message: `${withArticle(entry.type)}, not a file` });
              return undefined;
            }
            if (await rewrapAt(dir.fd, entry.entry, at)) progress.tick();
            return undefined;
          },
          unreachable: (_dir, entry, error) => {
            problems.push({
              lower: join(lower, entry.lower),
              message: `directory could not be opened (${error.errno}); its files were not rewrapped`,
            });
          },
        },
        undefined,
      );
    } finally {
      progress.stop();
    }
  });
  return { files, rewrapped, problems };
}

/** The lower names of a directory's conflict copies whose original's name authenticates (§3.3). */
async function shownConflictCopies(
  io: LowerOps,
  dir: WalkedDirectory,
  keyring: Keyring,
  formatVersion: number,
): Promise<string[]> {
  if (dir.listing.conflicts.length === 0) return [];
  const ids =
    dir.lower === ""
      ? [keyring.volume.rootDirId]
      : readDirIds(keyring.volume.dirIds, formatVersion, dir.listing.idEntries).ids;
  const named = await nameConflictCopies(
    io,
    dir.fd,
    dir.listing.conflicts,
    (encoded) => decryptNameUnder(keyring.volume.names, ids, encoded)?.name ?? null,
  );
  return named.filter(({ name }) => name !== null).map(({ copy }) => copy.entry);
}

export interface RekeyOptions {
  /**
   * Revoke every other secret too: replace the slot key, keep only the slot
   * this secret opens (rewrapped) and a new recovery key. Without it, the
   * slots stay and anyone holding a slot secret, or an old copy of the config
   * plus a removed slot's secret, can still unwrap the new mount key.
   */
  readonly revokeWith?: Secret;
  /**
   * With revokeWith: called with the new recovery key as soon as the config
   * that holds it is written (step 1), before any header is touched, so a
   * rekey interrupted later cannot lose the only copy of it.
   */
  readonly onRecoveryKey?: (key: string) => Promise<void>;
}

export async function rekey(
  unlocked: UnlockedVolume,
  progress: Progress = noProgress,
  options: RekeyOptions = {},
): Promise<RekeyResult> {
  // Headers rewritten under a live mount would race its writes: files it
  // creates meanwhile would be lost. So no mount runs or starts meanwhile.
  return withVolumeExclusive(unlocked.lower, "rekey", () =>
    rekeyHoldingVolume(unlocked, progress, options),
  );
}

async function rekeyHoldingVolume(
  unlocked: UnlockedVolume,
  progress: Progress,
  options: RekeyOptions,
): Promise<RekeyResult> {
  const { lower } = unlocked;
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
    if (recoveryKey && options.onRecoveryKey) await options.onRecoveryKey(recoveryKey);
  }
  const { from, to } = config.rekey!;
  const keyring = new Keyring(volumeId, to, mountKeys, volumeSecret);

  let walked;
  try {
    walked = await rewrapVolume(
      threadedLowerOps,
      lower,
      keyring,
      config.blockSize,
      config.version,
      progress,
    );
  } finally {
    keyring.wipe();
  }
  const { files, rewrapped, problems } = walked;
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
  // Only what this function made: the unlocked volume's own keys are its owner's to wipe (close()).
  for (const [epoch, key] of mountKeys) if (unlocked.mountKeys.get(epoch) !== key) key.fill(0);
  if (slotKey !== unlocked.slotKey) slotKey.fill(0);
  const result = { from, to, files, rewrapped, problems };
  return recoveryKey ? { ...result, recoveryKey } : result;
}
