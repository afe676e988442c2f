import { constants } from "node:fs";
import { parseConflictCopy, sidecarCandidates, type ConflictCopy } from "../../format/conflicts.js";
import { isFormatError } from "../../format/errors.js";
import { SIDECAR_SUFFIX, classifyLowerEntry, verifyLongName } from "../../format/names.js";
import { FsError } from "../errors.js";
import {
  UNDECODABLE_NAME_PREFIX,
  inodeKey,
  type Fd,
  type LowerOps,
  type LowerStat,
} from "./ops.js";

/**
 * The one reader of the lower layout (docs/format.md §3): what a lower
 * directory's entries are, and a walk over a whole volume. The mounted
 * filesystem (Namespace), fsck, rekey, upgrade and the tests' strict reader
 * all classify entries here, so they agree on what counts.
 *
 * Everything goes through LowerOps and directory handles: a subdirectory is
 * opened relative to its parent's handle (O_PATH | O_DIRECTORY |
 * O_NOFOLLOW), never by path; a symlink is never followed; a FIFO, socket or
 * device is never opened (files are opened non-blocking and checked with
 * fstat; sidecars are read the same way, with a size cap). Lower paths in
 * what this module hands out are for reports only; nothing opens them.
 */

/** A sidecar holds one encoded name of at most 363 characters (§11); anything larger is not one. */
export const MAX_SIDECAR_BYTES = 1024;

/** An entry that stands for a cleartext entry: an encrypted name (§10) or a hashed long name (§11). */
export type NamedEntry =
  | { readonly kind: "name"; readonly entry: string; readonly encoded: string }
  | { readonly kind: "long-name"; readonly entry: string };

/** A lower directory's entries, each classified once from its name (§3.1). */
export interface LowerListing {
  /** Every entry name, in the order the directory listed them. */
  readonly names: readonly string[];
  /** Entries of cleartext files, directories and symlinks, in listing order. */
  readonly named: readonly NamedEntry[];
  /** `cm.d.` entries (§12.1), counting or not: readDirIds (format/dir-ids.ts) tells which count. */
  readonly idEntries: readonly string[];
  /** `cryptmount.conf` and its backup, temporary and conflict copies. */
  readonly config: readonly string[];
  /** fsck's check record and its temporary copies (§3.4). */
  readonly checkRecords: readonly string[];
  /** Entries that are not the format's (sync-conflict copies, desktop.ini, ...). */
  readonly foreign: readonly string[];
  /**
   * The foreign entries whose names are a sync tool's conflict copy of an
   * encrypted or long name (§3.3); whether that name authenticates needs the key.
   */
  readonly conflicts: readonly ConflictCopy[];
  /** Long-name sidecars whose hashed entry is not in the listing, nor copied there (§3.3). */
  readonly orphanSidecars: readonly string[];
}

/** Classifies a listing (pure). */
export function classifyListing(names: readonly string[]): LowerListing {
  const named: NamedEntry[] = [];
  const idEntries: string[] = [];
  const config: string[] = [];
  const checkRecords: string[] = [];
  const foreign: string[] = [];
  const conflicts: ConflictCopy[] = [];
  const sidecars: [sidecar: string, entry: string][] = [];
  for (const name of names) {
    const kind = classifyLowerEntry(name);
    switch (kind.kind) {
      case "name":
        named.push({ kind: "name", entry: name, encoded: kind.encoded });
        break;
      case "long-name":
        named.push({ kind: "long-name", entry: name });
        break;
      case "sidecar":
        sidecars.push([name, kind.entry]);
        break;
      case "dir-id":
        idEntries.push(name);
        break;
      case "config":
        config.push(name);
        break;
      case "check-record":
        checkRecords.push(name);
        break;
      case "foreign": {
        foreign.push(name);
        const copy = parseConflictCopy(name);
        if (copy) conflicts.push(copy);
        break;
      }
    }
  }
  let orphanSidecars: string[] = [];
  if (sidecars.length > 0) {
    // A conflict copy of a long name reads its name from the original's sidecar (§3.3).
    const present = new Set([...names, ...conflicts.map((copy) => copy.original)]);
    orphanSidecars = sidecars.filter(([, entry]) => !present.has(entry)).map(([name]) => name);
  }
  return { names, named, idEntries, config, checkRecords, foreign, conflicts, orphanSidecars };
}

