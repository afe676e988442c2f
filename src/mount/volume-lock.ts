import { closeSync, constants, openSync } from "node:fs";
import { EXIT, UserError } from "../errors.js";
import { secureNative } from "./hardening.js";
import { refuseIfMounted } from "./in-use.js";

/**
 * The volume lock (docs/format.md §5.5): an flock on the lower directory,
 * shared by every mount of it for as long as the mount lives, exclusive for
 * a command that rewrites the volume (rekey, upgrade, fsck --repair) while it
 * runs. The kernel drops it when its holder exits, however it exits, so a
 * kill -9 leaves nothing to clean up. It covers this machine only: two
 * machines syncing one lower are not locked against each other (a lock file
 * in the lower would be synced, and stale). A lower whose filesystem refuses
 * flock (some network filesystems) is not locked; the mount table check of
 * in-use.ts still refuses a rewrite under a mount on this machine.
 */

export interface VolumeLock {
  release(): void;
}

const NOT_LOCKED: VolumeLock = { release: () => undefined };

/** Takes the lock, or returns undefined when another holder conflicts. */
function tryVolumeLock(lower: string, exclusive: boolean): VolumeLock | undefined {
  const tryLock = secureNative().tryLock;
  if (!tryLock)
    throw new UserError(
      "the hardening addon is out of date (no tryLock); run: node scripts/build-native.mjs",
      EXIT.failure,
    );
  let fd: number;
  try {
    fd = openSync(lower, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (err) {
    // Not a directory, gone, unreadable: nothing to lock, and the command's
    // own checks say what is wrong with it (exit 4 for "not a volume").
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOTDIR" || code === "ENOENT" || code === "EACCES") return NOT_LOCKED;
    throw err;
  }
  let held: boolean | null;
  try {
    held = tryLock(fd, exclusive);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  if (held !== true) {
    closeSync(fd);
    return held === null ? NOT_LOCKED : undefined;
  }
  let open = true;
  return {
    release: () => {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/** For a mount: held until `release` (the server's exit); refused while a rewrite runs. */
export function lockForMount(lower: string): VolumeLock {
  const lock = tryVolumeLock(lower, false);
  if (!lock)
    throw new UserError(
      `${lower}: a rekey, upgrade or fsck --repair of this volume is running; mount it when that is done`,
      EXIT.alreadyMounted,
    );
  return lock;
}

/**
 * Runs `work` holding the volume exclusively: refused (exit 6) while the
 * volume is mounted on this machine or another rewrite runs, and no mount
 * starts until `work` is done.
 */
export async function withVolumeExclusive<T>(
  lower: string,
  action: string,
  work: () => Promise<T>,
): Promise<T> {
  await refuseIfMounted(lower, action);
  const lock = tryVolumeLock(lower, true);
  if (!lock)
    throw new UserError(
      `${lower}: the volume is in use (a mount starting or running, or another rekey, upgrade or fsck --repair); try ${action} again when it is done`,
      EXIT.alreadyMounted,
    );
  try {
    return await work();
  } finally {
    lock.release();
  }
}
