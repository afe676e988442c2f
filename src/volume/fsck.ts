import { lstat, open, readFile, readdir, readlink, unlink } from "node:fs/promises";
import { join, relative } from "node:path";
import type { Keyring } from "../crypto/keys.js";
import { CONFIG_VERSION } from "../format/config.js";
import { ContentGeometry, openBlocks } from "../format/content.js";
import { readDirIds } from "../format/dir-ids.js";
import { isFormatError } from "../format/errors.js";
import { HEADER_SIZE, openHeader } from "../format/header.js";
import {
  SIDECAR_SUFFIX,
  classifyLowerEntry,
  decryptName,
  verifyLongName,
} from "../format/names.js";
import { decryptSymlink } from "../format/symlink.js";
import { refuseIfMounted } from "../mount/in-use.js";
import { noProgress, type Progress } from "./progress.js";

/**
 * fsck: walks a whole volume with its keys and reports every problem it
 * finds: each header, block, name, long name, directory ID and symlink is
 * verified. Errors are damage or tampering; warnings are states that need
 * attention but lose nothing (merged directory IDs, an unfinished rekey,
 * entries that are not ours such as sync-conflict copies).
 *
 * Directory IDs (docs/format.md §12): a `cm.d.` entry that does not count
 * under the volume's version is FORGED_DIR_ID (--repair removes it, unless
 * it sits in a directory that has no genuine ID and holds names: then it
 * is kept as evidence of the lost ID); a genuine ID found in a second
 * directory is DUPLICATE_DIR_ID, never repaired, because nothing tells
 * which directory it came from (§18.3).
 */
export type Severity = "error" | "warning";

export interface Problem {
  readonly severity: Severity;
  readonly code: string;
  /** Cleartext path when the name decrypts, else undefined. */
  readonly path?: string;
  /** Lower path relative to the volume root. */
  readonly lower: string;
  readonly block?: number;
  readonly message: string;
  repaired?: boolean;
}

export interface FsckReport {
  files: number;
  directories: number;
  symlinks: number;
  bytes: number;
  problems: Problem[];
}

export interface FsckOptions {
  readonly repair?: boolean;
  readonly progress?: Progress;
  /** The volume's format version (default: the current one): which ID entries count (§12.3). */
  readonly formatVersion?: number;
}

/** Blocks verified per read while scanning a file. */
const SCAN_BLOCKS = 64;

export async function countFiles(root: string): Promise<number> {
  let count = 0;
  const stack = [root];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (entry.isDirectory()) stack.push(join(dir, entry.name));
      else if (entry.isFile() && !entry.name.includes(".")) count++;
      else if (entry.isFile() && classifyLowerEntry(entry.name).kind === "long-name") count++;
    }
  }
  return count;
}

export class Fsck {
  private readonly geometry: ContentGeometry;
  readonly report: FsckReport = { files: 0, directories: 0, symlinks: 0, bytes: 0, problems: [] };
  private readonly progress: Progress;
  private readonly formatVersion: number;
  /** Hex ID -> the lower directory where it was first seen (DUPLICATE_DIR_ID). */
  private readonly idHomes = new Map<string, string>();

  constructor(
    private readonly root: string,
    private readonly keyring: Keyring,
    blockSize: number,
    private readonly options: FsckOptions = {},
  ) {
    this.geometry = new ContentGeometry(blockSize);
    this.progress = options.progress ?? noProgress;
    this.formatVersion = options.formatVersion ?? CONFIG_VERSION;
  }

  async run(): Promise<FsckReport> {
    // Repairs delete lower entries a live mount may be using (its temp files, a sidecar being written).
    if (this.options.repair) await refuseIfMounted(this.root, "fsck --repair");
    this.progress.start(await countFiles(this.root));
    try {
      await this.directory(this.root, "/", [this.keyring.volume.rootDirId]);
    } finally {
      this.progress.stop();
    }
    return this.report;
  }

  private add(problem: Omit<Problem, "lower"> & { lower: string }): Problem {
    const entry = { ...problem, lower: relative(this.root, problem.lower) || "." };
    this.report.problems.push(entry);
    return entry;
  }

  private async repair(problem: Problem, action: () => Promise<void>): Promise<void> {
    if (!this.options.repair) return;
    await action();
    problem.repaired = true;
  }

