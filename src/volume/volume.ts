import { stat, mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { toBase64Url, wipe } from "../crypto/bytes.js";
import { Keyring, MOUNT_KEY_SIZE, VOLUME_SECRET_SIZE, deriveEpochKeys } from "../crypto/keys.js";
import { randomPool } from "../crypto/random.js";
import {
  ARGON2_DEFAULT,
  CONFIG_VERSION,
  DEFAULT_BLOCK_SIZE,
  featuresFor,
  SLOT_KEY_SIZE,
  openMountKeys,
  openSlot,
  parseConfig,
  sealMountKeys,
  sealSlot,
  sealVolumeSecret,
  serializeConfig,
  signConfig,
  unlockConfig,
  type Argon2Params,
  type KeySlot,
  type MountKeys,
  type SlotKind,
  type TrusteeSlotInfo,
  type UnsignedConfig,
  type VolumeConfig,
} from "../format/config.js";
import { FormatError, isFormatError } from "../format/errors.js";
import { CONFIG_NAME } from "../format/names.js";
import { RECOVERY_KEY_SIZE, formatRecoveryKey } from "../format/recovery.js";
import { deriveKek, type Secret } from "../keys/kek.js";
import { writeFileAtomic } from "../atomic.js";
import { EXIT, UserError } from "../errors.js";
import { FsError } from "../fs/errors.js";
import { threadedLowerOps, type Fd, type LowerOps } from "../fs/lower/ops.js";

/** The config file and its backup copy in the lower root. */
export const CONFIG_FILE = CONFIG_NAME;
export const CONFIG_BACKUP = `${CONFIG_NAME}.bak`;

export interface LoadedConfig {
  readonly config: VolumeConfig;
  /** Set when the primary copy was unreadable and the backup was used. */
  readonly usedBackup: boolean;
}

async function requireDirectory(lower: string): Promise<void> {
  const info = await stat(lower).catch(() => undefined);
  if (!info) throw new UserError(`${lower}: no such directory`, EXIT.notAVolume);
  if (!info.isDirectory()) throw new UserError(`${lower}: not a directory`, EXIT.notAVolume);
}

function describe(lower: string, err: unknown): UserError {
  if (isFormatError(err)) return new UserError(`${lower}: ${err.message}`, EXIT.notAVolume);
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "EACCES")
    return new UserError(`${lower}: permission denied reading the volume config`, EXIT.io);
  return new UserError(`${lower}: cannot read the volume config (${code ?? "error"})`, EXIT.io);
}

/** Far above any config (32 slots of a few hundred bytes each). */
const MAX_CONFIG_BYTES = 1 << 20;

/**
 * A config copy as text, through the lower root's handle: never following a
 * symlink or blocking on a FIFO put there (LowerOps.readSmallFile).
 */
async function readConfigCopy(io: LowerOps, root: Fd, name: string): Promise<string | Error> {
  try {
    return (await io.readSmallFile(root, name, MAX_CONFIG_BYTES)).toString("utf8");
  } catch (err) {
    return err as Error;
  }
}

export async function loadConfig(lower: string): Promise<LoadedConfig> {
  await requireDirectory(lower);
  const io = threadedLowerOps;
  const root = await io.openRoot(lower).catch((err: unknown) => {
    throw describe(lower, err);
  });
  try {
    const primary = await readConfigCopy(io, root, CONFIG_FILE);
    if (primary instanceof Error && (primary as NodeJS.ErrnoException).code === "ENOENT") {
      const backupExists = await io.stat(root, CONFIG_BACKUP).catch(() => undefined);
      if (!backupExists)
        throw new UserError(
          `${lower}: not a cryptmount volume (no ${CONFIG_FILE})`,
          EXIT.notAVolume,
        );
    }
    let firstError: unknown = primary instanceof Error ? primary : undefined;
    if (!(primary instanceof Error)) {
      try {
        return { config: parseConfig(primary), usedBackup: false };
      } catch (err) {
        // A newer format or unknown feature is a refusal, not damage: do not fall back.
        if (isFormatError(err) && err.code !== "CONFIG_INVALID") throw describe(lower, err);
        firstError = err;
      }
    }
    const backup = await readConfigCopy(io, root, CONFIG_BACKUP);
    try {
      if (backup instanceof Error) throw backup;
      return { config: parseConfig(backup), usedBackup: true };
    } catch {
      throw describe(lower, firstError);
    }
  } finally {
    await io.close(root);
  }
}

