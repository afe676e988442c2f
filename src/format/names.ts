import { createHash } from "node:crypto";
import { fromBase64Url, toBase64Url } from "../crypto/bytes.js";
import { sivOpen, sivSeal } from "../crypto/siv.js";
import { CHECK_RECORD_NAME } from "./check-record.js";
import { FormatError, isFormatError } from "./errors.js";

/**
 * File names (docs/format.md, "Names"): AES-SIV with the parent directory's
 * ID as associated data, PKCS#7-padded to 16 bytes to hide exact lengths,
 * encoded base64url without padding. Encoded names longer than
 * MAX_SHORT_NAME become a hashed entry "cm.L.<sha256>" with a sidecar
 * "cm.L.<sha256>.n" holding the full encoded name. Lower names that contain
 * a dot are never encrypted names (base64url has none), so they are free
 * for the format's own entries and recognisable when a sync client adds a
 * conflict suffix.
 */
export const MAX_NAME_BYTES = 255;
/** Leaves 84 characters of the 255 a lower name may have for sync-conflict suffixes. */
export const MAX_SHORT_NAME = 171;
export const LONG_NAME_PREFIX = "cm.L.";
export const SIDECAR_SUFFIX = ".n";
export const DIR_ID_PREFIX = "cm.d.";
export const CONFIG_NAME = "cryptmount.conf";
/** Decoded length of a directory ID entry's name: the ID alone (v1), the ID and its tag (v2). */
const DIR_ID_V1_BYTES = 16;
const DIR_ID_V2_BYTES = 32;
const PAD = 16;

export function validateName(name: string): Buffer {
  if (name === "" || name === "." || name === "..") {
    throw new FormatError("NAME_INVALID", `invalid file name ${JSON.stringify(name)}`);
  }
  if (name.includes("/") || name.includes("\0")) {
    throw new FormatError("NAME_INVALID", "file name contains '/' or NUL");
  }
  const bytes = Buffer.from(name, "utf8");
  if (bytes.length > MAX_NAME_BYTES) {
    throw new FormatError(
      "NAME_TOO_LONG",
      `file name is ${bytes.length} bytes, at most ${MAX_NAME_BYTES}`,
    );
  }
  return bytes;
}

function pad(bytes: Buffer): Buffer {
  const n = PAD - (bytes.length % PAD);
  return Buffer.concat([bytes, Buffer.alloc(n, n)]);
}

function unpad(bytes: Uint8Array): Buffer | undefined {
  const n = bytes[bytes.length - 1] ?? 0;
  if (n < 1 || n > PAD || n > bytes.length) return undefined;
  for (let i = bytes.length - n; i < bytes.length; i++) if (bytes[i] !== n) return undefined;
  return Buffer.from(bytes.subarray(0, bytes.length - n));
}

export function encryptName(nameKey: Uint8Array, dirId: Uint8Array, name: string): string {
  return toBase64Url(sivSeal(nameKey, [dirId], pad(validateName(name))));
}

export function decryptName(nameKey: Uint8Array, dirId: Uint8Array, encoded: string): string {
  const sealed = fromBase64Url(encoded);
  if (!sealed) throw new FormatError("NAME_ENCODING", "encrypted name is not base64url");
  const padded = sivOpen(nameKey, [dirId], sealed);
  const plain = padded && unpad(padded);
  if (!plain) throw new FormatError("NAME_AUTH", "encrypted name failed authentication");
  const name = plain.toString("utf8");
  // Refuse anything encryptName would not have produced.
  if (!Buffer.from(name, "utf8").equals(plain)) {
    throw new FormatError("NAME_INVALID", "decrypted name is not valid UTF-8");
  }
  validateName(name);
  return name;
}

/**
 * §10: in a directory with several IDs, a name is decoded under each ID in
 * turn and the first that authenticates wins. Undefined when none does.
 */