  private async directory(
    lowerDir: string,
    clearDir: string,
    inheritedIds: Buffer[] | undefined,
  ): Promise<void> {
    this.report.directories++;
    const entries = await readdir(lowerDir);
    const listed = readDirIds(this.keyring.volume.dirIds, this.formatVersion, entries);
    const ids = inheritedIds ?? listed.ids;
    const encrypted = entries.filter((e) =>
      ["name", "long-name"].includes(classifyLowerEntry(e).kind),
    );
    // Kept when it is the only trace of a lost ID of a directory with names.
    const keepForged = ids.length === 0 && encrypted.length > 0;
    for (const entry of listed.forged) {
      const lower = join(lowerDir, entry);
      const p = this.add({
        severity: "error",
        code: "FORGED_DIR_ID",
        path: clearDir,
        lower,
        message:
          this.formatVersion >= 2
            ? "directory ID entry without a valid tag (planted, damaged, or the version-1 form); ignored"
            : "directory ID entry in the version-2 form whose tag does not verify; ignored",
      });
      if (!keepForged) await this.repair(p, () => unlink(lower));
    }
    if (!inheritedIds) {
      for (const id of ids) {
        const home = this.idHomes.get(id.toString("hex"));
        if (home === undefined) this.idHomes.set(id.toString("hex"), lowerDir);
        else
          this.add({
            severity: "error",
            code: "DUPLICATE_DIR_ID",
            path: clearDir,
            lower: lowerDir,
            message: `directory ID ${id.toString("base64url")} is also the ID of ${relative(this.root, home) || "."} (copied from one directory into the other); not repaired: nothing tells which one it belongs to`,
          });
      }
    }
    if (ids.length === 0 && encrypted.length > 0) {
      this.add({
        severity: "error",
        code: "MISSING_DIR_ID",
        path: clearDir,
        lower: lowerDir,
        message: `no genuine directory ID: ${encrypted.length} entries cannot be decrypted`,
      });
    } else if (ids.length > 1) {
      this.add({
        severity: "warning",
        code: "MERGED_DIR_IDS",
        path: clearDir,
        lower: lowerDir,
        message: `directory carries ${ids.length} IDs (created on several machines and merged by sync)`,
      });
    }
    const seen = new Map<string, string>();
    for (const entry of entries.sort()) {
      const lower = join(lowerDir, entry);
      const kind = classifyLowerEntry(entry);
      switch (kind.kind) {
        case "dir-id":
          continue;
        case "config": {
          if (lowerDir === this.root && /\.tmp-/.test(entry)) {
            const p = this.add({
              severity: "warning",
              code: "STALE_TEMP",
              lower,
              message: "leftover temporary config file",
            });
            await this.repair(p, () => unlink(lower));
          }
          continue;
        }
        case "sidecar": {
          if (!(await lstat(join(lowerDir, kind.entry)).catch(() => undefined))) {
            const p = this.add({
              severity: "warning",
              code: "ORPHAN_SIDECAR",
              lower,
              message: "long-name sidecar without its entry",
            });
            await this.repair(p, () => unlink(lower));
          }
          continue;
        }
        case "foreign":
          this.add({
            severity: "warning",
            code: "FOREIGN_ENTRY",
            lower,
            message: "entry is not part of the volume (e.g. a sync-conflict copy); left alone",
          });
          continue;
      }
      const name = await this.nameOf(
        lowerDir,
        entry,
        kind.kind === "name" ? kind.encoded : undefined,
        ids,
      );
      // An entry whose name is damaged is still checked, reported by its lower path.
      if (name === undefined) {
        await this.entry(lower, undefined);
        continue;
      }
      const clearPath = clearDir === "/" ? `/${name}` : `${clearDir}/${name}`;
      const twin = seen.get(name);
      if (twin) {
        this.add({
          severity: "warning",
          code: "DUPLICATE_NAME",
          path: clearPath,
          lower,
          message: `two entries decrypt to the same name (the other: ${relative(this.root, twin)})`,
        });
      }
      seen.set(name, lower);
      await this.entry(lower, clearPath);
    }
  }