export async function saveConfig(lower: string, config: VolumeConfig): Promise<void> {
  const text = serializeConfig(config);
  try {
    await writeFileAtomic(join(lower, CONFIG_FILE), text);
    await writeFileAtomic(join(lower, CONFIG_BACKUP), text);
  } catch (err) {
    // A full disk or read-only lower is the user's to fix, not an internal error.
    const e = err as NodeJS.ErrnoException;
    if (typeof e?.code !== "string") throw err;
    const reason =
      e.code === "ENOSPC"
        ? "no space left on device"
        : e.code === "EROFS"
          ? "read-only file system"
          : e.code;
    throw new UserError(`${lower}: cannot write the volume config (${reason})`, EXIT.failure);
  }
}

/**
 * Runs `work` on a handle of the lower root, for the commands that walk a
 * volume (fsck, rekey, upgrade) through LowerOps: nothing below the root is
 * ever reached by path. A lower error that escapes (a directory that cannot
 * be read, say) becomes a one-line UserError naming the entry.
 */
export async function withLowerRoot<T>(
  io: LowerOps,
  lower: string,
  work: (root: Fd) => Promise<T>,
): Promise<T> {
  const root = await io.openRoot(lower).catch((err: unknown) => {
    throw lowerError(lower, err);
  });
  try {
    return await work(root);
  } catch (err) {
    throw lowerError(lower, err);
  } finally {
    await io.close(root);
  }
}

function lowerError(lower: string, err: unknown): unknown {
  return err instanceof FsError ? new UserError(`${lower}: ${err.message}`, EXIT.failure) : err;
}

/**
 * The one owner of an opened volume's secrets: its mount keys and the Keyring
 * derived from them (built on first use, so a process that only passes the
 * mount keys on never derives it). close() wipes everything it holds; after
 * that the keyring is gone. Whoever opens a volume closes it (or hands it to
 * serve(), which closes it once the filesystem and the FUSE session are done).
 */
export class OpenVolume {
  private ring: Keyring | undefined;
  private closed = false;

  constructor(
    readonly lower: string,
    readonly config: VolumeConfig,
    readonly mountKeys: Map<number, Buffer>,
  ) {}

