import { join } from "node:path";
import {
  CONFIG_VERSION,
  featuresFor,
  parseConfig,
  serializeConfig,
  type VolumeConfig,
} from "../format/config.js";
import { randomPool } from "../crypto/random.js";
import { ContentGeometry } from "../format/content.js";
import { dirIdEntryName } from "../format/dir-ids.js";
import { isFormatError } from "../format/errors.js";
import { FileKind } from "../format/header.js";
import type { ObjectValue } from "../format/object.js";
import { decryptSymlink } from "../format/symlink.js";
import { pino } from "pino";
import { Objects, SYMLINK_LOWER_MODE } from "../fs/objects.js";
import { classifyLowerEntry } from "../format/names.js";
import { FsError } from "../fs/errors.js";
import { lowerPathOf, walkVolume, type WalkedDirectory } from "../fs/lower/layout.js";
import { isSymlink, threadedLowerOps, type Fd, type LowerOps } from "../fs/lower/ops.js";
import { noProgress, type Progress } from "./progress.js";
import { withVolumeExclusive } from "../mount/volume-lock.js";
import {
  CONFIG_BACKUP,
  CONFIG_FILE,
  resign,
  saveConfig,
  withLowerRoot,
  type UnlockedVolume,
} from "./volume.js";

/**
 * `cryptmount upgrade`: format version 1 or 2 -> 3 in place (docs/format.md
 * §22.2, §23.2).
 *
 *   1. (version 1 only) every non-root directory: beside each v1 ID entry
 *      "cm.d.<id>", create its v2 entry "cm.d.<id || tag>"; fsync the directory
 *   2. the config as version 3 with its eight features (atomic, §5.5)
 *   3. every non-root directory: remove the v1 entries whose v2 entry exists; fsync
 *   4. every lower symlink whose target decrypts: an object of the same target
 *      written beside it and renamed over it (§23.2); fsync each directory
 *
 * Until step 2 the volume keeps its old version (old builds see new ID
 * entries as foreign and hide them); from step 2 on it is a version-3 volume,
 * which reads leftover v1 entries as forged and both symlink forms. Rerunning
 * after a crash anywhere finishes the job: an old config repeats step 1
 * (existing entries are kept), a version-3 config rewrites the backup copy if
 * it differs and repeats steps 3 and 4 (removing temporaries a crash left).
 */
export interface UpgradeResult {
  /** The version found: 1, or 2 when an earlier run had already written the config. */
  readonly from: number;
  readonly directories: number;
  /** Version-2 ID entries created (step 1). */
  readonly created: number;
  /** Version-1 ID entries removed (step 3). */
  readonly removed: number;
  /** Version-1 entries left in place (no v2 entry beside them in a v2 volume: not ours to bless). */
  readonly leftovers: readonly string[];
  /** Lower paths of directories whose ID also belongs to an earlier directory (fsck: DUPLICATE_DIR_ID). */
  readonly duplicates: readonly string[];
  /** Lower symlinks turned into objects (step 4). */
  readonly symlinks: number;
  /** Lower symlinks left as they were: their target does not decrypt (fsck reports them). */
  readonly unconverted: readonly string[];
}

export type UpgradeStep = "entries" | "config" | "cleanup" | "symlinks";

export interface UpgradeOptions {
  readonly progress?: Progress;
  /** Called after each step and after each directory of steps 1 and 3; a throw there stands for a crash (tests). */
  readonly onStep?: (step: UpgradeStep, lowerDir?: string) => void;
}

/**
 * Visits every non-root lower directory of the volume, parents before
 * children, in lower-name order (walkVolume: reached through name entries
 * that are directories, each opened relative to its parent, never through a
 * symlink).
 */
async function eachDirectory(
  io: LowerOps,
  root: Fd,
  visit: (dir: WalkedDirectory) => Promise<void>,
): Promise<void> {
  await walkVolume(
    io,
    root,
    { directory: (dir) => (dir.lower === "" ? undefined : visit(dir)) },
    undefined,
  );
}

