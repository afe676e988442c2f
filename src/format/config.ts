import { createHmac } from "node:crypto";
import { GCM_NONCE_SIZE, KEY_SIZE, gcmOpen, gcmSeal } from "../crypto/aead.js";
import { constantTimeEqual, fromBase64Url, toBase64Url, u32be } from "../crypto/bytes.js";
import {
  LABELS,
  MOUNT_KEY_SIZE,
  VOLUME_SECRET_SIZE,
  deriveEpochKeys,
  type EpochKeys,
} from "../crypto/keys.js";
import { hkdf } from "../crypto/hkdf.js";
import { randomPool } from "../crypto/random.js";
import { FormatError } from "./errors.js";
import { CURRENT_FORMAT_VERSION } from "./versions.js";

/**
 * Volume config (docs/format.md, "Volume config"): `cryptmount.conf` in the
 * lower root, JSON. Key slots each wrap the same slot key under a
 * key-encryption key (KEK) derived from a passphrase, key file or recovery
 * key; the slot key wraps the mount-key bundle. The whole document is authenticated by an HMAC under the current
 * mount key, checked after unlocking, so parameters such as the block size
 * or feature list cannot be altered unnoticed.
 */
/** The version writers write (§5.1). */
export const CONFIG_VERSION = CURRENT_FORMAT_VERSION;
/** Versions this build reads; 1 and 2 only read-only, until `cryptmount upgrade` (§5.1, §22, §23). */
export const READABLE_VERSIONS: readonly number[] = [1, 2, 3];
/** The features of version 1 (§5.2). */
export const V1_FEATURES = [
  "gcm-blocks",
  "final-block-flag",
  "siv-names",
  "long-names",
  "dir-id-sets",
] as const;
/** Version 2's one new feature: directory IDs carry a MAC (§5.2, §12). */
export const AUTHENTICATED_DIR_IDS = "authenticated-dir-ids";
/** Version 3's: symlinks and special files as sealed regular files (§13), and holes (§9). */
export const OBJECTS = "objects";
export const HOLES = "holes";
const V3_FEATURES = [OBJECTS, HOLES] as const;
export const KNOWN_FEATURES = [...V1_FEATURES, AUTHENTICATED_DIR_IDS, ...V3_FEATURES] as const;

/** The feature list writers give a config of `version` (§5.2). */
export function featuresFor(version: number): string[] {
  if (version >= 3) return [...KNOWN_FEATURES];
  return version >= 2 ? [...V1_FEATURES, AUTHENTICATED_DIR_IDS] : [...V1_FEATURES];
}
export const DEFAULT_BLOCK_SIZE = 32 * 1024;

export type SlotKind = "passphrase" | "keyfile" | "recovery" | "trustee";
const SLOT_KINDS: readonly SlotKind[] = ["passphrase", "keyfile", "recovery", "trustee"];

export interface Argon2Params {
  readonly algorithm: "argon2id";
  readonly memoryKiB: number;
  readonly iterations: number;
  readonly parallelism: number;
}

/** Below these a passphrase slot is refused on load (RFC 9106, second recommended option). */
export const ARGON2_MINIMUM: Argon2Params = {
  algorithm: "argon2id",
  memoryKiB: 65536,
  iterations: 3,
  parallelism: 1,
};
/**
 * Argon2 runs on parameters read before the config is authenticated, so they
 * are bounded: a tampered config must not exhaust memory or make one unlock
 * attempt run for hours. Memory at most 4 GiB; passes at most 1000; memory
 * times passes at most 32 GiB (4 GiB x 8, 1 GiB x 32; the default costs
 * 768 MiB, about a second); lanes at most 16.
 */
export const ARGON2_MAX_MEMORY_KIB = 4 * 1024 * 1024;
export const ARGON2_MAX_ITERATIONS = 1000;
export const ARGON2_MAX_COST_KIB = 32 * 1024 * 1024;
export const ARGON2_MAX_PARALLELISM = 16;
/** Key slots per volume: an unlock attempt may run the KDF of every passphrase slot. */
export const MAX_KEY_SLOTS = 32;
/** About one second on the reference machine (scripts/bench-kdf.mjs). */
export const ARGON2_DEFAULT: Argon2Params = {
  algorithm: "argon2id",
  memoryKiB: 262144,
  iterations: 3,
  parallelism: 1,
};