export function decryptNameUnder<Id extends Uint8Array>(
  nameKey: Uint8Array,
  dirIds: readonly Id[],
  encoded: string,
): { name: string; dirId: Id } | undefined {
  for (const dirId of dirIds) {
    try {
      return { name: decryptName(nameKey, dirId, encoded), dirId };
    } catch (err) {
      if (!isFormatError(err)) throw err;
    }
  }
  return undefined;
}

/** The lower directory entry that stores an encoded name, and its sidecar when long. */
export interface LowerEntry {
  readonly entry: string;
  /** Present for long names: the encoded name to store in `entry + SIDECAR_SUFFIX`. */
  readonly longName?: string;
}

export function longNameHash(encoded: string): string {
  return toBase64Url(createHash("sha256").update(encoded, "utf8").digest());
}

export function lowerEntryFor(encoded: string): LowerEntry {
  if (encoded.length <= MAX_SHORT_NAME) return { entry: encoded };
  return { entry: LONG_NAME_PREFIX + longNameHash(encoded), longName: encoded };
}

/** Checks that a sidecar's content belongs to the hashed entry it sits beside. */
export function verifyLongName(entry: string, encoded: string): void {
  if (entry !== LONG_NAME_PREFIX + longNameHash(encoded)) {
    throw new FormatError("LONG_NAME_MISMATCH", "long-name sidecar does not match its entry");
  }
}

export type LowerEntryKind =
  | { kind: "name"; encoded: string }
  | { kind: "long-name"; entry: string }
  | { kind: "sidecar"; entry: string }
  /** A directory ID entry (§12) in either form; whether it is genuine needs the key (dir-ids.ts). */
  | { kind: "dir-id"; form: "v1"; id: Buffer }
  | { kind: "dir-id"; form: "v2"; id: Buffer; tag: Buffer }
  | { kind: "config" }
  | { kind: "check-record" }
  | { kind: "foreign" };

/** What a lower directory entry is, from its name alone. */
export function classifyLowerEntry(name: string): LowerEntryKind {
  if (!name.includes(".")) {
    return fromBase64Url(name) ? { kind: "name", encoded: name } : { kind: "foreign" };
  }
  if (name.startsWith(LONG_NAME_PREFIX)) {
    const hash = name.slice(LONG_NAME_PREFIX.length);
    if (hash.length === 43 && fromBase64Url(hash)) return { kind: "long-name", entry: name };
    if (hash.endsWith(SIDECAR_SUFFIX)) {
      const base = name.slice(0, -SIDECAR_SUFFIX.length);
      if (base.length === LONG_NAME_PREFIX.length + 43) return { kind: "sidecar", entry: base };
    }
    return { kind: "foreign" };
  }
  if (name.startsWith(DIR_ID_PREFIX)) {
    // §3.1: base64url of 16 bytes (v1 form, 22 characters) or of 32 bytes (v2 form, 43).
    const bytes = fromBase64Url(name.slice(DIR_ID_PREFIX.length));
    if (bytes?.length === DIR_ID_V1_BYTES) return { kind: "dir-id", form: "v1", id: bytes };
    if (bytes?.length === DIR_ID_V2_BYTES) {
      return {
        kind: "dir-id",
        form: "v2",
        id: bytes.subarray(0, DIR_ID_V1_BYTES),
        tag: bytes.subarray(DIR_ID_V1_BYTES),
      };
    }
  }
  if (name === CONFIG_NAME || name.startsWith(CONFIG_NAME + ".")) return { kind: "config" };
  // §3.4: fsck's check record and the temporary files of its atomic writes.
  if (name === CHECK_RECORD_NAME || name.startsWith(CHECK_RECORD_NAME + "."))
    return { kind: "check-record" };
  return { kind: "foreign" };
}

/**
 * The version-1 form of a directory ID entry, "cm.d." + base64url(id) (§12.1).
 * Only tests and the upgrade read it; version 2 writes dir-ids.ts's form.
 */
export function v1DirIdEntryName(id: Uint8Array): string {
  return DIR_ID_PREFIX + toBase64Url(id);
}
