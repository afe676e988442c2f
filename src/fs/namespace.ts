import type { Logger } from "pino";
import type { Keyring } from "../crypto/keys.js";
import { DIR_ID_SIZE } from "../crypto/keys.js";
import { randomPool } from "../crypto/random.js";
import { CONFIG_VERSION } from "../format/config.js";
import { directoryView, mayNameConflictCopy, type NamedConflictCopy } from "../format/conflicts.js";
import { dirIdEntryName, readDirIds } from "../format/dir-ids.js";
import { SIDECAR_SUFFIX, decryptNameUnder, encryptName, lowerEntryFor } from "../format/names.js";
import { FsError } from "./errors.js";
import {
  classifyListing,
  nameConflictCopies,
  readLongName,
  type LowerListing,
  type NamedEntry,
} from "./lower/layout.js";
import type { Fd, LowerOps, LowerStat } from "./lower/ops.js";
import { replaceFileAt } from "./lower/replace.js";
import type { Directory } from "./types.js";

/**
 * The lower name of a cleartext entry, and the sidecar content when the name
 * is long (docs/format.md §10, §11). A conflict copy (§3.3) has its foreign
 * lower name and never a sidecar of its own: the one it reads its name from
 * belongs to its original.
 */
export interface LowerName {
  readonly entry: string;
  readonly longName?: string;
}

/** A lower name no entry can have (no format entry is named so): lookups in ID-less directories miss. */
const NO_ENTRY: LowerName = { entry: "cm.none" };

/** A cleartext name of a listing and the lower entry behind it; `conflict` for a conflict copy or shadowed duplicate (§3.3). */
export interface ListedEntry {
  readonly name: string;
  readonly entry: string;
  readonly conflict?: true;
}

/** A directory's versions by shown name, with the directory's stamp and the time of the listing. */
interface Versions {
  readonly stamp: string;
  readonly at: number;
  readonly byName: ReadonlyMap<string, string>;
}

/**
 * How long a listing's versions answer lookups without a look at the
 * directory: as long as the kernel trusts a name (src/fs/fuse3/mount.ts), so
 * a burst of lookups of names like "photo (1).jpg" that do not exist costs
 * one listing, not one each. After that the directory's stamp decides.
 */
const VERSIONS_TRUSTED_MS = 1000;

/** What changes when an entry of a directory is added, removed or renamed. */
function stampOf(st: LowerStat): string {
  return `${st.mtimeNs}/${st.ctimeNs}/${st.size}/${st.nlink}`;
}

/**
 * An open handle on one lower directory: an O_PATH descriptor, so every
 * call below it is relative to this very directory, wherever it has moved
 * and whatever now stands at its old path. Its directory IDs are cached
 * here, with the handle: they travel with it when it is renamed, and go
 * when it is closed.
 */
export class LowerDirectory implements Directory {
  /** Directory IDs, canonical first; undefined until read. */
  ids: Buffer[] | undefined;
  /** Holders (the kernel's node, readdir results in flight); the descriptor closes at 0. */
  references = 1;
  /** The shown names of its conflict copies and duplicates (§3.3) as of the last listing. */
  versions: Versions | undefined;

  constructor(
    readonly fd: Fd,
    readonly inode: string,
    readonly displayPath: string,
    readonly isRoot: boolean,
  ) {}
}

/**
 * Name encryptions and decryptions kept per generation. A native AES-SIV
 * name costs about 2 µs, a few percent of a request's round trip, so the
 * caches stay small: two generations of both hold at most 4 × 4096 names
 * (about 4 MiB), whatever the number of files touched.
 */
const NAME_CACHE_ENTRIES = 4096;

/**
 * A bounded cache in two generations: hits in the old one move to the new
 * one, and a full new generation retires the old. O(1) without the deletes
 * and re-inserts of a strict LRU, which cost more than the lookups they save.
 */
class Cache<K, V> {
  private young = new Map<K, V>();
  private old = new Map<K, V>();
  constructor(private readonly capacity: number) {}
  get(key: K): V | undefined {
    const value = this.young.get(key);
    if (value !== undefined || this.young.has(key)) return value;
    const aged = this.old.get(key);
    if (aged !== undefined) this.set(key, aged);
    return aged;
  }
  set(key: K, value: V): void {
    if (this.young.size >= this.capacity) {
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(key, value);
  }
}

/**
 * The encrypted namespace: cleartext names in a lower directory to lower
 * entry names and back. Owns the caches of name encryptions.
 *
 * A directory may carry several IDs ("cm.d.<id>" entries) when two machines
 * created it independently and a sync client merged them; names are tried
 * under each, new names use the smallest (docs/format.md §12).
 */
export class Namespace {
  private readonly encrypted = new Cache<string, string>(NAME_CACHE_ENTRIES);
  private readonly decrypted = new Cache<string, string | null>(NAME_CACHE_ENTRIES);
  /** Directories (by inode) whose forged ID entries were logged, once each. */
  private readonly warnedForged = new Set<string>();

