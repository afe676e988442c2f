// A strict reader of a whole lower directory, written against docs/format.md
// with the format functions and the layout reader (src/fs/lower/layout.ts)
// only (no FUSE, no Namespace): the tests use it to
// prove that a volume can be read back entry by entry. Unlike the filesystem,
// which hides and logs what it cannot read, this reader throws on the first
// problem, so a test fails loudly instead of showing a smaller tree.

import { createHash } from "node:crypto";
import type { Keyring } from "../../src/crypto/keys.js";
import { CONFIG_VERSION } from "../../src/format/config.js";
import { ContentGeometry, openBlocks } from "../../src/format/content.js";
import { readDirIds } from "../../src/format/dir-ids.js";
import { FormatError } from "../../src/format/errors.js";
import { FileKind, HEADER_SIZE, openHeader } from "../../src/format/header.js";
import { openObject, type ObjectValue } from "../../src/format/object.js";
import { decryptName } from "../../src/format/names.js";
import { decryptSymlink } from "../../src/format/symlink.js";
import {
  lowerPathOf,
  walkVolume,
  withArticle,
  type LongNameFailure,
} from "../../src/fs/lower/layout.js";
import { threadedLowerOps as io } from "../../src/fs/lower/ops.js";
import { withLowerRoot } from "../../src/volume/volume.js";

export type TreeEntry =
  | { path: string; type: "file"; size: number; sha256: string }
  | { path: string; type: "dir" }
  | { path: string; type: "symlink"; target: string }
  | { path: string; type: "fifo" | "socket" }
  | { path: string; type: "chardev" | "blockdev"; major: number; minor: number };

export interface VolumeTree {
  /** Cleartext entries, paths relative to the volume root ("docs/notes.md"), sorted. */
  entries: TreeEntry[];
  /** Lower entries that are not the format's (relative lower paths), sorted. */
  foreign: string[];
  /** `cm.d.` entries that do not count under the volume's version (§12.3), relative lower paths, sorted. */
  forgedDirIds: string[];
}

/** Decrypts one lower file (header + blocks); throws the FormatError of the first problem. */
export function decryptFile(
  keyring: Keyring,
  geometry: ContentGeometry,
  lower: Buffer,
  formatVersion: number = CONFIG_VERSION,
): Buffer {
  const header = openHeader(
    keyring,
    lower.subarray(0, Math.min(HEADER_SIZE, lower.length)),
    geometry.blockSize,
    formatVersion,
  );
  if (header.kind !== FileKind.Regular)
    throw new FormatError("OBJECT_INVALID", "an object's header at a regular file's length");
  const size = geometry.cleartextSize(lower.length);
  const { cleartext, failure } = openBlocks(
    { fileKey: header.fileKey, fileId: header.fileId, geometry, holes: header.holes },
    0,
    lower.subarray(HEADER_SIZE),
    geometry.blockCount(size) - 1,
  );
  if (failure) throw failure.error;
  if (cleartext.length !== size)
    throw new Error(`decrypted ${cleartext.length} bytes, expected ${size}`);
  return cleartext;
}

/** Files read whole here are test files: far below this. */
const MAX_FILE_BYTES = 1 << 30;

