import { open, readFile, readdir, unlink } from "node:fs/promises";
import { join, relative } from "node:path";
import {
  CONFIG_VERSION,
  featuresFor,
  parseConfig,
  serializeConfig,
  type VolumeConfig,
} from "../format/config.js";
import { dirIdEntryName } from "../format/dir-ids.js";
import { classifyLowerEntry } from "../format/names.js";
import { fsyncDir } from "../atomic.js";
import { noProgress, type Progress } from "./progress.js";
import { refuseIfMounted } from "../mount/in-use.js";
import { CONFIG_BACKUP, CONFIG_FILE, resign, saveConfig, type UnlockedVolume } from "./volume.js";

/**
 * `cryptmount upgrade`: format version 1 -> 2 in place (docs/format.md §22.2).
 *
 *   1. every non-root directory: beside each v1 ID entry "cm.d.<id>", create
 *      its v2 entry "cm.d.<id || tag>"; fsync the directory
 *   2. the config as version 2 with the authenticated-dir-ids feature (atomic, §5.5)
 *   3. every non-root directory: remove the v1 entries whose v2 entry exists; fsync
 *
 * Until step 2 the volume is a v1 volume (v1 builds see the new entries as
 * foreign and hide them); from step 2 on it is a v2 volume whose leftover v1
 * entries are ignored. Rerunning after a crash anywhere finishes the job: a
 * v1 config repeats step 1 (existing v2 entries are kept), a v2 config
 * rewrites the backup copy if it differs and repeats step 3.
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
}

export type UpgradeStep = "entries" | "config" | "cleanup";

export interface UpgradeOptions {
  readonly progress?: Progress;
  /** Called after each step and after each directory of steps 1 and 3; a throw there stands for a crash (tests). */
  readonly onStep?: (step: UpgradeStep, lowerDir?: string) => void;
}

/** Non-root lower directories of the volume, parents before children, sorted. */
async function volumeDirectories(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    )) {
      const kind = classifyLowerEntry(entry.name).kind;
      if ((kind === "name" || kind === "long-name") && entry.isDirectory()) {
        out.push(join(dir, entry.name));
        await walk(join(dir, entry.name));
      }
    }
  };
  await walk(root);
  return out;
}

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

async function createEmpty(path: string): Promise<boolean> {
  try {
    await (await open(path, "wx", 0o444)).close();
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  }
}

export async function upgrade(
  unlocked: UnlockedVolume,
  options: UpgradeOptions = {},
): Promise<UpgradeResult> {
  const { lower, keyring, mountKeys } = unlocked;
  const progress = options.progress ?? noProgress;
  const step = options.onStep ?? (() => undefined);
  await refuseIfMounted(lower, "upgrade");
  const key = keyring.volume.dirIds;
  let config: VolumeConfig = unlocked.config;
  const from = config.version;
  const dirs = await volumeDirectories(lower);
  let created = 0;
  const duplicates: string[] = [];

  if (config.version < 2) {
    const homes = new Set<string>();
    progress.start(dirs.length);
    try {
      for (const dir of dirs) {
        const names = await readdir(dir);
        const present = new Set(names);
        let changed = false;
        for (const e of v1Entries(key, names)) {
          if (homes.has(e.id.toString("hex"))) duplicates.push(dir);
          homes.add(e.id.toString("hex"));
          if (present.has(e.v2)) continue;
          if (await createEmpty(join(dir, e.v2))) {
            created++;
            changed = true;
          }
        }
        if (changed) await fsyncDir(dir);
        progress.tick();
        step("entries", dir);
      }
    } finally {
      progress.stop();
    }
    step("entries");
    config = resign(
      { ...config, version: CONFIG_VERSION, features: featuresFor(CONFIG_VERSION) },
      mountKeys,
    );
    parseConfig(serializeConfig(config)); // never write a config we could not read back
    await saveConfig(lower, config);
  } else {
    // A crash between the two renames of step 2 leaves the backup at version 1.
    const text = serializeConfig(config);
    const copies = await Promise.all(
      [CONFIG_FILE, CONFIG_BACKUP].map((f) => readFile(join(lower, f), "utf8").catch(() => "")),
    );
    if (copies.some((c) => c !== text)) await saveConfig(lower, config);
  }
  step("config");

  let removed = 0;
  const leftovers: string[] = [];
  for (const dir of dirs) {
    const names = await readdir(dir);
    const present = new Set(names);
    let changed = false;
    for (const e of v1Entries(key, names)) {
      if (!present.has(e.v2)) {
        leftovers.push(relative(lower, join(dir, e.v1)));
        continue;
      }
      await unlink(join(dir, e.v1)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOENT") throw err;
      });
      removed++;
      changed = true;
    }
    if (changed) await fsyncDir(dir);
    step("cleanup", dir);
  }
  step("cleanup");
  return {
    from,
    directories: dirs.length,
    created,
    removed,
    leftovers,
    duplicates: duplicates.map((d) => relative(lower, d)),
  };
}