/**
 * Where a trustee slot's secret is kept (§5.1, docs/trustee.md §12): public
 * facts, stored in the clear, covered by the config MAC (not by the slot's
 * AAD, §4.3).
 */
export interface TrusteeSlotInfo {
  /** The trustee's https URL (informational: the agent uses its device's pinned enrollment). */
  readonly url: string;
  /** The trustee ID (RFC 7638 thumbprint of its key): the agent refuses a slot of another trustee. */
  readonly tid: string;
  /** The trustee's TLS pin and admin ID, as pinned by the depositing device. */
  readonly pin: string;
  readonly aid: string;
  /** The volume's name at the trustee (its policy's volume ID). */
  readonly volume: string;
  /** The deposit's key version. */
  readonly key_version: number;
  /** The devices the secret was last deposited to (informational; the trustee's policy decides). */
  readonly members?: readonly { readonly id: string; readonly name: string }[];
}

export interface KeySlot {
  readonly id: number;
  readonly kind: SlotKind;
  readonly label?: string;
  readonly salt: string;
  readonly kdf?: Argon2Params;
  readonly wrapped: string;
  /** Present on, and only meaningful for, a `trustee` slot. */
  readonly trustee?: TrusteeSlotInfo;
}

export interface VolumeConfig {
  readonly format: "cryptmount";
  readonly version: number;
  readonly volumeId: string;
  readonly created: string;
  readonly features: readonly string[];
  readonly blockSize: number;
  readonly epoch: number;
  readonly volumeSecret: string;
  /** The mount-key bundle, sealed under the slot key. */
  readonly keys: string;
  readonly slots: readonly KeySlot[];
  readonly rekey?: { readonly from: number; readonly to: number };
  readonly mac: string;
}

export type UnsignedConfig = Omit<VolumeConfig, "mac">;

/** Mount keys by epoch: one normally, two while a rekey is under way. */
export type MountKeys = ReadonlyMap<number, Buffer>;

function invalid(message: string): never {
  throw new FormatError("CONFIG_INVALID", `volume config: ${message}`);
}

function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= min && v <= max;
}

function b64(v: unknown, what: string, length?: number): Buffer {
  const bytes = typeof v === "string" ? fromBase64Url(v) : undefined;
  if (!bytes || (length !== undefined && bytes.length !== length)) invalid(`bad ${what}`);
  return bytes;
}

