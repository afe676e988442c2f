import { asyncLowerIo, type LowerIo } from "./lower-io.js";
import { join } from "node:path";
import type { Logger } from "pino";
import type { Keyring } from "../crypto/keys.js";
import { DIR_ID_SIZE } from "../crypto/keys.js";
import { randomPool } from "../crypto/random.js";
import { isFormatError } from "../format/errors.js";
import { CONFIG_VERSION } from "../format/config.js";
import { dirIdEntryName, readDirIds } from "../format/dir-ids.js";
import {
  SIDECAR_SUFFIX,
  classifyLowerEntry,
  decryptName,
  encryptName,
  lowerEntryFor,
  verifyLongName,
} from "../format/names.js";
import { FsError } from "./errors.js";

/** Where a cleartext path lives below. */
export interface Located {
  /** Lower path of the entry (it may not exist yet). */
  readonly lower: string;
  readonly parentLower: string;
  /** Lower entry name, and the sidecar content when the name is long. */
  readonly entry: string;
  readonly longName?: string;
}

/** A lower name no entry can have (no format entry is named so): lookups in ID-less directories miss. */
const NO_ENTRY = "cm.none";

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
  delete(key: K): void {
    this.young.delete(key);
    this.old.delete(key);
  }
  deleteWhere(predicate: (key: K) => boolean): void {
    for (const map of [this.young, this.old])
      for (const key of [...map.keys()]) if (predicate(key)) map.delete(key);
  }
}

/**
 * The encrypted namespace: maps cleartext paths to lower paths and lists
 * directories. Owns the caches of directory IDs and of name encryptions.
 *
 * A directory may carry several IDs ("cm.d.<id>" entries) when two machines
 * created it independently and a sync client merged them; names are tried
 * under each, new names use the smallest (docs/format.md, "Directory IDs").
 */
export class Namespace {
  private readonly dirIds = new Cache<string, Buffer[]>(4096);
  private readonly encrypted = new Cache<string, string>(65536);
  private readonly decrypted = new Cache<string, string | null>(65536);
  /**
   * Cleartext path -> location, below directories with exactly one ID. A
   * location is a pure function of the parent's lower path, its ID and the
   * name (whether the entry exists or not), so an entry stays valid while
   * the parent's ID list in `dirIds` is the very array it was computed with:
   * removing, recreating or moving a directory replaces or drops that array,
   * which invalidates every path below it at no cost.
   */
  private readonly located = new Cache<string, { at: Located; parentIds: Buffer[] }>(65536);
  private readonly rootIds: Buffer[];
  /** Lower directories whose forged ID entries were logged (once each). */
  private readonly warnedForged = new Set<string>();

  constructor(
    private readonly root: string,
    private readonly keyring: Keyring,
    private readonly log: Logger,
    private readonly io: LowerIo = asyncLowerIo,
    /** The volume's format version: 1 is read-only and takes bare v1 IDs (docs/format.md §12.3). */
    private readonly formatVersion: number = CONFIG_VERSION,
  ) {
    this.rootIds = [keyring.volume.rootDirId];
  }

  /** Directory IDs of a lower directory, canonical first. Empty when it has none. */
  async idsOf(lowerDir: string): Promise<Buffer[]> {
    if (lowerDir === this.root) return this.rootIds;
    const cached = this.dirIds.get(lowerDir);
    if (cached) return cached;
    const { ids, forged } = readDirIds(
      this.keyring.volume.dirIds,
      this.formatVersion,
      await this.io.readdir(lowerDir),
    );
    if (forged.length > 0 && !this.warnedForged.has(lowerDir)) {
      this.warnedForged.add(lowerDir);
      this.log.warn({ dir: lowerDir, entries: forged.length }, "forged directory ID ignored");
    }
    this.dirIds.set(lowerDir, ids);
    return ids;
  }

  /** The ID new names in `lowerDir` get; mints one for a directory that lost or never got its ID. */
  async canonicalId(lowerDir: string): Promise<Buffer> {
    const ids = await this.idsOf(lowerDir);
    if (ids[0]) return ids[0];
    this.log.warn({ dir: lowerDir }, "directory had no ID entry; created a new one");
    return this.createDirId(lowerDir);
  }

  async createDirId(lowerDir: string): Promise<Buffer> {
    // Never a v2 entry in a v1 volume, which is served read-only (docs/format.md §5.1).
    if (this.formatVersion < 2) throw new FsError("EROFS");
    const id = randomPool.bytes(DIR_ID_SIZE);
    await this.io.createFile(
      join(lowerDir, dirIdEntryName(this.keyring.volume.dirIds, id)),
      "",
      0o444,
    );
    this.dirIds.set(lowerDir, [id]);
    return id;
  }

  /** A directory was removed (it was empty): its IDs go, and with them every cached path below it. */
  forgetRemovedDir(lowerDir: string): void {
    this.dirIds.delete(lowerDir);
  }