  constructor(
    private readonly keyring: Keyring,
    private readonly log: Logger,
    private readonly io: LowerOps,
    /** The volume's format version: 1 is read-only and takes bare v1 IDs (docs/format.md §12.3). */
    private readonly formatVersion: number = CONFIG_VERSION,
  ) {}

  /** The directory IDs that count among a directory's lower entry names, sorted (§12.2, §12.3). */
  private idsAmong(dir: LowerDirectory, idEntries: readonly string[]): Buffer[] {
    const { ids, forged } = readDirIds(this.keyring.volume.dirIds, this.formatVersion, idEntries);
    if (forged.length > 0 && !this.warnedForged.has(dir.inode)) {
      this.warnedForged.add(dir.inode);
      // No cleartext path, no lower names: the inode says which directory (fsck lists them).
      this.log.warn({ inode: dir.inode, entries: forged.length }, "forged directory ID ignored");
    }
    return ids;
  }

  /** Directory IDs of a lower directory, canonical first. Empty when it has none. */
  async idsOf(dir: LowerDirectory): Promise<Buffer[]> {
    if (dir.isRoot) return (dir.ids ??= [this.keyring.volume.rootDirId]);
    if (dir.ids) return dir.ids;
    const ids = this.idsAmong(dir, classifyListing(await this.io.list(dir.fd)).idEntries);
    dir.ids = ids;
    return ids;
  }

  /** The ID new names in `dir` get; mints one for a directory that lost or never got its ID. */
  async canonicalId(dir: LowerDirectory): Promise<Buffer> {
    const ids = await this.idsOf(dir);
    if (ids[0]) return ids[0];
    this.log.warn({ dir: dir.displayPath }, "directory had no ID entry; created a new one");
    return this.createDirId(dir);
  }

  /** Gives a directory a fresh ID, durably: the entry and the directory that holds it are synced. */
  async createDirId(dir: LowerDirectory): Promise<Buffer> {
    // Never a v2 entry in a v1 volume, which is served read-only (docs/format.md §5.1).
    if (this.formatVersion < 2) throw new FsError("EROFS");
    const id = randomPool.bytes(DIR_ID_SIZE);
    const entry = dirIdEntryName(this.keyring.volume.dirIds, id);
    await this.io.createFile(dir.fd, entry, Buffer.alloc(0), 0o444, {
      exclusive: true,
      sync: false,
    });
    await this.io.fsyncDir(dir.fd);
    dir.ids = [...(dir.ids ?? []), id].sort(Buffer.compare);
    return id;
  }

  /** The ID entries of a directory, by name (rmdir removes them and puts them back on failure). */
  async idEntries(dir: Fd): Promise<{ ids: string[]; others: number }> {
    const { names, idEntries } = classifyListing(await this.io.list(dir));
    return { ids: [...idEntries], others: names.length - idEntries.length };
  }

  private encrypt(dirId: Buffer, name: string): string {
    const key = dirId.toString("hex") + "/" + name;
    let encoded = this.encrypted.get(key);
    if (encoded === undefined) {
      encoded = encryptName(this.keyring.volume.names, dirId, name);
      this.encrypted.set(key, encoded);
    }
    return encoded;
  }

  /**
   * The lower name of an existing `name` in `dir` (or of where it would be).
   * An entry of the format wins; a name that may be a conflict copy's (§3.3)
   * and is none is looked for among the directory's conflict copies.
   */
  async existing(dir: LowerDirectory, name: string): Promise<LowerName> {
    const ids = await this.idsOf(dir);
    // A directory without an ID holds no readable names: nothing can be found in it.
    if (ids.length === 0) return NO_ENTRY;
    const copyName = mayNameConflictCopy(name);
    if (ids.length === 1 && !copyName) return lowerEntryFor(this.encrypt(ids[0]!, name));
    const candidates = ids.map((id) => lowerEntryFor(this.encrypt(id, name)));
    for (const candidate of candidates) {
      if (await this.io.stat(dir.fd, candidate.entry).catch(() => undefined)) return candidate;
    }
    if (copyName) {
      const copy = await this.versionNamed(dir, name);
      if (copy !== undefined) return { entry: copy };
    }
    return candidates[0]!;
  }

  /** The lower name a new entry `name` in `dir` gets (canonical ID). */
  async forNew(dir: LowerDirectory, name: string): Promise<LowerName> {
    return lowerEntryFor(this.encrypt(await this.canonicalId(dir), name));
  }

  /**
   * Writes a long name's sidecar by temp file and rename, so a crash never
   * leaves an existing entry without its sidecar, then syncs the directory
   * so the sidecar is durable before the entry it names is created.
   */
  async writeSidecar(dir: LowerDirectory, at: LowerName): Promise<void> {
    if (at.longName === undefined) return;
    const content = Buffer.from(at.longName, "ascii");
    await replaceFileAt(this.io, dir.fd, at.entry + SIDECAR_SUFFIX, content, 0o444);
  }

  async removeSidecar(dir: LowerDirectory, at: LowerName): Promise<void> {
    if (at.longName === undefined) return;
    await this.io.unlink(dir.fd, at.entry + SIDECAR_SUFFIX).catch(() => undefined);
  }