/** Parses and validates everything that can be checked without a key. */
export function parseConfig(text: string): VolumeConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    invalid("not valid JSON");
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) invalid("not an object");
  const c = doc as Record<string, unknown>;
  if (c.format !== "cryptmount") invalid("not a cryptmount config");
  if (typeof c.version !== "number" || !READABLE_VERSIONS.includes(c.version)) {
    throw new FormatError(
      "UNKNOWN_VERSION",
      `volume format version ${String(c.version)} is not supported (this build reads ${READABLE_VERSIONS.join(", ")})`,
    );
  }
  b64(c.volumeId, "volume ID", 16);
  if (typeof c.created !== "string") invalid("bad creation time");
  if (!Array.isArray(c.features) || !c.features.every((f) => typeof f === "string"))
    invalid("bad features");
  const unknown = (c.features as string[]).filter(
    (f) => !(KNOWN_FEATURES as readonly string[]).includes(f),
  );
  if (unknown.length > 0) {
    throw new FormatError(
      "UNKNOWN_FEATURE",
      `volume uses features this build does not know: ${unknown.join(", ")}`,
    );
  }
  // §5.2: each version's features go with it (and later versions), never with earlier ones.
  const listed = c.features as string[];
  const pairing: [string, number][] = [
    [AUTHENTICATED_DIR_IDS, 2],
    [OBJECTS, 3],
    [HOLES, 3],
  ];
  for (const [feature, since] of pairing) {
    if (listed.includes(feature) !== c.version >= since)
      invalid(`feature ${feature} and version ${c.version} do not match`);
  }
  if (!isInt(c.blockSize, 4096, 1 << 20) || (c.blockSize & (c.blockSize - 1)) !== 0)
    invalid("bad block size");
  if (!isInt(c.epoch, 1, 0xffffffff)) invalid("bad epoch");
  b64(c.volumeSecret, "volume secret");
  b64(c.keys, "mount-key bundle");
  if (!Array.isArray(c.slots) || c.slots.length === 0) invalid("no key slots");
  if (c.slots.length > MAX_KEY_SLOTS) invalid(`more than ${MAX_KEY_SLOTS} key slots`);
  const ids = new Set<number>();
  for (const s of c.slots as unknown[]) {
    const slot = s as Record<string, unknown>;
    if (typeof s !== "object" || s === null) invalid("bad key slot");
    if (!isInt(slot.id, 0, 1_000_000) || ids.has(slot.id)) invalid("bad key slot id");
    ids.add(slot.id);
    if (!SLOT_KINDS.includes(slot.kind as SlotKind))
      invalid(`unknown key slot kind ${String(slot.kind)}`);
    if (slot.label !== undefined && typeof slot.label !== "string") invalid("bad key slot label");
    b64(slot.salt, "key slot salt", 16);
    b64(slot.wrapped, "key slot");
    if (slot.kind === "passphrase") checkArgon2(slot.kdf);
    if (slot.kind === "trustee") checkTrusteeInfo(slot.trustee);
  }
  if (c.rekey !== undefined) {
    const r = c.rekey as Record<string, unknown>;
    if (!isInt(r?.from, 1, 0xffffffff) || r.to !== c.epoch || r.from >= c.epoch)
      invalid("bad rekey state");
  }
  b64(c.mac, "MAC", 32);
  return c as unknown as VolumeConfig;
}

/**
 * Why Argon2 parameters are out of bounds (ARGON2_MAX_*), checked before they
 * are ever run; undefined when they are within them. The minimum is separate
 * (WEAK_KDF).
 */
export function argon2BoundsProblem(k: Partial<Argon2Params> | undefined): string | undefined {
  if (!k || k.algorithm !== "argon2id") return "not argon2id";
  if (!isInt(k.memoryKiB, 1, ARGON2_MAX_MEMORY_KIB))
    return `memory must be at most ${ARGON2_MAX_MEMORY_KIB} KiB`;
  if (!isInt(k.iterations, 1, ARGON2_MAX_ITERATIONS))
    return `passes must be at most ${ARGON2_MAX_ITERATIONS}`;
  if (!isInt(k.parallelism, 1, ARGON2_MAX_PARALLELISM))
    return `lanes must be from 1 to ${ARGON2_MAX_PARALLELISM}`;
  if (k.memoryKiB * k.iterations > ARGON2_MAX_COST_KIB)
    return `memory x passes must be at most ${ARGON2_MAX_COST_KIB} KiB`;
  return undefined;
}

/** A thumbprint or pin: base64url of 32 bytes (43 characters). */
const B64U_32 = /^[A-Za-z0-9_-]{43}$/;
/** docs/trustee.md §2: a volume ID at the trustee. */
const TRUSTEE_VOLUME = /^[A-Za-z0-9_-]{16,64}$/;

