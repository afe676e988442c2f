// A strict reader of a whole lower directory, written against docs/format.md
// with the format functions only (no FUSE, no Namespace): the tests use it to
// prove that a volume can be read back entry by entry. Unlike the filesystem,
// which hides and logs what it cannot read, this reader throws on the first
// problem, so a test fails loudly instead of showing a smaller tree.

import { createHash } from "node:crypto";
import { lstat, readFile, readdir, readlink } from "node:fs/promises";
import { join, relative } from "node:path";
import type { Keyring } from "../../src/crypto/keys.js";
import { CONFIG_VERSION } from "../../src/format/config.js";
import { ContentGeometry, openBlocks } from "../../src/format/content.js";
import { readDirIds } from "../../src/format/dir-ids.js";
import { FormatError } from "../../src/format/errors.js";
import { HEADER_SIZE, openHeader } from "../../src/format/header.js";
import {
  SIDECAR_SUFFIX,
  classifyLowerEntry,
  decryptName,
  verifyLongName,
} from "../../src/format/names.js";
import { decryptSymlink } from "../../src/format/symlink.js";

export type TreeEntry =
  | { path: string; type: "file"; size: number; sha256: string }
  | { path: string; type: "dir" }
  | { path: string; type: "symlink"; target: string };

export interface VolumeTree {
  /** Cleartext entries, paths relative to the volume root ("docs/notes.md"), sorted. */
  entries: TreeEntry[];
  /** Lower entries that are not the format's (relative lower paths), sorted. */
  foreign: string[];
  /** `cm.d.` entries that do not count under the volume's version (§12.3), relative lower paths, sorted. */
  forgedDirIds: string[];
}

/** Decrypts one lower file (header + blocks); throws the FormatError of the first problem. */
export function decryptFile(keyring: Keyring, geometry: ContentGeometry, lower: Buffer): Buffer {
  const header = openHeader(
    keyring,
    lower.subarray(0, Math.min(HEADER_SIZE, lower.length)),
    geometry.blockSize,
  );
  const size = geometry.cleartextSize(lower.length);
  const { cleartext, failure } = openBlocks(
    { fileKey: header.fileKey, fileId: header.fileId, geometry },
    0,
    lower.subarray(HEADER_SIZE),
    geometry.blockCount(size) - 1,
  );
  if (failure) throw failure.error;
  if (cleartext.length !== size)
    throw new Error(`decrypted ${cleartext.length} bytes, expected ${size}`);
  return cleartext;
}

/**
 * Directory IDs of a non-root lower directory, smallest first, and the ID
 * entries that do not count: in version 2 those whose tag does not verify
 * (the bare v1 form included), in version 1 only v2-form ones that fail (§12.3).
 */
export async function dirIdsOf(
  lowerDir: string,
  keyring: Keyring,
  formatVersion: number = CONFIG_VERSION,
): Promise<{ ids: Buffer[]; forged: string[] }> {
  return readDirIds(keyring.volume.dirIds, formatVersion, await readdir(lowerDir));
}

export async function readVolumeTree(
  root: string,
  keyring: Keyring,
  blockSize: number,
  formatVersion: number = CONFIG_VERSION,
): Promise<VolumeTree> {
  const geometry = new ContentGeometry(blockSize);
  const entries: TreeEntry[] = [];
  const foreign: string[] = [];
  const forgedDirIds: string[] = [];

  async function walk(lowerDir: string, clearDir: string, ids: Buffer[]): Promise<void> {
    const seen = new Set<string>();
    for (const entry of (await readdir(lowerDir)).sort()) {
      const lower = join(lowerDir, entry);
      const kind = classifyLowerEntry(entry);
      let encoded: string;
      switch (kind.kind) {
        case "dir-id":
          if (lowerDir === root) throw new Error(`directory ID entry in the root: ${entry}`);
          continue;
        case "config":
          if (lowerDir !== root) throw new Error(`config entry outside the root: ${lower}`);
          continue;
        case "sidecar":
          await lstat(join(lowerDir, kind.entry)); // an orphan sidecar is an error here
          continue;
        case "foreign":
          foreign.push(relative(root, lower));
          continue;
        case "name":
          encoded = kind.encoded;
          break;
        case "long-name":
          encoded = await readFile(lower + SIDECAR_SUFFIX, "utf8");
          verifyLongName(entry, encoded);
          break;
      }
      let name: string | undefined;
      for (const id of ids) {
        try {
          name = decryptName(keyring.volume.names, id, encoded);
          break;
        } catch (err) {
          if (!(err instanceof FormatError)) throw err;
        }
      }
      if (name === undefined) throw new FormatError("NAME_AUTH", `no directory ID opens ${lower}`);
      if (seen.has(name))
        throw new Error(`two entries of ${lowerDir} decrypt to ${JSON.stringify(name)}`);
      seen.add(name);
      const path = clearDir === "" ? name : `${clearDir}/${name}`;
      const st = await lstat(lower);
      if (st.isDirectory()) {
        const child = await dirIdsOf(lower, keyring, formatVersion);
        if (child.ids.length === 0) throw new Error(`directory without a genuine ID: ${lower}`);
        forgedDirIds.push(...child.forged.map((e) => relative(root, join(lower, e))));
        entries.push({ path, type: "dir" });
        await walk(lower, path, child.ids);
      } else if (st.isSymbolicLink()) {
        entries.push({
          path,
          type: "symlink",
          target: decryptSymlink(keyring.volume.symlinks, await readlink(lower)),
        });
      } else if (st.isFile()) {
        const data = decryptFile(keyring, geometry, await readFile(lower));
        entries.push({
          path,
          type: "file",
          size: data.length,
          sha256: createHash("sha256").update(data).digest("hex"),
        });
      } else {
        throw new Error(`special file in the lower directory: ${lower}`);
      }
    }
  }

  await walk(root, "", [keyring.volume.rootDirId]);
  const byPath = (a: { path: string }, b: { path: string }) =>
    a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
  return {
    entries: entries.sort(byPath),
    foreign: foreign.sort(),
    forgedDirIds: forgedDirIds.sort(),
  };
}
