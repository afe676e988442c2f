import { addonPath, loadAddon } from "../addons.js";

/**
 * Process hardening for whoever holds a volume's keys, through the small
 * addon native/secure/secure.c (build/cryptmount_secure.node, built by
 * scripts/build-native.mjs): Node has no API for core dumps, mlock or
 * RLIMIT_NOFILE.
 */
export interface SecureNative {
  readonly version: number;
  /** RLIMIT_CORE 0 and prctl(PR_SET_DUMPABLE, 0); throws on failure. */
  disableCoreDumps(): void;
  isDumpable(): boolean;
  /** Soft RLIMIT_CORE; -1 for unlimited. */
  coreLimit(): number;
  /** mlock(2) the buffer's pages; false when RLIMIT_MEMLOCK does not allow it. */
  lockMemory(buffer: Uint8Array): boolean;
  /** Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now (-1: unlimited). */
  raiseOpenFileLimit(): number;
  /** getsockopt(SO_PEERCRED) of a connected Unix socket; absent in older builds of the addon. */
  peerCredentials?(fd: number): { pid: number; uid: number; gid: number };
  /** flock(fd, LOCK_EX), waiting; absent in older builds of the addon. */
  lockExclusive?(fd: number): void;
  /** flock(fd, LOCK_EX or LOCK_SH | LOCK_NB): false when another holder conflicts, null when the filesystem cannot lock; absent in older builds. */
  tryLock?(fd: number, exclusive: boolean): boolean | null;
}

export const SECURE_VERSION = 1;
export const SECURE_PATH = addonPath("secure");

let loaded: SecureNative | undefined;

/** Loads the addon once; a clear error if it was not built. */
export function secureNative(): SecureNative {
  loaded ??= loadAddon<SecureNative>(
    "secure",
    "hardening addon",
    (addon) => addon.version === SECURE_VERSION,
  );
  return loaded;
}

export interface Hardening {
  /** As the kernel now reports it (false). */
  readonly dumpable: boolean;
  /** The soft core-file limit now in force (0). */
  readonly coreLimit: number;
  /** The soft limit on open files now in force (-1: unlimited). */
  readonly openFiles: number;
}

/**
 * Before any key arrives: no core dumps, not dumpable (no ptrace attach or
 * /proc/PID/mem by the same user), and as many open files as allowed (the
 * filesystem may hold a descriptor per directory). Throws when it cannot.
 */
export function hardenProcess(): Hardening {
  const addon = secureNative();
  addon.disableCoreDumps();
  return {
    dumpable: addon.isDumpable(),
    coreLimit: addon.coreLimit(),
    openFiles: addon.raiseOpenFileLimit(),
  };
}

/**
 * Locks the pages under each buffer in RAM (never swapped out) where
 * RLIMIT_MEMLOCK allows; returns how many were locked. Pages stay locked
 * until the process exits. Residual: V8 may have copied key bytes elsewhere
 * (strings, deserialization buffers), and per-file keys derived later are
 * not locked.
 */
export function lockSecrets(buffers: Iterable<Uint8Array>): { locked: number; total: number } {
  const addon = secureNative();
  let locked = 0;
  let total = 0;
  for (const buffer of buffers) {
    total++;
    if (addon.lockMemory(buffer)) locked++;
  }
  return { locked, total };
}