/** §5.1: the `trustee` member of a trustee slot. */
function checkTrusteeInfo(info: unknown): asserts info is TrusteeSlotInfo {
  const t = info as Record<string, unknown> | undefined;
  if (typeof t !== "object" || t === null || Array.isArray(t))
    invalid("trustee slot without trustee");
  let url: URL | undefined;
  try {
    url = typeof t.url === "string" && t.url.length <= 2048 ? new URL(t.url) : undefined;
  } catch {
    url = undefined;
  }
  if (url?.protocol !== "https:") invalid("bad trustee URL");
  for (const member of ["tid", "pin", "aid"] as const)
    if (typeof t[member] !== "string" || !B64U_32.test(t[member])) invalid(`bad trustee ${member}`);
  if (typeof t.volume !== "string" || !TRUSTEE_VOLUME.test(t.volume)) invalid("bad trustee volume");
  if (!isInt(t.key_version, 1, Number.MAX_SAFE_INTEGER)) invalid("bad trustee key version");
  if (t.members !== undefined) {
    const members = t.members as unknown;
    if (!Array.isArray(members) || members.length > 256) invalid("bad trustee members");
    for (const m of members as unknown[]) {
      const e = m as Record<string, unknown> | null;
      if (
        typeof e !== "object" ||
        e === null ||
        typeof e.id !== "string" ||
        !B64U_32.test(e.id) ||
        typeof e.name !== "string" ||
        e.name.length > 64
      )
        invalid("bad trustee member");
    }
  }
}

function checkArgon2(kdf: unknown): asserts kdf is Argon2Params {
  const k = kdf as Partial<Argon2Params> | undefined;
  if (argon2BoundsProblem(k)) invalid("bad passphrase KDF parameters");
  const { memoryKiB, iterations } = k as Argon2Params;
  if (memoryKiB < ARGON2_MINIMUM.memoryKiB || iterations < ARGON2_MINIMUM.iterations) {
    throw new FormatError(
      "WEAK_KDF",
      `passphrase KDF parameters (m=${memoryKiB} KiB, t=${iterations}) are below the minimum (m=${ARGON2_MINIMUM.memoryKiB} KiB, t=${ARGON2_MINIMUM.iterations})`,
    );
  }
}

/** JSON with keys sorted at every level: the byte string the MAC covers. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

function configMac(keys: EpochKeys, config: UnsignedConfig): Buffer {
  const { mac: _ignored, ...unsigned } = config as VolumeConfig;
  return createHmac("sha256", keys.configMac).update(canonicalJson(unsigned)).digest();
}

export function signConfig(keys: EpochKeys, config: UnsignedConfig): VolumeConfig {
  return { ...config, mac: toBase64Url(configMac(keys, config)) };
}

export function verifyConfigMac(keys: EpochKeys, config: VolumeConfig): void {
  if (!constantTimeEqual(configMac(keys, config), b64(config.mac, "MAC", 32))) {
    throw new FormatError(
      "CONFIG_AUTH",
      "volume config failed authentication (altered or damaged)",
    );
  }
}

export function serializeConfig(config: VolumeConfig): string {
  return JSON.stringify(config, null, 2) + "\n";
}

// --- key slots and the mount-key bundle -------------------------------------

/**
 * Slots wrap the 32-byte slot key; the slot key wraps the mount-key bundle
 * (`keys`). Rekey replaces the bundle and leaves every slot as it is, so it
 * needs no secret but the one that unlocked.
 */
export const SLOT_KEY_SIZE = 32;

function slotAad(volumeId: string, slot: Omit<KeySlot, "wrapped">): Buffer {
  return Buffer.from(
    canonicalJson({
      purpose: "cryptmount v1 key slot",
      volumeId,
      id: slot.id,
      kind: slot.kind,
      salt: slot.salt,
      kdf: slot.kdf,
    }),
    "utf8",
  );
}

export function encodeMountKeys(keys: MountKeys): Buffer {
  const parts: Buffer[] = [];
  for (const [epoch, key] of [...keys].sort(([a], [b]) => b - a)) parts.push(u32be(epoch), key);
  return Buffer.concat(parts);
}

export function decodeMountKeys(bytes: Buffer): Map<number, Buffer> {
  const record = 4 + MOUNT_KEY_SIZE;
  if (bytes.length === 0 || bytes.length % record !== 0) invalid("bad mount-key bundle");
  const keys = new Map<number, Buffer>();
  for (let at = 0; at < bytes.length; at += record) {
    keys.set(bytes.readUInt32BE(at), Buffer.from(bytes.subarray(at + 4, at + record)));
  }
  return keys;
}