  /** The volume's keys, derived on first use; a programming error after close(). */
  get keyring(): Keyring {
    if (this.closed) throw new Error("the volume was closed and its keys wiped");
    this.ring ??= keyringFor(this.config, this.mountKeys);
    return this.ring;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Derives the keyring now and wipes the mount keys, which a mounted
   * filesystem never needs again (it works from the keyring alone).
   */
  keyringOnly(): Keyring {
    const ring = this.keyring;
    for (const key of this.mountKeys.values()) key.fill(0);
    this.mountKeys.clear();
    return ring;
  }

  /** Every key buffer it holds (for mlock). */
  secretBuffers(): Buffer[] {
    return [...this.mountKeys.values(), ...(this.ring?.secretBuffers() ?? [])];
  }

  /** Wipes the keyring and the mount keys. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ring?.wipe();
    for (const key of this.mountKeys.values()) key.fill(0);
  }
}

/** A volume opened with a key slot's secret: also holds the slot key (to add slots, rewrap the bundle). */
export class UnlockedVolume extends OpenVolume {
  constructor(
    lower: string,
    config: VolumeConfig,
    mountKeys: Map<number, Buffer>,
    /** The slot that opened the volume. */
    readonly slot: KeySlot,
    /** Wrapped by every slot; needed to add slots or replace the mount-key bundle. */
    readonly slotKey: Buffer,
    /** Set when the primary config copy was unreadable and the backup was used. */
    readonly usedBackup = false,
  ) {
    super(lower, config, mountKeys);
  }

  /**
   * The mount keys alone, copied into an OpenVolume of their own (for a
   * server); this object keeps its copies until closed.
   */
  openCopy(): OpenVolume {
    const copies = new Map([...this.mountKeys].map(([epoch, key]) => [epoch, Buffer.from(key)]));
    return new OpenVolume(this.lower, this.config, copies);
  }

  override close(): void {
    super.close();
    this.slotKey.fill(0);
  }
}

/** Tries the secret against every slot of its kind; a wrong secret is a UserError with EXIT.wrongKey. */
export async function unlockWithSecret(
  lower: string,
  config: VolumeConfig,
  secret: Secret,
  usedBackup = false,
): Promise<UnlockedVolume> {
  const candidates = config.slots.filter((s) => s.kind === secret.kind);
  if (candidates.length === 0) {
    throw new UserError(`${lower}: the volume has no ${secret.kind} key slot`, EXIT.wrongKey);
  }
  for (const slot of candidates) {
    const kek = await deriveKek(slot, secret);
    try {
      const slotKey = kek && openSlot(config.volumeId, slot, kek);
      if (!slotKey) continue;
      const mountKeys = openMountKeys(config, slotKey);
      try {
        // Authenticates the config and the volume secret now, so a damaged config is reported here.
        checkConfig(config, mountKeys);
      } catch (err) {
        slotKey.fill(0);
        for (const key of mountKeys.values()) key.fill(0);
        throw err;
      }
      return new UnlockedVolume(lower, config, mountKeys, slot, slotKey, usedBackup);
    } catch (err) {
      throw describe(lower, err);
    } finally {
      kek?.fill(0);
    }
  }
  const what = {
    passphrase: "wrong passphrase",
    keyfile: "wrong key file",
    recovery: "wrong recovery key",
    trustee: "the key the trustee released does not open the trustee slot (another volume's?)",
  }[secret.kind];
  throw new UserError(`${lower}: ${what}`, EXIT.wrongKey);
}

/** Verifies the config's MAC and that the volume secret opens under `mountKeys`; keeps nothing. */
export function checkConfig(config: VolumeConfig, mountKeys: MountKeys): void {
  const { volumeSecret, current } = unlockConfig(config, mountKeys);
  volumeSecret.fill(0);
  wipe(current.headerWrap, current.configWrap, current.configMac);
}

export function keyringFor(config: VolumeConfig, mountKeys: MountKeys): Keyring {
  const { volumeSecret, current } = unlockConfig(config, mountKeys);
  wipe(current.headerWrap, current.configWrap, current.configMac);
  const volumeId = Buffer.from(config.volumeId, "base64url");
  try {
    return new Keyring(volumeId, config.epoch, mountKeys, volumeSecret);
  } finally {
    volumeSecret.fill(0);
  }
}

/** Loads the config and unlocks it with `secret`; the caller closes what it gets. */
export async function unlockVolume(lower: string, secret: Secret): Promise<UnlockedVolume> {
  const { config, usedBackup } = await loadConfig(lower);
  return unlockWithSecret(lower, config, secret, usedBackup);
}

// --- creating volumes and slots ---------------------------------------------------

export interface SlotRequest {
  readonly secret: Secret;
  readonly label?: string;
  readonly kdf?: Argon2Params;
  /** Required for a trustee secret: where the secret is deposited. */
  readonly trustee?: TrusteeSlotInfo;
}

export function nextSlotId(slots: readonly KeySlot[]): number {
  return slots.reduce((max, s) => Math.max(max, s.id), 0) + 1;
}

function requireTrusteeInfo(request: SlotRequest): TrusteeSlotInfo {
  if (!request.trustee) throw new Error("a trustee slot needs its trustee");
  return request.trustee;
}

export async function makeSlot(
  volumeId: string,
  id: number,
  request: SlotRequest,
  slotKey: Uint8Array,
): Promise<KeySlot> {
  const kind: SlotKind = request.secret.kind;
  const base = {
    id,
    kind,
    salt: toBase64Url(randomPool.bytes(16)),
    ...(request.label ? { label: request.label } : {}),
    ...(kind === "passphrase" ? { kdf: request.kdf ?? ARGON2_DEFAULT } : {}),
    ...(kind === "trustee" ? { trustee: requireTrusteeInfo(request) } : {}),
  };
  const kek = await deriveKek(base, request.secret);
  if (!kek) throw new Error("slot kind mismatch");
  try {
    return sealSlot(volumeId, base, kek, slotKey);
  } finally {
    kek.fill(0);
  }
}

/** Re-signs a config after a change, under the mount key of its current epoch. */
export function resign(config: UnsignedConfig, mountKeys: MountKeys): VolumeConfig {
  const mk = mountKeys.get(config.epoch);
  if (!mk) throw new FormatError("CONFIG_AUTH", "missing mount key for the current epoch");
  return signConfig(
    deriveEpochKeys(mk, Buffer.from(config.volumeId, "base64url"), config.epoch),
    config,
  );
}

export interface InitOptions {
  readonly slots: readonly SlotRequest[];
  readonly blockSize?: number;
  /** Add a recovery key slot and return the key to show once. Default true. */
  readonly recovery?: boolean;
  /** The volume ID (base64url of 16 random bytes), when the caller needed it first (init --trustee); default a fresh one. */
  readonly volumeId?: string;
}

/** A fresh volume ID (docs/format.md §5). */
export function newVolumeId(): string {
  return toBase64Url(randomPool.bytes(16));
}

export async function initVolume(
  lower: string,
  options: InitOptions,
): Promise<{ config: VolumeConfig; recoveryKey?: string }> {
  // Refuse bad input before anything is created.
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (
    !Number.isInteger(blockSize) ||
    blockSize < 4096 ||
    blockSize > 1 << 20 ||
    (blockSize & (blockSize - 1)) !== 0
  ) {
    throw new UserError(
      `block size ${blockSize} is not a power of two from 4096 to 1048576`,
      EXIT.usage,
    );
  }
  const found = await stat(lower).catch(() => undefined);
  if (found && !found.isDirectory()) throw new UserError(`${lower}: not a directory`, EXIT.failure);
  await mkdir(lower, { recursive: true });
  await requireDirectory(lower);
  const existing = await readdir(lower);
  if (existing.includes(CONFIG_FILE) || existing.includes(CONFIG_BACKUP)) {
    throw new UserError(`${lower}: already a cryptmount volume`, EXIT.failure);
  }
  if (existing.length > 0) throw new UserError(`${lower}: directory is not empty`, EXIT.failure);

  const volumeId = options.volumeId ?? newVolumeId();
  const epoch = 1;
  const mountKey = randomPool.bytes(MOUNT_KEY_SIZE);
  const volumeSecret = randomPool.bytes(VOLUME_SECRET_SIZE);
  const mountKeys = new Map([[epoch, mountKey]]);
  const slotKey = randomPool.bytes(SLOT_KEY_SIZE);
  const epochKeys = deriveEpochKeys(mountKey, Buffer.from(volumeId, "base64url"), epoch);

  const requests: SlotRequest[] = [...options.slots];
  let recoveryKey: string | undefined;
  if (options.recovery !== false) {
    const key = randomPool.bytes(RECOVERY_KEY_SIZE);
    recoveryKey = formatRecoveryKey(key);
    requests.push({ secret: { kind: "recovery", bytes: key }, label: "recovery key" });
  }
  const slots: KeySlot[] = [];
  for (const request of requests)
    slots.push(await makeSlot(volumeId, slots.length + 1, request, slotKey));

  const config = signConfig(epochKeys, {
    format: "cryptmount",
    version: CONFIG_VERSION,
    volumeId,
    created: new Date().toISOString(),
    features: featuresFor(CONFIG_VERSION),
    blockSize,
    epoch,
    volumeSecret: sealVolumeSecret(volumeId, epochKeys, volumeSecret),
    keys: sealMountKeys(volumeId, slotKey, mountKeys),
    slots,
  });
  parseConfig(serializeConfig(config)); // never write a config we could not read back
  await saveConfig(lower, config);
  mountKey.fill(0);
  volumeSecret.fill(0);
  slotKey.fill(0);
  return recoveryKey ? { config, recoveryKey } : { config };
}
