import type { KeySlot, VolumeConfig } from "../format/config.js";
import { parseRecoveryKey } from "../format/recovery.js";
import { isFormatError } from "../format/errors.js";
import { changePassphrase } from "../volume/slots.js";
import { loadConfig, unlockWithSecret } from "../volume/volume.js";
import { EXIT, UserError } from "../errors.js";
import type { Secret } from "../keys/kek.js";
import { LOGIN_SLOT_LABEL } from "./paths.js";

/** The passphrase slot tied to the login password: the recorded id, else the one labelled so. */
export function loginSlotOf(config: VolumeConfig, id?: number): KeySlot {
  const slot =
    config.slots.find((s) => s.id === id && s.kind === "passphrase") ??
    config.slots.find((s) => s.kind === "passphrase" && s.label === LOGIN_SLOT_LABEL);
  if (!slot) throw new UserError("the volume has no login password slot", EXIT.notAVolume);
  return slot;
}

/**
 * Rewraps the login slot for `newPassword`, opened by `opener` (the old login
 * password, or the recovery key). Only the config changes, through
 * saveConfig (temp + fsync + rename, then its backup), so a crash leaves the
 * old or the new slot, never neither; data and headers are untouched.
 */
export async function rewrapLoginSlot(
  lower: string,
  slotId: number,
  opener: Secret,
  newPassword: Buffer,
): Promise<KeySlot> {
  const { config, usedBackup } = await loadConfig(lower);
  const slot = loginSlotOf(config, slotId);
  const unlocked = await unlockWithSecret(lower, config, opener, usedBackup).catch(
    (err: unknown) => {
      if (err instanceof UserError && err.exitCode === EXIT.wrongKey)
        throw new UserError(
          opener.kind === "passphrase"
            ? "the old password does not open the login slot"
            : "wrong recovery key",
          EXIT.wrongKey,
        );
      throw err;
    },
  );
  try {
    if (opener.kind === "passphrase" && unlocked.slot.id !== slot.id)
      throw new UserError("the old password does not open the login slot", EXIT.wrongKey);
    return await changePassphrase(
      unlocked,
      {
        secret: { kind: "passphrase", bytes: newPassword },
        label: LOGIN_SLOT_LABEL,
        ...(slot.kdf ? { kdf: slot.kdf } : {}),
      },
      slot.id,
    );
  } finally {
    unlocked.close();
  }
}

/** A recovery key typed or read from a file, as a Secret; the text buffer is wiped. */
export function recoverySecret(text: Buffer): Secret {
  try {
    return { kind: "recovery", bytes: parseRecoveryKey(text.toString("utf8").trim()) };
  } catch (err) {
    if (isFormatError(err)) throw new UserError(err.message, EXIT.wrongKey);
    throw err;
  } finally {
    text.fill(0);
  }
}