  /** A directory moved (or was replaced by one that moved): the IDs cached at and below its lower path go. */
  forgetMovedDir(lowerDir: string): void {
    const prefix = lowerDir + "/";
    this.dirIds.deleteWhere((key) => key === lowerDir || key.startsWith(prefix));
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

  /** Lower location of cleartext `path` ("/" separated, absolute within the volume). */
  async locate(path: string): Promise<Located> {
    const cached = this.located.get(path);
    if (cached && this.cachedIds(cached.at.parentLower) === cached.parentIds) return cached.at;
    const cut = path.lastIndexOf("/");
    if (cut < 0 || path.length <= 1) return { lower: this.root, parentLower: this.root, entry: "" };
    const parentPath = cut === 0 ? "/" : path.slice(0, cut);
    const parent = await this.locate(parentPath);
    const located = await this.child(parent.lower, path.slice(cut + 1));
    const parentIds = await this.idsOf(parent.lower);
    if (parentIds.length === 1) this.located.set(path, { at: located, parentIds });
    return located;
  }

  private cachedIds(lowerDir: string): Buffer[] | undefined {
    return lowerDir === this.root ? this.rootIds : this.dirIds.get(lowerDir);
  }

  /** Location of `name` inside lower directory `parentLower`. */
  async child(parentLower: string, name: string): Promise<Located> {
    let ids: Buffer[];
    try {
      ids = await this.idsOf(parentLower);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOTDIR") throw new FsError("ENOTDIR");
      throw err;
    }
    // A directory without an ID holds no readable names: nothing can be found in it.
    if (ids.length === 0)
      return { lower: join(parentLower, NO_ENTRY), parentLower, entry: NO_ENTRY };
    const candidates = ids.map((id) => {
      const found = lowerEntryFor(this.encrypt(id, name));
      return { ...found, lower: join(parentLower, found.entry), parentLower };
    });
    if (candidates.length > 1) {
      for (const candidate of candidates) {
        if (await this.io.lstat(candidate.lower).catch(() => undefined)) return candidate;
      }
    }
    return candidates[0]!;
  }

  /** The location a new entry `name` in `parentLower` gets (canonical ID). */
  async forNew(parentLower: string, name: string): Promise<Located> {
    const id = await this.canonicalId(parentLower);
    const found = lowerEntryFor(this.encrypt(id, name));
    return { ...found, lower: join(parentLower, found.entry), parentLower };
  }

  async writeSidecar(located: Located): Promise<void> {
    if (located.longName === undefined) return;
    await this.io.unlink(located.lower + SIDECAR_SUFFIX).catch(() => undefined);
    await this.io.createFile(located.lower + SIDECAR_SUFFIX, located.longName, 0o444);
  }

  async removeSidecar(located: Located): Promise<void> {
    if (located.longName === undefined) return;
    await this.io.unlink(located.lower + SIDECAR_SUFFIX).catch(() => undefined);
  }

  /**
   * Decrypted names of a lower directory. Entries that do not decrypt are
   * skipped and logged, never fatal to the listing.
   */
  async list(lowerDir: string, cleartextDir: string): Promise<{ name: string; entry: string }[]> {
    const ids = await this.idsOf(lowerDir);
    const out: { name: string; entry: string }[] = [];
    for (const entry of await this.io.readdir(lowerDir)) {
      const name = await this.nameOf(lowerDir, entry, ids, cleartextDir);
      if (name !== null) out.push({ name, entry });
    }
    return out;
  }

  private async nameOf(
    lowerDir: string,
    entry: string,
    ids: Buffer[],
    cleartextDir: string,
  ): Promise<string | null> {
    const kind = classifyLowerEntry(entry);
    let encoded: string;
    if (kind.kind === "name") encoded = kind.encoded;
    else if (kind.kind === "long-name") {
      try {
        encoded = (await this.io.readText(join(lowerDir, entry + SIDECAR_SUFFIX))).trim();
        verifyLongName(entry, encoded);
      } catch (err) {
        this.log.warn(
          { dir: cleartextDir, entry, err: describe(err) },
          "long name unreadable; entry hidden",
        );
        return null;
      }
    } else {
      if (kind.kind === "foreign")
        this.log.debug({ dir: cleartextDir, entry }, "foreign lower entry hidden");
      return null;
    }
    const cacheKey = ids.map((id) => id.toString("hex")).join(",") + "/" + encoded;
    const cached = this.decrypted.get(cacheKey);
    if (cached !== undefined) return cached;
    let name: string | null = null;
    for (const id of ids) {
      try {
        name = decryptName(this.keyring.volume.names, id, encoded);
        this.encrypted.set(id.toString("hex") + "/" + name, encoded);
        break;
      } catch (err) {
        if (!isFormatError(err)) throw err;
      }
    }
    if (name === null) {
      const why = ids.length === 0 ? "directory ID missing" : "name failed authentication";
      this.log.warn({ dir: cleartextDir, entry }, `${why}; entry hidden`);
    }
    this.decrypted.set(cacheKey, name);
    return name;
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