/** A config copy as text, "" when it cannot be read as a regular file of sane size. */
async function configCopy(io: LowerOps, root: Fd, name: string): Promise<string> {
  const bytes = await io.readSmallFile(root, name, MAX_CONFIG_BYTES).catch(() => undefined);
  return bytes?.toString("utf8") ?? "";
}

/** Far above any config (32 slots of a few hundred bytes each). */
const MAX_CONFIG_BYTES = 1 << 20;

/** The version-1 ID entries of a listing, with the name of the v2 entry each becomes. */
function v1Entries(
  key: Buffer,
  names: readonly string[],
): { v1: string; v2: string; id: Buffer }[] {
  return names.flatMap((name) => {
    const kind = classifyLowerEntry(name);
    return kind.kind === "dir-id" && kind.form === "v1"
      ? [{ v1: name, v2: dirIdEntryName(key, kind.id), id: kind.id }]
      : [];
  });
}

/** An empty read-only entry, exclusively: false when something already stands at the name. */
async function createEmpty(io: LowerOps, dir: Fd, name: string): Promise<boolean> {
  try {
    await io.createFile(dir, name, Buffer.alloc(0), 0o444, { exclusive: true, sync: false });
    return true;
  } catch (err) {
    if (err instanceof FsError && err.errno === "EEXIST") return false;
    throw err;
  }
}

export async function upgrade(
  unlocked: UnlockedVolume,
  options: UpgradeOptions = {},
): Promise<UpgradeResult> {
  return withVolumeExclusive(unlocked.lower, "upgrade", () =>
    upgradeHoldingVolume(unlocked, options),
  );
}

async function upgradeHoldingVolume(
  unlocked: UnlockedVolume,
  options: UpgradeOptions,
): Promise<UpgradeResult> {
  const { lower, keyring, mountKeys } = unlocked;
  const progress = options.progress ?? noProgress;
  const step = options.onStep ?? (() => undefined);
  const key = keyring.volume.dirIds;
  let config: VolumeConfig = unlocked.config;
  const from = config.version;
  const io = threadedLowerOps;
  let created = 0;
  const duplicates: string[] = [];
  let removed = 0;
  let directories = 0;
  const leftovers: string[] = [];

  const converter = new SymlinkConverter(unlocked, io);
  await withLowerRoot(io, lower, async (root) => {
    if (config.version < 2) {
      const homes = new Set<string>();
      let total = 0;
      await eachDirectory(io, root, async () => {
        total++;
      });
      progress.start(total);
      try {
        await eachDirectory(io, root, async (dir) => {
          const present = new Set(dir.listing.names);
          let changed = false;
          for (const e of v1Entries(key, dir.listing.idEntries)) {
            if (homes.has(e.id.toString("hex"))) duplicates.push(dir.lower);
            homes.add(e.id.toString("hex"));
            if (present.has(e.v2)) continue;
            if (await createEmpty(io, dir.fd, e.v2)) {
              created++;
              changed = true;
            }
          }
          if (changed) await io.fsyncDir(dir.fd);
          progress.tick();
          step("entries", join(lower, dir.lower));
        });
      } finally {
        progress.stop();
      }
      step("entries");
    }
    if (config.version < CONFIG_VERSION) {
      config = resign(
        { ...config, version: CONFIG_VERSION, features: featuresFor(CONFIG_VERSION) },
        mountKeys,
      );
      parseConfig(serializeConfig(config)); // never write a config we could not read back
      await saveConfig(lower, config);
    } else {
      // A crash between the two renames of step 2 leaves the backup at version 1.
      const text = serializeConfig(config);
      const copies = [
        await configCopy(io, root, CONFIG_FILE),
        await configCopy(io, root, CONFIG_BACKUP),
      ];
      if (copies.some((c) => c !== text)) await saveConfig(lower, config);
    }
    step("config");

    await eachDirectory(io, root, async (dir) => {
      directories++;
      const present = new Set(dir.listing.names);
      let changed = false;
      for (const e of v1Entries(key, dir.listing.idEntries)) {
        if (!present.has(e.v2)) {
          leftovers.push(lowerPathOf(dir.lower, e.v1));
          continue;
        }
        await io.unlink(dir.fd, e.v1).catch((err: unknown) => {
          if (!(err instanceof FsError && err.errno === "ENOENT")) throw err;
        });
        removed++;
        changed = true;
      }
      if (changed) await io.fsyncDir(dir.fd);
      step("cleanup", join(lower, dir.lower));
    });
    step("cleanup");

    await walkVolume(
      io,
      root,
      {
        directory: (dir) => converter.clearTemporaries(dir),
        entry: async (dir, entry) => {
          if (entry.type === "symlink") await converter.convert(dir, entry.entry, entry.lower);
          return undefined;
        },
        directoryDone: async (dir) => {
          await converter.finish(dir);
          step("symlinks", join(lower, dir.lower));
        },
      },
      undefined,
    );
    step("symlinks");
  });
  return {
    from,
    directories,
    created,
    removed,
    leftovers,
    duplicates,
    symlinks: converter.converted,
    unconverted: converter.unconverted,
  };
}