  /** The lower entry of the conflict copy or duplicate shown as `name` in `dir`, if any (§3.3). */
  private async versionNamed(dir: LowerDirectory, name: string): Promise<string | undefined> {
    const known = dir.versions;
    if (known && performance.now() - known.at < VERSIONS_TRUSTED_MS) return known.byName.get(name);
    if (known && known.stamp === stampOf(await this.io.fstat(dir.fd)))
      return known.byName.get(name);
    await this.list(dir);
    return dir.versions?.byName.get(name);
  }

  /**
   * Decrypted names of a lower directory, then its conflict copies and
   * shadowed duplicates under the names §3.3 gives them (kept for lookups).
   * Entries that do not decrypt are skipped and logged, never fatal to the
   * listing. The listing also refreshes the directory's IDs (a sync may
   * have merged in another).
   */
  async list(dir: LowerDirectory): Promise<ListedEntry[]> {
    // Taken before the listing: a change made during it leaves the directory with another stamp.
    const stamp = stampOf(await this.io.fstat(dir.fd));
    const at = performance.now();
    const listing = classifyListing(await this.io.list(dir.fd));
    const ids = dir.isRoot ? await this.idsOf(dir) : this.idsAmong(dir, listing.idEntries);
    if (!dir.isRoot && !sameIds(ids, dir.ids)) dir.ids = ids;
    const named: { entry: string; name: string }[] = [];
    for (const entry of listing.named) {
      const name = await this.nameOf(dir, entry, ids);
      if (name !== null) named.push({ name, entry: entry.entry });
    }
    const copies = await this.conflictCopies(dir, listing, ids);
    for (const entry of listing.foreign)
      if (!copies.some((copy) => copy.entry === entry))
        this.log.debug({ dir: dir.displayPath, entry }, "foreign lower entry hidden");
    // Of entries with one name, lookups find the one under the smallest ID (§12.2).
    const winner = (name: string, entries: readonly string[]) =>
      ids
        .map((id) => lowerEntryFor(this.encrypt(id, name)).entry)
        .find((e) => entries.includes(e)) ?? entries[0]!;
    const view = directoryView(named, copies, winner);
    const byName = new Map<string, string>();
    for (const { entry, name, versionOf } of view)
      if (versionOf !== undefined) byName.set(name, entry);
    dir.versions = { stamp, at, byName };
    return view.map(({ entry, name, versionOf }) =>
      versionOf === undefined ? { entry, name } : { entry, name, conflict: true },
    );
  }

  /** The conflict copies whose original's name authenticates (§3.3). */
  private async conflictCopies(
    dir: LowerDirectory,
    listing: LowerListing,
    ids: Buffer[],
  ): Promise<NamedConflictCopy[]> {
    const named = await nameConflictCopies(this.io, dir.fd, listing.conflicts, (encoded) =>
      this.decode(encoded, ids),
    );
    return named.flatMap(({ copy, name }) =>
      name === null ? [] : [{ entry: copy.entry, name, mark: copy.mark }],
    );
  }

  private async nameOf(
    dir: LowerDirectory,
    named: NamedEntry,
    ids: Buffer[],
  ): Promise<string | null> {
    const { entry } = named;
    let encoded: string;
    if (named.kind === "name") encoded = named.encoded;
    else {
      try {
        encoded = await readLongName(this.io, dir.fd, entry);
      } catch (err) {
        this.hidden(dir, entry, `long name unreadable (${describe(err)})`);
        return null;
      }
    }
    return this.decode(encoded, ids, () =>
      this.hidden(
        dir,
        entry,
        ids.length === 0 ? "directory ID missing" : "name failed authentication",
      ),
    );
  }

  /** The cleartext name of `encoded` under the first of `ids` it authenticates under; `failed` runs once per miss. */
  private decode(encoded: string, ids: Buffer[], failed?: () => void): string | null {
    const cacheKey = ids.map((id) => id.toString("hex")).join(",") + "/" + encoded;
    const cached = this.decrypted.get(cacheKey);
    if (cached !== undefined) return cached;
    const found = decryptNameUnder(this.keyring.volume.names, ids, encoded);
    const name = found?.name ?? null;
    if (found) this.encrypted.set(found.dirId.toString("hex") + "/" + found.name, encoded);
    else failed?.();
    this.decrypted.set(cacheKey, name);
    return name;
  }

  /**
   * An entry that cannot be shown. The cleartext directory and the lower
   * entry name are never logged side by side at default levels: that pair
   * would let a log reader map cleartext names to lower ones.
   */
  private hidden(dir: LowerDirectory, entry: string, why: string): void {
    this.log.warn(
      { dir: dir.displayPath },
      `an entry is hidden: ${why} (cryptmount fsck names it)`,
    );
    this.log.debug({ dir: dir.displayPath, entry }, `hidden lower entry: ${why}`);
  }
}

function sameIds(a: Buffer[], b: Buffer[] | undefined): boolean {
  return b !== undefined && a.length === b.length && a.every((id, i) => id.equals(b[i]!));
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