function longNameError(lower: string, failure: LongNameFailure | undefined): Error {
  switch (failure?.reason) {
    case "mismatch":
      return new FormatError("LONG_NAME_MISMATCH", `${lower}: ${failure.message}`);
    case "not-regular":
      return new Error(`${lower}: its sidecar is ${withArticle(failure.type)}`);
    default:
      return new Error(`${lower}: sidecar missing or unreadable (${failure?.errno ?? "not read"})`);
  }
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
  /** A directory's cleartext path ("" for the root), its IDs and the names met in it. */
  interface Dir {
    readonly clear: string;
    ids: Buffer[];
    readonly seen: Set<string>;
  }

  await withLowerRoot(io, root, (rootFd) =>
    walkVolume<Dir>(
      io,
      rootFd,
      {
        directory(dir, state) {
          const { listing } = dir;
          const at = dir.lower || ".";
          if (dir.lower === "") {
            if (listing.idEntries.length > 0)
              throw new Error(`directory ID entry in the root: ${listing.idEntries[0]}`);
          } else {
            if (listing.config.length > 0)
              throw new Error(`config entry outside the root: ${at}/${listing.config[0]}`);
            const child = readDirIds(keyring.volume.dirIds, formatVersion, listing.idEntries);
            if (child.ids.length === 0) throw new Error(`directory without a genuine ID: ${at}`);
            forgedDirIds.push(...child.forged.map((e) => lowerPathOf(dir.lower, e)));
            state.ids = child.ids;
          }
          if (listing.orphanSidecars.length > 0)
            throw new Error(
              `orphan sidecar: ${lowerPathOf(dir.lower, listing.orphanSidecars[0]!)}`,
            );
          foreign.push(...listing.foreign.map((e) => lowerPathOf(dir.lower, e)));
        },

        async entry(dir, entry, state) {
          const encoded = entry.encoded;
          if (encoded === undefined) throw longNameError(entry.lower, entry.longNameFailure);
          let name: string | undefined;
          for (const id of state.ids) {
            try {
              name = decryptName(keyring.volume.names, id, encoded);
              break;
            } catch (err) {
              if (!(err instanceof FormatError)) throw err;
            }
          }
          if (name === undefined)
            throw new FormatError("NAME_AUTH", `no directory ID opens ${entry.lower}`);
          if (state.seen.has(name))
            throw new Error(
              `two entries of ${dir.lower || "."} decrypt to ${JSON.stringify(name)}`,
            );
          state.seen.add(name);
          const path = state.clear === "" ? name : `${state.clear}/${name}`;
          switch (entry.type) {
            case "directory":
              entries.push({ path, type: "dir" });
              return { clear: path, ids: [], seen: new Set() };
            case "symlink":
              entries.push({
                path,
                type: "symlink",
                target: decryptSymlink(
                  keyring.volume.symlinks,
                  await io.readlink(dir.fd, entry.entry),
                ),
              });
              return undefined;
            case "file": {
              const lower = await io.readSmallFile(dir.fd, entry.entry, MAX_FILE_BYTES);
              if (formatVersion >= 3 && lower.length === geometry.objectLowerSize) {
                entries.push(objectEntry(path, openObject(keyring, lower, blockSize)));
                return undefined;
              }
              const data = decryptFile(keyring, geometry, lower, formatVersion);
              entries.push({
                path,
                type: "file",
                size: data.length,
                sha256: createHash("sha256").update(data).digest("hex"),
              });
              return undefined;
            }
            default:
              throw new Error(`${withArticle(entry.type)} in the lower directory: ${entry.lower}`);
          }
        },
      },
      { clear: "", ids: [keyring.volume.rootDirId], seen: new Set() },
      { longNames: true },
    ),
  );

  const byPath = (a: { path: string }, b: { path: string }) =>
    a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
  return {
    entries: entries.sort(byPath),
    foreign: foreign.sort(),
    forgedDirIds: forgedDirIds.sort(),
  };
}

/** A version-3 object as a tree entry (§13). */
function objectEntry(path: string, value: ObjectValue): TreeEntry {
  switch (value.kind) {
    case FileKind.Symlink:
      return { path, type: "symlink", target: value.target };
    case FileKind.Fifo:
      return { path, type: "fifo" };
    case FileKind.Socket:
      return { path, type: "socket" };
    case FileKind.CharDevice:
      return { path, type: "chardev", major: value.major, minor: value.minor };
    case FileKind.BlockDevice:
      return { path, type: "blockdev", major: value.major, minor: value.minor };
  }
}

/** Every regular file of the volume reached through a name entry: its lower path (relative) and content. */
export async function lowerFiles(root: string): Promise<{ lower: string; content: Buffer }[]> {
  const files: { lower: string; content: Buffer }[] = [];
  await withLowerRoot(io, root, (rootFd) =>
    walkVolume(
      io,
      rootFd,
      {
        async entry(dir, entry) {
          if (entry.type === "file")
            files.push({
              lower: entry.lower,
              content: await io.readSmallFile(dir.fd, entry.entry, MAX_FILE_BYTES),
            });
          return undefined;
        },
      },
      undefined,
    ),
  );
  return files;
}