export function sealSlot(
  volumeId: string,
  slot: Omit<KeySlot, "wrapped">,
  kek: Uint8Array,
  slotKey: Uint8Array,
): KeySlot {
  const sealed = gcmSeal(kek, randomPool.bytes(GCM_NONCE_SIZE), slotAad(volumeId, slot), slotKey);
  return { ...slot, wrapped: toBase64Url(sealed) };
}

/** Returns the slot key, or undefined when this KEK does not open the slot. */
export function openSlot(volumeId: string, slot: KeySlot, kek: Uint8Array): Buffer | undefined {
  const plain = gcmOpen(kek, slotAad(volumeId, slot), b64(slot.wrapped, "key slot"));
  if (plain && plain.length !== SLOT_KEY_SIZE) invalid("bad key slot payload");
  return plain;
}

function bundleKey(slotKey: Uint8Array, volumeId: string): Buffer {
  return hkdf(slotKey, b64(volumeId, "volume ID", 16), LABELS.mountKeyBundle, KEY_SIZE);
}

function bundleAad(volumeId: string): Buffer {
  return Buffer.from(`cryptmount v1 mount keys ${volumeId}`, "utf8");
}

export function sealMountKeys(volumeId: string, slotKey: Uint8Array, keys: MountKeys): string {
  const key = bundleKey(slotKey, volumeId);
  const sealed = gcmSeal(
    key,
    randomPool.bytes(GCM_NONCE_SIZE),
    bundleAad(volumeId),
    encodeMountKeys(keys),
  );
  key.fill(0);
  return toBase64Url(sealed);
}

export function openMountKeys(
  config: Pick<VolumeConfig, "volumeId" | "keys">,
  slotKey: Uint8Array,
): Map<number, Buffer> {
  const key = bundleKey(slotKey, config.volumeId);
  const plain = gcmOpen(key, bundleAad(config.volumeId), b64(config.keys, "mount-key bundle"));
  key.fill(0);
  if (!plain) throw new FormatError("CONFIG_AUTH", "mount-key bundle failed authentication");
  return decodeMountKeys(plain);
}

// --- volume secret -----------------------------------------------------------

function secretAad(volumeId: string, epoch: number): Buffer {
  return Buffer.from(`cryptmount v1 volume secret ${volumeId} ${epoch}`, "utf8");
}

export function sealVolumeSecret(volumeId: string, keys: EpochKeys, secret: Uint8Array): string {
  return toBase64Url(
    gcmSeal(
      keys.configWrap,
      randomPool.bytes(GCM_NONCE_SIZE),
      secretAad(volumeId, keys.epoch),
      secret,
    ),
  );
}

export function openVolumeSecret(volumeId: string, keys: EpochKeys, sealed: string): Buffer {
  const plain = gcmOpen(
    keys.configWrap,
    secretAad(volumeId, keys.epoch),
    b64(sealed, "volume secret"),
  );
  if (!plain || plain.length !== VOLUME_SECRET_SIZE) {
    throw new FormatError("CONFIG_AUTH", "volume secret failed authentication");
  }
  return plain;
}

/**
 * Unlocks a parsed config with mount keys from a slot: verifies the MAC and
 * unwraps the volume secret. Shared by every unlock path.
 */
export function unlockConfig(
  config: VolumeConfig,
  mountKeys: MountKeys,
): { volumeSecret: Buffer; current: EpochKeys } {
  const volumeId = b64(config.volumeId, "volume ID", 16);
  const mk = mountKeys.get(config.epoch);
  if (!mk)
    throw new FormatError("CONFIG_AUTH", `key slot lacks the mount key of epoch ${config.epoch}`);
  const current = deriveEpochKeys(mk, volumeId, config.epoch);
  verifyConfigMac(current, config);
  return { volumeSecret: openVolumeSecret(config.volumeId, current, config.volumeSecret), current };
}
