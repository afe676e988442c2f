import {
  MAX_KEY_SLOTS,
  type KeySlot,
  type TrusteeSlotInfo,
  type VolumeConfig,
} from "../format/config.js";
import { RECOVERY_KEY_SIZE, formatRecoveryKey } from "../format/recovery.js";
import { randomPool } from "../crypto/random.js";
import { EXIT, UserError } from "../errors.js";
import {
  makeSlot,
  nextSlotId,
  resign,
  saveConfig,
  type SlotRequest,
  type UnlockedVolume,
} from "./volume.js";

/**
 * Key-slot management (cryptmount passwd): every change rewrites only the
 * config (atomically, with its backup); data and headers are untouched.
 */
async function commit(unlocked: UnlockedVolume, slots: KeySlot[]): Promise<VolumeConfig> {
  const config = resign({ ...unlocked.config, slots }, unlocked.mountKeys);
  await saveConfig(unlocked.lower, config);
  return config;
}

/** Refuses a new slot (before its KDF runs) when the volume already has MAX_KEY_SLOTS. */
function requireFreeSlot(slots: readonly KeySlot[]): void {
  if (slots.length >= MAX_KEY_SLOTS)
    throw new UserError(
      `the volume already has ${MAX_KEY_SLOTS} key slots, the most it may have; remove one first`,
      EXIT.usage,
    );
}

/** Replaces `slotId` (default: the slot that unlocked, when it is a passphrase) with a new passphrase slot. */
export async function changePassphrase(
  unlocked: UnlockedVolume,
  request: SlotRequest,
  slotId?: number,
): Promise<KeySlot> {
  const slots = [...unlocked.config.slots];
  const targetId =
    slotId ??
    (unlocked.slot.kind === "passphrase"
      ? unlocked.slot.id
      : slots.find((s) => s.kind === "passphrase")?.id);
  const index = targetId === undefined ? -1 : slots.findIndex((s) => s.id === targetId);
  if (targetId !== undefined && index < 0)
    throw new UserError(`no key slot ${targetId}`, EXIT.usage);
  if (index >= 0 && slots[index]!.kind !== "passphrase") {
    throw new UserError(`key slot ${targetId} is not a passphrase slot`, EXIT.usage);
  }
  const label = index >= 0 ? (slots[index]!.label ?? "passphrase") : "passphrase";
  if (index < 0) requireFreeSlot(slots);
  const id = index >= 0 ? targetId! : nextSlotId(slots);
  const slot = await makeSlot(
    unlocked.config.volumeId,
    id,
    { label, ...request },
    unlocked.slotKey,
  );
  if (index >= 0) slots[index] = slot;
  else slots.push(slot);
  await commit(unlocked, slots);
  return slot;
}

export async function addSlot(unlocked: UnlockedVolume, request: SlotRequest): Promise<KeySlot> {
  const slots = [...unlocked.config.slots];
  requireFreeSlot(slots);
  const existing = trusteeSlotOf(unlocked.config);
  if (request.secret.kind === "trustee" && existing)
    throw new UserError(
      `the volume already has a trustee slot (${existing.id}); remove it first (passwd --remove-slot ${existing.id})`,
      EXIT.usage,
    );
  const slot = await makeSlot(
    unlocked.config.volumeId,
    nextSlotId(slots),
    request,
    unlocked.slotKey,
  );
  await commit(unlocked, [...slots, slot]);
  return slot;
}

export async function removeSlot(unlocked: UnlockedVolume, id: number): Promise<void> {
  const slots = unlocked.config.slots.filter((s) => s.id !== id);
  if (slots.length === unlocked.config.slots.length)
    throw new UserError(`no key slot ${id}`, EXIT.usage);
  if (slots.length === 0)
    throw new UserError(
      "refusing to remove the last key slot: the volume would be lost",
      EXIT.usage,
    );
  await commit(unlocked, slots);
}

/** Replaces every recovery slot with one for a new recovery key, returned for showing once. */
export async function newRecoveryKey(unlocked: UnlockedVolume): Promise<string> {
  const kept = unlocked.config.slots.filter((s) => s.kind !== "recovery");
  requireFreeSlot(kept);
  const key = randomPool.bytes(RECOVERY_KEY_SIZE);
  const slot = await makeSlot(
    unlocked.config.volumeId,
    nextSlotId(unlocked.config.slots),
    { secret: { kind: "recovery", bytes: key }, label: "recovery key" },
    unlocked.slotKey,
  );
  await commit(unlocked, [...kept, slot]);
  const text = formatRecoveryKey(key);
  key.fill(0);
  return text;
}

/** The volume's trustee slot (a volume has at most one), or undefined. */
export function trusteeSlotOf(
  config: Pick<VolumeConfig, "slots">,
): (KeySlot & { trustee: TrusteeSlotInfo }) | undefined {
  return config.slots.find(
    (s): s is KeySlot & { trustee: TrusteeSlotInfo } => s.kind === "trustee" && !!s.trustee,
  );
}

/**
 * Records to whom the trustee slot's secret was (re)deposited. Only the
 * config changes (the members are not part of the slot's AAD, docs/format.md
 * §4.3), re-signed under the current mount key.
 */
export async function setTrusteeMembers(
  unlocked: UnlockedVolume,
  slotId: number,
  members: NonNullable<TrusteeSlotInfo["members"]>,
): Promise<VolumeConfig> {
  const slots = unlocked.config.slots.map((s) =>
    s.id === slotId && s.kind === "trustee" && s.trustee
      ? { ...s, trustee: { ...s.trustee, members } }
      : s,
  );
  return commit(unlocked, slots);
}
