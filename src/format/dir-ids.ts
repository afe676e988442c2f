import { createHmac } from "node:crypto";
import { constantTimeEqual, toBase64Url } from "../crypto/bytes.js";
import { DIR_ID_SIZE } from "../crypto/keys.js";
import { DIR_ID_PREFIX, classifyLowerEntry } from "./names.js";

/**
 * Authenticated directory IDs (docs/format.md §12, format version 2). A
 * directory ID entry is named
 *
 *   "cm.d." + base64url(id || tag)      tag = HMAC-SHA256(K_dirIds, "cryptmount v2 dir-id" || id)[0..16)
 *
 * (43 characters after the prefix), with K_dirIds derived from the volume
 * secret (§4.2), so only a holder of the volume's keys can make an entry
 * that counts. A reader of a version-2 volume ignores every `cm.d.` entry
 * whose tag does not verify, the bare version-1 form included (§12.3). The
 * tag covers the ID only, not the directory it sits in: renaming a
 * directory stays one lower rename, and a genuine ID copied elsewhere still
 * verifies (§18.3; fsck reports it as DUPLICATE_DIR_ID).
 */
export const DIR_ID_TAG_SIZE = 16;
const TAG_LABEL = Buffer.from("cryptmount v2 dir-id", "utf8");

/** The 16-byte tag of a directory ID (§12.1). */
export function dirIdTag(key: Uint8Array, id: Uint8Array): Buffer {
  if (id.length !== DIR_ID_SIZE) throw new RangeError(`a directory ID is ${DIR_ID_SIZE} bytes`);
  return createHmac("sha256", key)
    .update(TAG_LABEL)
    .update(id)
    .digest()
    .subarray(0, DIR_ID_TAG_SIZE);
}

/** The lower name of the version-2 ID entry of `id` (§12.1). */
export function dirIdEntryName(key: Uint8Array, id: Uint8Array): string {
  return DIR_ID_PREFIX + toBase64Url(Buffer.concat([id, dirIdTag(key, id)]));
}

/** A `cm.d.` entry read under the key: a genuine ID, or one to ignore (§12.3). */
export type ParsedDirIdEntry = { readonly id: Buffer } | { readonly forged: true };

/**
 * What a lower name is as a version-2 directory ID entry: undefined when it
 * is not a `cm.d.` entry at all (§3.1), `{ id }` when its tag verifies
 * (constant-time), `{ forged: true }` otherwise, the version-1 form included.
 */
export function parseDirIdEntry(key: Uint8Array, entryName: string): ParsedDirIdEntry | undefined {
  const kind = classifyLowerEntry(entryName);
  if (kind.kind !== "dir-id") return undefined;
  if (kind.form === "v2" && constantTimeEqual(dirIdTag(key, kind.id), kind.tag)) {
    return { id: Buffer.from(kind.id) };
  }
  return { forged: true };
}

export interface DirIdListing {
  /** The directory's IDs, distinct, in ascending unsigned byte order: the first is canonical (§12.2). */
  readonly ids: Buffer[];
  /** Lower names of the `cm.d.` entries that do not count (§12.3), in listing order. */
  readonly forged: string[];
}

/**
 * The directory IDs a listing of a non-root lower directory carries, for a
 * volume of format version `formatVersion` (§12.2, §12.3): in version 2 only
 * entries whose tag verifies; in version 1 (read-only, §5.1) the bare
 * version-1 form too, and version-2 entries whose tag verifies (as an
 * interrupted upgrade leaves them, §22.2).
 */
export function readDirIds(
  key: Uint8Array,
  formatVersion: number,
  entryNames: Iterable<string>,
): DirIdListing {
  const byHex = new Map<string, Buffer>();
  const forged: string[] = [];
  for (const name of entryNames) {
    const kind = classifyLowerEntry(name);
    if (kind.kind !== "dir-id") continue;
    const parsed: ParsedDirIdEntry | undefined =
      kind.form === "v1" && formatVersion < 2
        ? { id: Buffer.from(kind.id) }
        : parseDirIdEntry(key, name);
    if (parsed && "id" in parsed) byHex.set(parsed.id.toString("hex"), parsed.id);
    else forged.push(name);
  }
  return { ids: [...byHex.values()].sort(Buffer.compare), forged };
}