export async function listLowerDirectory(io: LowerOps, dir: Fd): Promise<LowerListing> {
  return classifyListing(await io.list(dir));
}

/**
 * The encoded name a long-name entry's sidecar holds (§11; or the one
 * `sidecar` names, a conflict copy of it, §3.3), checked against
 * the entry's hash. Rejects with an FsError (ENOENT; ELOOP for a symlink;
 * EIO for a FIFO, socket, device or directory, which is never opened for
 * reading; EFBIG above MAX_SIDECAR_BYTES) or a FormatError
 * (LONG_NAME_MISMATCH).
 */
export async function readLongName(
  io: LowerOps,
  dir: Fd,
  entry: string,
  sidecar = entry + SIDECAR_SUFFIX,
): Promise<string> {
  const stored = await io.readSmallFile(dir, sidecar, MAX_SIDECAR_BYTES);
  const encoded = stored.toString("latin1").trim();
  verifyLongName(entry, encoded);
  return encoded;
}

/**
 * The encoded name of the entry a conflict copy copies (§3.3): the copy's
 * own prefix for a short name; for a long name, the first sidecar (the
 * original's, or its conflict copy) that hashes to the original.
 * Undefined when none does: the copy cannot be named.
 */
export async function conflictCopyEncoded(
  io: LowerOps,
  dir: Fd,
  copy: ConflictCopy,
): Promise<string | undefined> {
  if (copy.kind === "name") return copy.original;
  for (const sidecar of sidecarCandidates(copy)) {
    try {
      return await readLongName(io, dir, copy.original, sidecar);
    } catch (err) {
      if (!isFormatError(err) && !(err instanceof FsError)) throw err;
    }
  }
  return undefined;
}

/**
 * Each conflict copy with the cleartext name of its original (§3.3), or null
 * when the original's name cannot be read or does not authenticate under
 * `decode` (the directory's IDs): such a copy is an ordinary foreign entry.
 */
export async function nameConflictCopies(
  io: LowerOps,
  dir: Fd,
  copies: readonly ConflictCopy[],
  decode: (encoded: string) => string | null,
): Promise<{ copy: ConflictCopy; name: string | null }[]> {
  const named: { copy: ConflictCopy; name: string | null }[] = [];
  for (const copy of copies) {
    const encoded = await conflictCopyEncoded(io, dir, copy);
    named.push({ copy, name: encoded === undefined ? null : decode(encoded) });
  }
  return named;
}

/** What kind of object stands at a lower name. */
export type ObjectType =
  | "directory"
  | "file"
  | "symlink"
  | "FIFO"
  | "socket"
  | "character device"
  | "block device"
  | "unknown object";

const TYPES: ReadonlyMap<number, ObjectType> = new Map([
  [constants.S_IFDIR, "directory"],
  [constants.S_IFREG, "file"],
  [constants.S_IFLNK, "symlink"],
  [constants.S_IFIFO, "FIFO"],
  [constants.S_IFSOCK, "socket"],
  [constants.S_IFCHR, "character device"],
  [constants.S_IFBLK, "block device"],
]);

export function objectType(st: LowerStat): ObjectType {
  return TYPES.get(st.mode & constants.S_IFMT) ?? "unknown object";
}

/** "a FIFO", "a directory", ... */
export function withArticle(type: ObjectType): string {
  return type === "unknown object" ? "an unknown object" : `a ${type}`;
}

/** Why a long name's sidecar gave no name. */
export type LongNameFailure =
  /** No sidecar (ENOENT), or one that cannot be read (the errno). */
  | { readonly reason: "missing"; readonly errno: string }
  /** A sidecar whose content is not the entry's name (or too large to be one). */
  | { readonly reason: "mismatch"; readonly message: string }
  /** Something other than a regular file stands at the sidecar's name. */
  | { readonly reason: "not-regular"; readonly type: ObjectType };

/** The encoded name of a long-name entry, or why there is none. */
export async function longNameOf(
  io: LowerOps,
  dir: Fd,
  entry: string,
): Promise<{ encoded: string } | { failure: LongNameFailure }> {
  try {
    return { encoded: await readLongName(io, dir, entry) };
  } catch (err) {
    if (isFormatError(err)) return { failure: { reason: "mismatch", message: err.message } };
    if (!(err instanceof FsError)) throw err;
    if (err.errno === "EFBIG")
      return {
        failure: {
          reason: "mismatch",
          message: "long-name sidecar is larger than any encoded name",
        },
      };
    const found = await typeAt(io, dir, entry + SIDECAR_SUFFIX);
    if (found !== "gone" && found !== "file")
      return { failure: { reason: "not-regular", type: found } };
    return { failure: { reason: "missing", errno: err.errno } };
  }
}