/** Objects are only written here; nothing of theirs is logged. */
const silentLog = pino({ level: "silent" });

/** `<entry>.tmp-<12 hex digits>`: the temporary object of step 4 (§23.2), a foreign name. */
const TEMPORARY = /^(.+)\.tmp-[0-9a-f]{12}$/;

/**
 * Step 4 (§23.2): turns the lower symlinks of one directory at a time into
 * objects, each written to a temporary name, given the symlink's owner and
 * times, made durable and renamed over it; one directory fsync at the end.
 */
class SymlinkConverter {
  converted = 0;
  readonly unconverted: string[] = [];
  private readonly objects: Objects;
  private readonly changed = new Set<Fd>();

  constructor(
    private readonly unlocked: UnlockedVolume,
    private readonly io: LowerOps,
  ) {
    const geometry = new ContentGeometry(unlocked.config.blockSize);
    this.objects = new Objects(unlocked.keyring, geometry, silentLog, io, true);
  }

  /** A crash in step 4 can leave a temporary beside the symlink it was for: it goes. */
  async clearTemporaries(dir: WalkedDirectory): Promise<void> {
    for (const name of dir.listing.foreign) {
      const prefix = TEMPORARY.exec(name)?.[1];
      if (prefix === undefined) continue;
      const st = await this.io.stat(dir.fd, prefix).catch(() => undefined);
      if (st && isSymlink(st)) {
        await this.io.unlink(dir.fd, name).catch(() => undefined);
        this.changed.add(dir.fd);
      }
    }
  }

  async convert(dir: WalkedDirectory, entry: string, lower: string): Promise<void> {
    let target: string;
    try {
      const stored = await this.io.readlink(dir.fd, entry);
      target = decryptSymlink(this.unlocked.keyring.volume.symlinks, stored);
    } catch (err) {
      if (!(isFormatError(err) || err instanceof FsError)) throw err;
      this.unconverted.push(lower);
      return;
    }
    const st = await this.io.stat(dir.fd, entry);
    const temp = `${entry}.tmp-${randomPool.bytes(6).toString("hex")}`;
    const value: ObjectValue = { kind: FileKind.Symlink, target };
    await this.objects.create(dir.fd, temp, value, SYMLINK_LOWER_MODE, { sync: true });
    try {
      await this.io.chown(dir.fd, temp, st.uid, st.gid);
      await this.io.utimens(dir.fd, temp, st.atimeNs, st.mtimeNs);
      await this.io.rename(dir.fd, temp, dir.fd, entry, 0);
    } catch (err) {
      await this.io.unlink(dir.fd, temp).catch(() => undefined);
      throw err;
    }
    this.converted++;
    this.changed.add(dir.fd);
  }

  async finish(dir: WalkedDirectory): Promise<void> {
    if (!this.changed.delete(dir.fd)) return;
    await this.io.fsyncDir(dir.fd);
  }
}
