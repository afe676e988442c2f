import { readdir, realpath, stat, writeFile } from "node:fs/promises";
import type { Logger } from "pino";
import type { Keyring } from "../crypto/keys.js";
import type { VolumeConfig } from "../format/config.js";
import { CryptFs } from "../fs/crypt-fs.js";
import { FuseMount } from "../fs/fuse3/mount.js";
import { lowerOpsFor } from "../fs/lower/ops.js";
import { EXIT, UserError } from "../errors.js";
import { currentMounts } from "./mountinfo.js";
import { mountOf } from "./in-use.js";
import { removeRecord, writeRecord } from "./runtime.js";
import { lockForMount } from "./volume-lock.js";

export interface MountSettings {
  readonly readOnly: boolean;
  readonly allowOther: boolean;
  readonly debug: boolean;
  /** How the volume was unlocked, for `cryptmount status` ("passphrase", "keyfile", ...). */
  readonly keySource: string;
  /** Allow a non-empty mount point (like -o nonempty). */
  readonly nonEmpty: boolean;
  /** Keep lower metadata calls off the JS thread even on a local lower filesystem. */
  readonly asyncMetadata: boolean;
  /** Mount with "dev" (device files open their devices) and "suid" (setuid bits count); root only. */
  readonly devices?: boolean;
  readonly setuid?: boolean;
}

/** What serve() needs of an opened volume (volume/volume.ts OpenVolume); close() wipes its keys. */
export interface ServedVolume {
  readonly lower: string;
  readonly config: VolumeConfig;
  readonly keyring: Keyring;
  close(): void;
}

/**
 * Something that may end the mount from inside (a trustee lease, §8.6 of
 * docs/trustee.md): started once the mount is live, given the server's own
 * stop (the server then exits 9), and disposed of when the mount ends for any reason.
 */
export type StopWatch = (stop: (why: string) => void) => () => void;

/** Resolves and checks the two paths before anything is unlocked or mounted. */
export async function preflight(
  lowerArg: string,
  mountpointArg: string,
  nonEmpty: boolean,
): Promise<{ lower: string; mountpoint: string }> {
  const lower = await realpath(lowerArg).catch(() => {
    throw new UserError(`${lowerArg}: no such directory`, EXIT.notAVolume);
  });
  const mountpoint = await realpath(mountpointArg).catch(() => {
    throw new UserError(`${mountpointArg}: mount point does not exist`, EXIT.mountPoint);
  });
  const st = await stat(mountpoint);
  if (!st.isDirectory())
    throw new UserError(`${mountpoint}: mount point is not a directory`, EXIT.mountPoint);
  const mounts = await currentMounts();
  if (mounts.some((m) => m.mountpoint === mountpoint)) {
    throw new UserError(`${mountpoint}: something is already mounted there`, EXIT.alreadyMounted);
  }
  const same = await mountOf(lower);
  if (same)
    throw new UserError(
      `${lower}: volume is already mounted at ${same.mountpoint}`,
      EXIT.alreadyMounted,
    );
  if (!nonEmpty && (await readdir(mountpoint)).length > 0) {
    throw new UserError(`${mountpoint}: mount point is not empty`, EXIT.mountPoint);
  }
  if (mountpoint === lower || mountpoint.startsWith(lower + "/")) {
    throw new UserError(
      `${mountpoint}: mount point must not be inside the volume`,
      EXIT.mountPoint,
    );
  }
  return { lower, mountpoint };
}

/** Readahead of the mount, in KiB: the kernel then sends READ requests of up to 1 MiB instead of 128 KiB. */
const READAHEAD_KB = 1024;

/**
 * Raises the kernel's readahead for this mount (its backing device info in
 * sysfs, which only root may write; it goes away with the mount). Fewer,
 * larger READ requests: each costs a round trip through the event loop.
 */
async function raiseReadahead(mountpoint: string, log: Logger): Promise<void> {
  const entry = (await currentMounts()).find((m) => m.mountpoint === mountpoint);
  if (!entry || process.getuid?.() !== 0) return;
  await writeFile(`/sys/class/bdi/${entry.device}/read_ahead_kb`, `${READAHEAD_KB}\n`).catch(
    (err: Error) => log.debug({ err: err.message }, "readahead left at the kernel default"),
  );
}