/** What stands at `name` in `dir` now, without following it; "gone" when nothing does. */
export async function typeAt(io: LowerOps, dir: Fd, name: string): Promise<ObjectType | "gone"> {
  try {
    return objectType(await io.stat(dir, name));
  } catch (err) {
    if (err instanceof FsError && err.errno === "ENOENT") return "gone";
    throw err;
  }
}

/**
 * Opens a regular file through LowerOps (no-follow, non-blocking open, then
 * an fstat check). When something else stands there (it changed since it
 * was looked at), says what instead of opening it; "gone" when nothing does.
 */
export async function openRegularFile(
  io: LowerOps,
  dir: Fd,
  name: string,
  flags: number,
): Promise<{ fd: Fd; stat: LowerStat } | { refused: ObjectType | "gone" }> {
  try {
    return await io.openFile(dir, name, flags);
  } catch (err) {
    if (!(err instanceof FsError)) throw err;
    if (err.errno === "ENOENT") return { refused: "gone" };
    if (err.errno !== "ELOOP" && err.errno !== "EIO") throw err;
    const found = await typeAt(io, dir, name);
    if (found === "file") throw err;
    return { refused: found };
  }
}

/** A lower path relative to the volume root, for reports: "" is the root itself. */
export function lowerPathOf(parent: string, name: string): string {
  return parent === "" ? displayName(name) : `${parent}/${displayName(name)}`;
}