  private async nameOf(
    lowerDir: string,
    entry: string,
    encoded: string | undefined,
    ids: Buffer[],
  ): Promise<string | undefined> {
    const lower = join(lowerDir, entry);
    if (encoded === undefined) {
      try {
        encoded = (await readFile(lower + SIDECAR_SUFFIX, "utf8")).trim();
        verifyLongName(entry, encoded);
      } catch (err) {
        const code = isFormatError(err) ? err.code : "LONG_NAME_MISSING";
        this.add({
          severity: "error",
          code,
          lower,
          message: isFormatError(err) ? err.message : "long-name sidecar is missing or unreadable",
        });
        return undefined;
      }
    }
    for (const id of ids) {
      try {
        return decryptName(this.keyring.volume.names, id, encoded);
      } catch (err) {
        if (!isFormatError(err)) throw err;
      }
    }
    if (ids.length > 0) {
      this.add({
        severity: "error",
        code: "NAME_AUTH",
        lower,
        message: "name failed authentication (damaged, or moved from another directory)",
      });
    }
    return undefined;
  }

  private async entry(lower: string, path: string | undefined): Promise<void> {
    const st = await lstat(lower);
    if (st.isDirectory())
      return this.directory(lower, path ?? `(lower)/${relative(this.root, lower)}`, undefined);
    if (st.isSymbolicLink()) {
      this.report.symlinks++;
      try {
        decryptSymlink(this.keyring.volume.symlinks, await readlink(lower));
      } catch (err) {
        if (!isFormatError(err)) throw err;
        this.add({ severity: "error", code: err.code, path, lower, message: err.message });
      }
      return;
    }
    if (st.isFile()) {
      await this.file(lower, path, st.size);
      this.progress.tick();
      return;
    }
    this.add({
      severity: "warning",
      code: "SPECIAL_FILE",
      path,
      lower,
      message: "device, FIFO or socket in the lower directory",
    });
  }

  private async file(lower: string, path: string | undefined, lowerSize: number): Promise<void> {
    this.report.files++;
    const handle = await open(lower, "r");
    try {
      const head = Buffer.alloc(HEADER_SIZE);
      const { bytesRead } = await handle.read(head, 0, HEADER_SIZE, 0);
      let header;
      try {
        header = openHeader(this.keyring, head.subarray(0, bytesRead), this.geometry.blockSize);
      } catch (err) {
        if (!isFormatError(err)) throw err;
        this.add({
          severity: "error",
          code: err.code,
          path,
          lower,
          message: `header: ${err.message}`,
        });
        return;
      }
      const stale = header.slotEpochs.filter(
        (e) => e !== undefined && e !== this.keyring.currentEpoch,
      );
      if (stale.length > 0) {
        this.add({
          severity: "warning",
          code: "STALE_EPOCH",
          path,
          lower,
          message: `file key still wrapped under epoch ${stale.join(", ")} (run cryptmount rekey to finish)`,
        });
      }
      let size: number;
      try {
        size = this.geometry.cleartextSize(lowerSize);
      } catch (err) {
        if (!isFormatError(err)) throw err;
        this.add({ severity: "error", code: err.code, path, lower, message: err.message });
        return;
      }
      this.report.bytes += size;
      const cipher = { fileKey: header.fileKey, fileId: header.fileId, geometry: this.geometry };
      const finalIndex = this.geometry.blockCount(size) - 1;
      const chunk = Buffer.allocUnsafe(SCAN_BLOCKS * this.geometry.sealedBlockSize);
      for (let first = 0; first <= finalIndex; first += SCAN_BLOCKS) {
        const last = Math.min(finalIndex, first + SCAN_BLOCKS - 1);
        const start = this.geometry.blockOffset(first);
        const end = Math.min(this.geometry.blockOffset(last + 1), lowerSize);
        const { bytesRead: got } = await handle.read(chunk, 0, end - start, start);
        let at = first;
        while (at <= last) {
          const offset = (at - first) * this.geometry.sealedBlockSize;
          const { failure } = openBlocks(cipher, at, chunk.subarray(offset, got), finalIndex);
          if (!failure) break;
          this.add({
            severity: "error",
            code: failure.error.code,
            path,
            lower,
            block: failure.index,
            message: failure.error.message,
          });
          at = failure.index + 1;
        }
      }
      header.fileKey.fill(0);
    } finally {
      await handle.close();
    }
  }
}
