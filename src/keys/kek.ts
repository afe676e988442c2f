import argon2 from "argon2";
import { hkdf } from "../crypto/hkdf.js";
import { KEY_SIZE } from "../crypto/aead.js";
import { fromBase64Url } from "../crypto/bytes.js";
import type { Argon2Params, KeySlot, SlotKind } from "../format/config.js";

/**
 * A secret offered to unlock a volume. Key-encryption keys are derived per
 * slot (the salt is the slot's), so one secret is tried against each slot of
 * its kind.
 */
export type Secret =
  | { readonly kind: "passphrase"; readonly bytes: Buffer }
  | { readonly kind: "keyfile"; readonly bytes: Buffer }
  | { readonly kind: "recovery"; readonly bytes: Buffer }
  /** The 32-byte trustee slot secret T, released by the trustee (docs/trustee.md §12). */
  | { readonly kind: "trustee"; readonly bytes: Buffer };

export const MIN_KEYFILE_BYTES = 32;
/** A trustee slot secret is exactly this long (the size of a deposit). */
export const TRUSTEE_SECRET_BYTES = 32;
/** docs/format.md §4.3. */
export const TRUSTEE_SLOT_INFO = "cryptmount v1 trustee slot";

export async function argon2Kek(
  passphrase: Buffer,
  salt: Buffer,
  params: Argon2Params,
): Promise<Buffer> {
  return argon2.hash(passphrase, {
    type: argon2.argon2id,
    raw: true,
    salt,
    hashLength: KEY_SIZE,
    memoryCost: params.memoryKiB,
    timeCost: params.iterations,
    parallelism: params.parallelism,
  });
}

/** The key-encryption key of `slot` for `secret`, or undefined when kinds differ. */
export async function deriveKek(
  slot: Pick<KeySlot, "kind" | "salt" | "kdf">,
  secret: Secret,
): Promise<Buffer | undefined> {
  if (slot.kind !== (secret.kind as SlotKind)) return undefined;
  const salt = fromBase64Url(slot.salt)!;
  switch (secret.kind) {
    case "passphrase":
      return argon2Kek(secret.bytes, salt, slot.kdf!);
    case "keyfile":
      return hkdf(secret.bytes, salt, "cryptmount v1 keyfile slot", KEY_SIZE);
    case "recovery":
      return hkdf(secret.bytes, salt, "cryptmount v1 recovery slot", KEY_SIZE);
    case "trustee":
      // Anything but 32 bytes is not a trustee secret: it opens nothing.
      return secret.bytes.length === TRUSTEE_SECRET_BYTES
        ? hkdf(secret.bytes, salt, TRUSTEE_SLOT_INFO, KEY_SIZE)
        : undefined;
  }
}