/** A lower name as reports show it: one that is not valid UTF-8 with its bytes escaped (\xff). */
export function displayName(name: string): string {
  if (!name.startsWith(UNDECODABLE_NAME_PREFIX)) return name;
  const bytes = Buffer.from(name.slice(UNDECODABLE_NAME_PREFIX.length), "hex");
  let out = "";
  for (const b of bytes)
    out += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16)}`;
  return out;
}

// ---------------------------------------------------------------------------
// Walking a volume

/** A directory of the walk; its handle is open while its entries are visited. */
export interface WalkedDirectory {
  readonly fd: Fd;
  /** Relative to the volume root, "" for the root (reports only). */
  readonly lower: string;
  readonly listing: LowerListing;
}

/** A named entry of a walked directory, with what stands at it. */
export interface WalkedEntry {
  readonly entry: string;
  readonly kind: NamedEntry["kind"];
  /** Relative to the volume root (reports only). */
  readonly lower: string;
  /** lstat of the entry when it was visited. */
  readonly stat: LowerStat;
  readonly type: ObjectType;
  /**
   * The encoded name: a short name's own; a long name's from its sidecar
   * when the walk reads long names, undefined otherwise or when it has none
   * (longNameFailure says why).
   */
  readonly encoded: string | undefined;
  readonly longNameFailure?: LongNameFailure;
}

/**
 * What a walk does at each step; C is whatever the visitor carries from a
 * directory to its subdirectories (a cleartext path, the directory's IDs).
 */
export interface LayoutVisitor<C> {
  /** A directory, before its entries (the root included). */
  directory?(dir: WalkedDirectory, context: C): void | Promise<void>;
  /**
   * Each named entry of `dir`, in lower-name order, entries that vanished
   * since the listing left out. A directory is walked right after its
   * entry, with the context returned here (undefined: `dir`'s context).
   */
  entry?(
    dir: WalkedDirectory,
    entry: WalkedEntry,
    context: C,
  ): C | undefined | Promise<C | undefined>;
  /**
   * A subdirectory that could not be opened or listed: it changed into a
   * symlink or something else since it was looked at (ENOTDIR, ELOOP), or is
   * not readable. `context` is the one entry() returned for it. Without
   * this hook the error is thrown, the lower path in its message. One that
   * vanished (ENOENT) is skipped silently.
   */
  unreachable?(
    dir: WalkedDirectory,
    entry: WalkedEntry,
    error: FsError,
    context: C,
  ): void | Promise<void>;
  /** A directory after all its entries and subdirectories (to fsync what changed in it). */
  directoryDone?(dir: WalkedDirectory, context: C): void | Promise<void>;
}

export interface WalkOptions {
  /** Read each long name's sidecar (WalkedEntry.encoded). */
  readonly longNames?: boolean;
}

/**
 * Walks the volume under the root handle `root` depth first, parents before
 * children, each directory's named entries in lower-name order. It descends
 * only into named entries that are directories, each opened relative to its
 * parent's handle without following a symlink; it never opens anything else.
 */
export async function walkVolume<C>(
  io: LowerOps,
  root: Fd,
  visitor: LayoutVisitor<C>,
  context: C,
  options: WalkOptions = {},
): Promise<void> {
  const listing = await listLowerDirectory(io, root).catch((err: unknown) => {
    throw atLower(".", err);
  });
  const rootKey = inodeKey(await io.fstat(root));
  await walkDirectory(
    io,
    { fd: root, lower: "", listing },
    visitor,
    context,
    options,
    new Set([rootKey]),
  );
}

async function walkDirectory<C>(
  io: LowerOps,
  dir: WalkedDirectory,
  visitor: LayoutVisitor<C>,
  context: C,
  options: WalkOptions,
  /** Inodes of the directories from the root down to this one: a bind mount can make a cycle. */
  ancestors: ReadonlySet<string>,
): Promise<void> {
  await visitor.directory?.(dir, context);
  const named = [...dir.listing.named].sort((a, b) =>
    a.entry < b.entry ? -1 : a.entry > b.entry ? 1 : 0,
  );
  for (const item of named) {
    const lower = lowerPathOf(dir.lower, item.entry);
    const stat = await io.stat(dir.fd, item.entry).catch((err: unknown) => {
      if (err instanceof FsError && err.errno === "ENOENT") return undefined;
      throw atLower(lower, err);
    });
    if (!stat) continue;
    let encoded = item.kind === "name" ? item.encoded : undefined;
    let longNameFailure: LongNameFailure | undefined;
    if (item.kind === "long-name" && options.longNames) {
      const read = await longNameOf(io, dir.fd, item.entry);
      if ("encoded" in read) encoded = read.encoded;
      else longNameFailure = read.failure;
    }
    const entry: WalkedEntry = {
      entry: item.entry,
      kind: item.kind,
      lower,
      stat,
      type: objectType(stat),
      encoded,
      ...(longNameFailure ? { longNameFailure } : {}),
    };
    const inner = (await visitor.entry?.(dir, entry, context)) ?? context;
    if (entry.type !== "directory") continue;
    let child: { fd: Fd; listing: LowerListing };
    const key = inodeKey(stat);
    try {
      if (ancestors.has(key))
        throw new FsError("ELOOP", "a directory that contains itself (a bind mount?)");
      child = await openSubdirectory(io, dir.fd, item.entry);
    } catch (err) {
      if (!(err instanceof FsError)) throw err;
      if (err.errno === "ENOENT") continue;
      if (!visitor.unreachable) throw atLower(lower, err);
      await visitor.unreachable(dir, entry, err, inner);
      continue;
    }
    try {
      await walkDirectory(
        io,
        { ...child, lower },
        visitor,
        inner,
        options,
        new Set([...ancestors, key]),
      );
    } finally {
      await io.close(child.fd);
    }
  }
  await visitor.directoryDone?.(dir, context);
}

/** A subdirectory's handle and listing; the handle is closed again when listing fails. */
async function openSubdirectory(
  io: LowerOps,
  parent: Fd,
  name: string,
): Promise<{ fd: Fd; listing: LowerListing }> {
  const fd = await io.openDir(parent, name);
  try {
    return { fd, listing: await listLowerDirectory(io, fd) };
  } catch (err) {
    await io.close(fd);
    throw err;
  }
}

/** An FsError that says which lower entry (a path relative to the root) it is about. */
export function atLower(lower: string, err: unknown): unknown {
  return err instanceof FsError ? new FsError(err.errno, `${lower}: ${err.message}`) : err;
}

/** Regular files of the volume reached through named entries (the work fsck and rekey announce). */
export async function countFiles(io: LowerOps, root: Fd): Promise<number> {
  let files = 0;
  await walkVolume(
    io,
    root,
    {
      entry: (_dir, entry) => {
        if (entry.type === "file") files++;
        return undefined;
      },
      // A count for progress only: what cannot be entered is the walkers' own to report.
      unreachable: () => undefined,
    },
    undefined,
  );
  return files;
}