/** CRYPTMOUNT_FUSE_SPIN_US overrides the binding's polling time (for measurements). */
function spinFromEnvironment(): number | undefined {
  const value = Number(process.env.CRYPTMOUNT_FUSE_SPIN_US);
  return process.env.CRYPTMOUNT_FUSE_SPIN_US && Number.isFinite(value) && value >= 0
    ? value
    : undefined;
}

/** The fsname shown by mount(8): the lower path, with the characters libfuse's option parser treats specially escaped. */
export function fsnameFor(lower: string): string {
  return lower.replace(/[\\,]/g, (c) => "\\" + c);
}

/**
 * Mounts an unlocked volume and serves it until it is unmounted (by us on a
 * signal, or externally by fusermount -u / umount). Resolves with the exit code.
 * Owns `volume` from here: closes it (wiping its keys) once the filesystem is
 * destroyed and the FUSE session has ended, or when the mount fails.
 */
export async function serve(
  volume: ServedVolume,
  mountpoint: string,
  settings: MountSettings,
  log: Logger,
  onMounted: () => void,
  watch?: StopWatch,
): Promise<number> {
  const { lower, config } = volume;
  // Modes arrive with the caller's umask applied by the kernel; ours must not apply twice.
  process.umask(0);
  // Shared with other mounts, held until the server exits: no rekey, upgrade
  // or repair rewrites the volume under it (volume-lock.ts).
  const volumeLock = lockForMount(lower);
  // A version-1 volume is served read-only until `cryptmount upgrade` (docs/format.md §5.1).
  if (config.version < 2) settings = { ...settings, readOnly: true };
  let fs: CryptFs;
  try {
    const io = await lowerOpsFor(lower, settings.asyncMetadata);
    fs = await CryptFs.open(lower, volume.keyring, config.blockSize, log, io, {
      readOnly: settings.readOnly,
      formatVersion: config.version,
    });
  } catch (err) {
    volumeLock.release();
    throw err;
  }
  let finished: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (finished = resolve));
  let stopping = false;
  let live = false;
  let pendingSignal: string | undefined;

  let unwatch: (() => void) | undefined;
  const finish = async (code: number) => {
    unwatch?.();
    await fs.destroy().catch(() => undefined);
    volume.close();
    volumeLock.release();
    await removeRecord(mountpoint);
    finished(code);
  };
  const mount = new FuseMount(
    mountpoint,
    fs,
    {
      allowOther: settings.allowOther,
      readOnly: settings.readOnly,
      devices: settings.devices ?? false,
      setuid: settings.setuid ?? false,
      fsname: fsnameFor(lower),
      spinMicroseconds: spinFromEnvironment(),
      onExternalUnmount: () => {
        if (stopping) return;
        stopping = true;
        log.info({ mountpoint }, "unmounted externally");
        void finish(EXIT.ok);
      },
    },
    log,
  );

  try {
    // Handlers first: the kernel shows the mount before the server is ready, and a SIGTERM
    // then must unmount it rather than kill the process.
    for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const)
      process.on(signal, () => stop(signal));
    await mount.mount();
  } catch (err) {
    await fs.destroy().catch(() => undefined);
    volume.close();
    volumeLock.release();
    throw new UserError(`${mountpoint}: mount failed: ${(err as Error).message}`, EXIT.mountPoint);
  }
  await writeRecord({
    lower,
    mountpoint,
    pid: process.pid,
    keySource: settings.keySource,
    since: new Date().toISOString(),
    readOnly: settings.readOnly,
    allowOther: settings.allowOther,
  });
  await raiseReadahead(mountpoint, log);
  log.info({ lower, mountpoint }, "mounted");

  /** Unmounts on a signal, or (with its exit code) when a watch ends the mount. */
  function stop(signal: string, code: number = EXIT.ok): void {
    // A signal during mounting waits for the mount: unmounting a session not yet live does nothing.
    if (!live) {
      pendingSignal ??= signal;
      return;
    }
    if (stopping) return;
    stopping = true;
    log.info({ signal, mountpoint }, "unmounting");
    mount.unmount().then(
      () => finish(code),
      (err: Error) => {
        log.error({ mountpoint, err: err.message }, "unmount failed");
        void finish(EXIT.failure);
      },
    );
  }
  live = true;
  if (pendingSignal) stop(pendingSignal);
  else unwatch = watch?.((why) => stop(why, EXIT.trusteeRefused));
  onMounted();
  return done;
}
