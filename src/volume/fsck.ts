import { constants } from "node:fs";
import type { Keyring } from "../crypto/keys.js";
import { CONFIG_VERSION } from "../format/config.js";
import { ContentGeometry, verifyBlocks, type FileCipher } from "../format/content.js";
import { readDirIds } from "../format/dir-ids.js";
import { FormatError, isFormatError } from "../format/errors.js";
import { FileKind, HEADER_SIZE, openHeader } from "../format/header.js";
import { OBJECT_STORED_SIZE, openObject } from "../format/object.js";
import { SIDECAR_SUFFIX, decryptNameUnder, encryptName, lowerEntryFor } from "../format/names.js";
import {
  directoryView,
  type ConflictCopy,
  type ConflictTool,
  type NamedConflictCopy,
} from "../format/conflicts.js";
import { decryptSymlink } from "../format/symlink.js";
import { OBJECTS_VERSION } from "../format/versions.js";
import { FsError } from "../fs/errors.js";
import { SEEK_DATA } from "../fs/types.js";
import { replaceFileAt } from "../fs/lower/replace.js";
import {
  CHECK_RECORD_MAX_FILES,
  CHECK_RECORD_MAX_SIZE,
  CHECK_RECORD_NAME,
  CheckRecord,
  CheckRecordBuilder,
  statDigest,
} from "../format/check-record.js";
import {
  atLower,
  nameConflictCopies,
  countFiles,
  lowerPathOf,
  objectType,
  openRegularFile,
  typeAt,
  walkVolume,
  withArticle,
  type LongNameFailure,
  type ObjectType,
  type WalkedDirectory,
  type WalkedEntry,
} from "../fs/lower/layout.js";
import {
  lowerOpsFor,
  readFully,
  threadedLowerOps,
  type Fd,
  type LowerOps,
  type LowerStat,
} from "../fs/lower/ops.js";
import { withVolumeExclusive } from "../mount/volume-lock.js";
import { noProgress, type Progress } from "./progress.js";
import { withLowerRoot } from "./volume.js";

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
 *
 * The walk is the layout reader's (src/fs/lower/layout.ts): directory
 * handles, no symlink followed, no FIFO, socket or device opened. Such an
 * object where the format has none is UNEXPECTED_TYPE (§17).
 *
 * The check record (§3.4): the content of a regular file whose lower stat
 * (inode, size, mtime, ctime) the last checks recorded as verified is not
 * read again; everything else (names, directory IDs, sidecars, objects,
 * the type of every entry) is checked on every run. After the walk, fsck
 * records the files whose content verified without a problem. `full`
 * ignores the record; `record: false` neither reads nor writes it.
 */
export type Severity = "error" | "warning";

export interface Problem {
  readonly severity: Severity;
  readonly code: string;
  /** Cleartext path when the name decrypts, else undefined. */
  readonly path?: string;
  /** Lower path relative to the volume root. */
  readonly lower: string;
  /** CONFLICT_COPY: the cleartext path of the entry it is a copy of (§3.3). */
  readonly original?: string;
  readonly block?: number;
  readonly message: string;
  repaired?: boolean;
}

export interface FsckReport {
  files: number;
  directories: number;
  symlinks: number;
  /** FIFOs, sockets and devices (objects of version 3, §13). */
  specials: number;
  /** Cleartext bytes whose blocks were read and verified. */
  bytes: number;
  /** Regular files whose content was read and verified, and those skipped as recorded (§3.4). */
  checked: number;
  skipped: number;
  /** Cleartext bytes of the skipped files. */
  skippedBytes: number;
  record: RecordReport;
  /** Wall-clock time of the check. */
  seconds: number;
  problems: Problem[];
}

/** What fsck did with its check record (§3.4). */
export interface RecordReport {
  /**
   * The record found: "valid" (used unless full), "none", "invalid" (a
   * CHECK_RECORD_INVALID warning; not used), or "off" (not read: record false).
   */
  found: "valid" | "none" | "invalid" | "off";
  /** Whether this check skipped files by it. */
  used: boolean;
  /** Seconds since the record found was written, and since its last full check began. */
  age?: number;
  fullAge?: number;
  /** Whether a new record was written, and how many files it lists. */
  written: boolean;
  files?: number;
}

export interface FsckOptions {
  readonly repair?: boolean;
  readonly progress?: Progress;
  /** The volume's format version (default: the current one): which ID entries count (§12.3). */
  readonly formatVersion?: number;
  /** Check every file's content, whatever the record says (the record is rewritten). */
  readonly full?: boolean;
  /** Check everything when the record's last full check began longer ago than this (ms). */
  readonly fullAfterMs?: number;
  /** false: neither read nor write the check record (the lower is left untouched). */
  readonly record?: boolean;
}

/**
 * A file changed this shortly before it was checked is not recorded: its
 * ctime could stay the same through a later change within one tick of the
 * filesystem's clock (as git's "racily clean" entries).
 */
const RACY_MARGIN_NS = 2_000_000_000n;

/** Bytes read at once while scanning a file (whole sealed blocks). */
const SCAN_BYTES = 4 << 20;

/** What the check carries from a directory to its entries. */
interface DirState {
  /** Cleartext path, or "(lower)/<lower path>" below a name that does not decrypt. */
  readonly clear: string;
  /** The directory's IDs, set when the directory is visited. */
  ids: Buffer[];
  /** Entries met in the directory whose names decrypt (the view of §3.3: DUPLICATE_NAME, CONFLICT_COPY). */
  readonly named: { entry: string; name: string }[];
}

const newState = (clear: string): DirState => ({ clear, ids: [], named: [] });

const childOf = (dir: string, name: string): string =>
  dir === "/" ? `/${name}` : `${dir}/${name}`;

/** How reports name the tool that made a conflict copy. */
const TOOLS: Readonly<Record<ConflictTool, string>> = {
  "rclone-bisync": "rclone bisync",
  syncthing: "Syncthing",
  parenthesized: "a sync client",
  "copy-number": "a numbered copy",
};

export class Fsck {
  private readonly geometry: ContentGeometry;
  readonly report: FsckReport = {
    files: 0,
    directories: 0,
    symlinks: 0,
    specials: 0,
    bytes: 0,
    checked: 0,
    skipped: 0,
    skippedBytes: 0,
    record: { found: "off", used: false, written: false },
    seconds: 0,
    problems: [],
  };
  private readonly progress: Progress;
  private readonly formatVersion: number;
  /** Inline syscalls on a local lower (lowerOpsFor), the threadpool elsewhere. */
  private io: LowerOps = threadedLowerOps;
  /** Hex ID -> the lower directory where it was first seen (DUPLICATE_DIR_ID). */
  private readonly idHomes = new Map<string, string>();
  /** The record this check trusts (undefined: check every file). */
  private trusted: CheckRecord | undefined;
  /** Stat digests of the files verified, or skipped as recorded: the next record. */
  private readonly verified = new CheckRecordBuilder();

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
    // Repairs delete lower entries a live mount may be using (its temp files,
    // a sidecar being written): no mount runs or starts while they do.
    if (this.options.repair)
      return withVolumeExclusive(this.root, "fsck --repair", () => this.check());
    return this.check();
  }

  private async check(): Promise<FsckReport> {
    const started = Date.now();
    this.io = await lowerOpsFor(this.root, false).catch(() => threadedLowerOps);
    await withLowerRoot(this.io, this.root, async (root) => {
      const previous = this.recording ? await this.readRecord(root) : undefined;
      const full =
        this.options.full ||
        (previous !== undefined &&
          this.options.fullAfterMs !== undefined &&
          started - previous.fullAt >= this.options.fullAfterMs);
      if (previous && !full) {
        this.trusted = previous;
        this.report.record.used = true;
      }
      this.progress.start(await countFiles(this.io, root));
      try {
        await walkVolume<DirState>(
          this.io,
          root,
          {
            directory: (dir, state) => this.directory(dir, state),
            entry: (dir, entry, state) => this.entry(dir, entry, state),
            directoryDone: (dir, state) => this.versions(dir, state),
            unreachable: (dir, entry, error, state) => this.unreachable(dir, entry, error, state),
          },
          newState("/"),
          { longNames: true },
        );
      } finally {
        this.progress.stop();
      }
      if (this.recording) {
        const fullAt = this.trusted ? this.trusted.fullAt : started;
        await this.writeRecord(root, this.verified.build({ writtenAt: Date.now(), fullAt }));
      }
    });
    this.report.seconds = (Date.now() - started) / 1000;
    return this.report;
  }

  /** Whether this check reads and writes a record: not when told not to, nor on a read-only (old) version. */
  private get recording(): boolean {
    return this.options.record !== false && this.formatVersion >= OBJECTS_VERSION;
  }

  /** The check record in the root, when one verifies; anything else is a warning and unused. */
  private async readRecord(root: Fd): Promise<CheckRecord | undefined> {
    const report = this.report.record;
    let bytes: Buffer;
    try {
      bytes = await this.io.readSmallFile(root, CHECK_RECORD_NAME, CHECK_RECORD_MAX_SIZE);
    } catch (err) {
      if (!(err instanceof FsError)) throw err;
      if (err.errno === "ENOENT") {
        report.found = "none";
        return undefined;
      }
      return this.invalidRecord(`check record cannot be read (${err.errno}: ${err.message})`);
    }
    let record: CheckRecord;
    try {
      record = CheckRecord.decode(this.keyring.volume.fsckRecord, bytes);
    } catch (err) {
      if (!isFormatError(err)) throw err;
      return this.invalidRecord(err.message);
    }
    const now = Date.now();
    report.found = "valid";
    report.age = Math.max(0, Math.round((now - record.writtenAt) / 1000));
    report.fullAge = Math.max(0, Math.round((now - record.fullAt) / 1000));
    return record;
  }

  private invalidRecord(message: string): undefined {
    this.report.record.found = "invalid";
    this.add({
      severity: "warning",
      code: "CHECK_RECORD_INVALID",
      lower: CHECK_RECORD_NAME,
      message: `${message}; not trusted: every file is checked and the record replaced`,
    });
    return undefined;
  }

  /** Replaces the record atomically; a lower that cannot take it (read-only, full) is a warning. */
  private async writeRecord(root: Fd, record: CheckRecord): Promise<void> {
    const report = this.report.record;
    const unwritten = (why: string) =>
      this.add({
        severity: "warning",
        code: "CHECK_RECORD_NOT_WRITTEN",
        lower: CHECK_RECORD_NAME,
        message: `check record not written (${why}); the next check reads every file again`,
      });
    if (record.size > CHECK_RECORD_MAX_FILES) {
      unwritten(`more than ${CHECK_RECORD_MAX_FILES} files`);
      return;
    }
    try {
      await replaceFileAt(
        this.io,
        root,
        CHECK_RECORD_NAME,
        record.encode(this.keyring.volume.fsckRecord),
        0o600,
      );
    } catch (err) {
      if (!(err instanceof FsError)) throw err;
      unwritten(`${err.errno}: ${err.message}`);
      return;
    }
    report.written = true;
    report.files = record.size;
  }

  private add(problem: Problem): Problem {
    const entry = { ...problem, lower: problem.lower || "." };
    this.report.problems.push(entry);
    return entry;
  }

  private async repair(problem: Problem, action: () => Promise<void>): Promise<void> {
    if (!this.options.repair) return;
    await action();
    problem.repaired = true;
  }

  /** The checks of a directory as a whole: its IDs and its entries that are not names. */
  private async directory(dir: WalkedDirectory, state: DirState): Promise<void> {
    this.report.directories++;
    const { listing } = dir;
    const isRoot = dir.lower === "";
    const listed = readDirIds(this.keyring.volume.dirIds, this.formatVersion, listing.idEntries);
    const ids = isRoot ? [this.keyring.volume.rootDirId] : listed.ids;
    state.ids = ids;
    const clearDir = state.clear;
    // Kept when it is the only trace of a lost ID of a directory with names.
    const keepForged = ids.length === 0 && listing.named.length > 0;
    for (const entry of listed.forged) {
      const p = this.add({
        severity: "error",
        code: "FORGED_DIR_ID",
        path: clearDir,
        lower: lowerPathOf(dir.lower, entry),
        message:
          this.formatVersion >= 2
            ? "directory ID entry without a valid tag (planted, damaged, or the version-1 form); ignored"
            : "directory ID entry in the version-2 form whose tag does not verify; ignored",
      });
      if (!keepForged) await this.repair(p, () => this.io.unlink(dir.fd, entry));
    }
    if (!isRoot) {
      for (const id of ids) {
        const home = this.idHomes.get(id.toString("hex"));
        if (home === undefined) this.idHomes.set(id.toString("hex"), dir.lower);
        else
          this.add({
            severity: "error",
            code: "DUPLICATE_DIR_ID",
            path: clearDir,
            lower: dir.lower,
            message: `directory ID ${id.toString("base64url")} is also the ID of ${home || "."} (copied from one directory into the other); not repaired: nothing tells which one it belongs to`,
          });
      }
      await this.idEntryTypes(dir, clearDir, new Set(listed.forged));
    }
    if (ids.length === 0 && listing.named.length > 0) {
      this.add({
        severity: "error",
        code: "MISSING_DIR_ID",
        path: clearDir,
        lower: dir.lower,
        message: `no genuine directory ID: ${listing.named.length} entries cannot be decrypted`,
      });
    } else if (ids.length > 1) {
      this.add({
        severity: "warning",
        code: "MERGED_DIR_IDS",
        path: clearDir,
        lower: dir.lower,
        message: `directory carries ${ids.length} IDs (created on several machines and merged by sync)`,
      });
    }
    // Format entries that serve nothing: --repair removes them.
    const leftovers: [entries: readonly string[], code: string, message: string][] = [
      [
        isRoot ? listing.config.filter((e) => /\.tmp-/.test(e)) : [],
        "STALE_TEMP",
        "leftover temporary config file",
      ],
      [
        isRoot ? listing.checkRecords.filter((e) => /\.tmp-/.test(e)) : [],
        "STALE_TEMP",
        "leftover temporary check-record file",
      ],
      [listing.orphanSidecars, "ORPHAN_SIDECAR", "long-name sidecar without its entry"],
    ];
    for (const [entries, code, message] of leftovers) {
      for (const entry of entries) {
        const lower = lowerPathOf(dir.lower, entry);
        const p = this.add({ severity: "warning", code, lower, message });
        await this.repair(p, () => this.io.unlink(dir.fd, entry));
      }
    }
    const copies = new Set(listing.conflicts.map((copy) => copy.entry));
    for (const entry of listing.foreign) {
      // Conflict copies are reported once the directory's names are known (versions).
      if (!copies.has(entry)) this.foreign(dir, entry);
    }
  }

  private foreign(dir: WalkedDirectory, entry: string): void {
    this.add({
      severity: "warning",
      code: "FOREIGN_ENTRY",
      lower: lowerPathOf(dir.lower, entry),
      message: "entry is not part of the volume (e.g. a sync-conflict copy); left alone",
    });
  }

  /**
   * A directory's other versions (§3.3), after its names, each under the
   * cleartext name the mount shows: entries that decrypt to the same name
   * as another (DUPLICATE_NAME, on the one lookups do not find), and
   * conflict copies whose original's name authenticates (CONFLICT_COPY;
   * their contents are checked like a file's; the others are foreign).
   * Nothing is repaired: which version to keep is a person's call.
   */
  private async versions(dir: WalkedDirectory, state: DirState): Promise<void> {
    const copies = new Map<string, ConflictCopy>();
    const found: NamedConflictCopy[] = [];
    for (const { copy, name } of await nameConflictCopies(
      this.io,
      dir.fd,
      dir.listing.conflicts,
      (encoded) => this.decode(encoded, state.ids) ?? null,
    )) {
      if (name === null) this.foreign(dir, copy.entry);
      else {
        found.push({ entry: copy.entry, name, mark: copy.mark });
        copies.set(copy.entry, copy);
      }
    }
    const names = new Set(state.named.map((e) => e.name));
    const lowerOf = (name: string) =>
      state.ids
        .map((id) => lowerEntryFor(encryptName(this.keyring.volume.names, id, name)).entry)
        .find((e) => state.named.some((n) => n.entry === e && n.name === name));
    const view = directoryView(state.named, found, (name, entries) => lowerOf(name) ?? entries[0]!);
    for (const { entry, name: shownName, versionOf, duplicate } of view) {
      if (versionOf === undefined) continue;
      const path = childOf(state.clear, shownName);
      const original = childOf(state.clear, versionOf);
      const lower = lowerPathOf(dir.lower, entry);
      if (duplicate) {
        const other = lowerOf(versionOf);
        this.add({
          severity: "warning",
          code: "DUPLICATE_NAME",
          path,
          original,
          lower,
          message:
            `decrypts to the same name as another entry${other ? ` (${lowerPathOf(dir.lower, other)})` : ""}, which the mount shows as ${original}; ` +
            `this one it shows as ${path}: rename it to keep both`,
        });
        continue;
      }
      const copy = copies.get(entry)!;
      this.add({
        severity: "warning",
        code: "CONFLICT_COPY",
        path,
        original,
        lower,
        message:
          `conflict copy of ${original} (${TOOLS[copy.tool]})` +
          (names.has(versionOf) ? "" : ", which is gone") +
          `; keep a version by renaming it to ${original}, or delete it`,
      });
      await this.conflictCopyContents(dir, copy, lower, path);
    }
  }

  /** A conflict copy's contents, checked like those of the entry it copies. */
  private async conflictCopyContents(
    dir: WalkedDirectory,
    copy: ConflictCopy,
    lower: string,
    path: string,
  ): Promise<void> {
    const stat = await this.io.stat(dir.fd, copy.entry).catch((err: unknown) => {
      if (err instanceof FsError && err.errno === "ENOENT") return undefined;
      throw atLower(lower, err);
    });
    if (stat === undefined) return;
    const type = objectType(stat);
    const walked: WalkedEntry = {
      entry: copy.entry,
      kind: copy.kind,
      lower,
      stat,
      type,
      encoded: undefined,
    };
    if (type === "file") await this.file(dir.fd, walked, path);
    else if (type !== "directory") this.unexpectedType(lower, path, type, "");
  }

  /**
   * ID entries that count are empty files (§12.1). One that is something
   * else still counts (its name is the ID), so --repair puts an empty file
   * in its place, never a directory (whatever it holds stays).
   */
  private async idEntryTypes(
    dir: WalkedDirectory,
    clearDir: string,
    forged: ReadonlySet<string>,
  ): Promise<void> {
    for (const entry of dir.listing.idEntries) {
      if (forged.has(entry)) continue;
      const type = await typeAt(this.io, dir.fd, entry);
      if (type === "gone" || type === "file") continue;
      const p = this.add({
        severity: "error",
        code: "UNEXPECTED_TYPE",
        path: clearDir,
        lower: lowerPathOf(dir.lower, entry),
        message: `directory ID entry is ${withArticle(type)}, not an empty file (the ID still counts)`,
      });
      if (type !== "directory")
        await this.repair(p, () => replaceWithEmptyFile(this.io, dir.fd, entry));
    }
  }

  /** One named entry: its name, then the object it names. */
  private async entry(
    dir: WalkedDirectory,
    entry: WalkedEntry,
    state: DirState,
  ): Promise<DirState | undefined> {
    const name = this.nameOf(dir, entry, state.ids);
    // An entry whose name is damaged is still checked, reported by its lower path.
    let path: string | undefined;
    if (name !== undefined) {
      path = childOf(state.clear, name);
      state.named.push({ entry: entry.entry, name });
    }
    switch (entry.type) {
      case "directory":
        return newState(path ?? `(lower)/${entry.lower}`);
      case "symlink":
        await this.symlink(dir, entry, path);
        return undefined;
      case "file":
        await this.file(dir.fd, entry, path);
        this.progress.tick();
        return undefined;
      default:
        this.unexpectedType(entry.lower, path, entry.type, "");
        return undefined;
    }
  }

  private nameOf(dir: WalkedDirectory, entry: WalkedEntry, ids: Buffer[]): string | undefined {
    const encoded = entry.encoded;
    if (encoded === undefined) {
      this.longNameProblem(dir, entry, entry.longNameFailure!);
      return undefined;
    }
    const name = this.decode(encoded, ids);
    if (name !== undefined) return name;
    if (ids.length > 0) {
      this.add({
        severity: "error",
        code: "NAME_AUTH",
        lower: entry.lower,
        message: "name failed authentication (damaged, or moved from another directory)",
      });
    }
    return undefined;
  }

  /** The cleartext name `encoded` decrypts to under the first of `ids` it authenticates under. */
  private decode(encoded: string, ids: Buffer[]): string | undefined {
    return decryptNameUnder(this.keyring.volume.names, ids, encoded)?.name;
  }

  private longNameProblem(
    dir: WalkedDirectory,
    entry: WalkedEntry,
    failure: LongNameFailure,
  ): void {
    switch (failure.reason) {
      case "missing":
        this.add({
          severity: "error",
          code: "LONG_NAME_MISSING",
          lower: entry.lower,
          message:
            "long-name sidecar is missing or unreadable" +
            (failure.errno === "ENOENT" ? "" : ` (${failure.errno})`),
        });
        return;
      case "mismatch":
        this.add({
          severity: "error",
          code: "LONG_NAME_MISMATCH",
          lower: entry.lower,
          message: failure.message,
        });
        return;
      case "not-regular":
        this.add({
          severity: "error",
          code: "UNEXPECTED_TYPE",
          lower: lowerPathOf(dir.lower, entry.entry + SIDECAR_SUFFIX),
          message: `long-name sidecar is ${withArticle(failure.type)}, not a regular file: the name of its entry cannot be read; left alone`,
        });
    }
  }

  /** A FIFO, socket or device at a name, or an entry that changed type while it was checked. */
  private unexpectedType(
    lower: string,
    path: string | undefined,
    type: ObjectType,
    changed: string,
  ): void {
    this.add({
      severity: "error",
      code: "UNEXPECTED_TYPE",
      ...(path !== undefined ? { path } : {}),
      lower,
      message: `${changed}${withArticle(type)}, which a volume never holds (the mount refuses it with EIO); not opened, left alone`,
    });
  }

  private async unreachable(
    dir: WalkedDirectory,
    entry: WalkedEntry,
    error: FsError,
    state: DirState,
  ): Promise<void> {
    if (error.errno !== "ENOTDIR" && error.errno !== "ELOOP") throw atLower(entry.lower, error);
    const now = await typeAt(this.io, dir.fd, entry.entry);
    if (now === "gone") return;
    if (now === "directory" && error.errno === "ELOOP") {
      // walkVolume saw this directory among its own ancestors: a bind mount made a cycle.
      this.add({
        severity: "error",
        code: "DIRECTORY_CYCLE",
        ...(state.clear.startsWith("(lower)/") ? {} : { path: state.clear }),
        lower: entry.lower,
        message: "a directory that contains itself (a bind mount?); not entered",
      });
      return;
    }
    this.add({
      severity: "error",
      code: "UNEXPECTED_TYPE",
      ...(state.clear.startsWith("(lower)/") ? {} : { path: state.clear }),
      lower: entry.lower,
      message: `directory changed into ${withArticle(now)} while it was checked; not followed, not checked`,
    });
  }

  private async symlink(
    dir: WalkedDirectory,
    entry: WalkedEntry,
    path: string | undefined,
  ): Promise<void> {
    this.report.symlinks++;
    let target: string;
    try {
      target = await this.io.readlink(dir.fd, entry.entry);
    } catch (err) {
      if (!(err instanceof FsError)) throw err;
      if (err.errno === "ENOENT") return;
      if (err.errno !== "EIO" && err.errno !== "ENAMETOOLONG") throw atLower(entry.lower, err);
      // A target that is not UTF-8, or too long to be one of ours.
      this.add({
        severity: "error",
        code: "NAME_ENCODING",
        path,
        lower: entry.lower,
        message: `encrypted symlink target is not base64url (${err.message})`,
      });
      return;
    }
    try {
      decryptSymlink(this.keyring.volume.symlinks, target);
    } catch (err) {
      this.formatError(err, path, entry.lower);
    }
  }

  /** A format error met reading an object is an error problem; anything else is thrown. */
  private formatError(err: unknown, path: string | undefined, lower: string, what = ""): void {
    if (!isFormatError(err)) throw err;
    this.add({ severity: "error", code: err.code, path, lower, message: what + err.message });
  }

  private async file(dir: Fd, entry: WalkedEntry, path: string | undefined): Promise<void> {
    if (this.trusted && !this.isObjectLength(entry.stat.size)) {
      const digest = statDigest(entry.stat);
      if (this.trusted.has(digest)) {
        this.report.files++;
        this.report.skipped++;
        this.report.skippedBytes += this.geometry.cleartextSize(entry.stat.size);
        this.verified.add(digest);
        return;
      }
    }
    const opened = await openRegularFile(this.io, dir, entry.entry, constants.O_RDONLY);
    if ("refused" in opened) {
      if (opened.refused !== "gone")
        this.unexpectedType(entry.lower, path, opened.refused, "file changed into ");
      return;
    }
    const { fd, stat } = opened;
    const checkedAt = BigInt(Date.now()) * 1_000_000n;
    const lower = entry.lower;
    const lowerSize = stat.size;
    try {
      if (this.isObjectLength(lowerSize)) {
        await this.object(fd, path, lower);
        return;
      }
      this.report.files++;
      this.report.checked++;
      const problemsBefore = this.report.problems.length;
      const head = Buffer.alloc(HEADER_SIZE);
      const bytesRead = await readFully(this.io, fd, head, HEADER_SIZE, 0);
      let header;
      try {
        header = openHeader(
          this.keyring,
          head.subarray(0, bytesRead),
          this.geometry.blockSize,
          this.formatVersion,
        );
        if (header.kind !== FileKind.Regular) {
          header.fileKey.fill(0);
          throw new FormatError("OBJECT_INVALID", "an object's header at a regular file's length");
        }
      } catch (err) {
        this.formatError(err, path, lower, "header: ");
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
        this.formatError(err, path, lower);
        return;
      }
      this.report.bytes += size;
      const cipher = {
        fileKey: header.fileKey,
        fileId: header.fileId,
        geometry: this.geometry,
        holes: header.holes,
      };
      const finalIndex = this.geometry.blockCount(size) - 1;
      await this.scanBlocks(fd, cipher, finalIndex, lowerSize, (failure) =>
        this.add({
          severity: "error",
          code: failure.error.code,
          path,
          lower,
          block: failure.index,
          message: failure.error.message,
        }),
      );
      header.fileKey.fill(0);
      if (this.report.problems.length === problemsBefore) this.recordVerified(stat, checkedAt);
    } finally {
      await this.io.close(fd);
    }
  }

  /** Objects (§13) are small and always checked: their kind counts in the report. */
  private isObjectLength(lowerSize: number): boolean {
    return this.formatVersion >= OBJECTS_VERSION && lowerSize === this.geometry.objectLowerSize;
  }

  /** A file verified without a problem goes into the next record, unless it changed just before. */
  private recordVerified(stat: LowerStat, checkedAt: bigint): void {
    if (stat.ctimeNs > checkedAt - RACY_MARGIN_NS) return;
    this.verified.add(statDigest(stat));
  }

  /**
   * Verifies every block of a file, in large sequential reads: while one
   * chunk is verified on this thread, the threadpool reads the next into
   * the other of two buffers (allocated once per check, not per file,
   * chunk or block).
   */
  private async scanBlocks(
    fd: Fd,
    cipher: FileCipher,
    finalIndex: number,
    lowerSize: number,
    failed: (failure: { index: number; error: FormatError }) => void,
  ): Promise<void> {
    const g = this.geometry;
    const perChunk = Math.max(1, Math.floor(SCAN_BYTES / g.sealedBlockSize));
    const buffers = this.scanBuffers(perChunk * g.sealedBlockSize);
    let turn = 0;
    const read = async (from: number): Promise<{ first: number; bytes: Buffer } | undefined> => {
      for (let first = from; first <= finalIndex; first += perChunk) {
        const last = Math.min(finalIndex, first + perChunk - 1);
        const start = g.blockOffset(first);
        const end = Math.min(g.blockOffset(last + 1), lowerSize);
        // Where the lower has a hole, every block is a hole (§9): nothing to read.
        if (cipher.holes && (await this.nextData(fd, start, lowerSize)) >= end) continue;
        const buffer = buffers[turn]!;
        turn ^= 1;
        // Always on the threadpool: the read overlaps the verification of the chunk before.
        const got = await readFully(threadedLowerOps, fd, buffer, end - start, start);
        return { first, bytes: buffer.subarray(0, got) };
      }
      return undefined;
    };
    let next = read(0);
    try {
      for (let chunk = await next; chunk; chunk = await next) {
        next = read(chunk.first + perChunk);
        let at = chunk.first;
        for (;;) {
          const offset = (at - chunk.first) * g.sealedBlockSize;
          if (offset >= chunk.bytes.length) break;
          const failure = verifyBlocks(cipher, at, chunk.bytes.subarray(offset), finalIndex);
          if (!failure) break;
          failed(failure);
          at = failure.index + 1;
        }
      }
    } finally {
      // Never leave a read in flight on a descriptor the caller is about to close.
      await next.catch(() => undefined);
    }
  }

  private buffers: Buffer[] | undefined;

  private scanBuffers(size: number): Buffer[] {
    this.buffers ??= [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)];
    return this.buffers;
  }

  /** The lower's next data at or after `at` (its end when there is none). */
  private async nextData(fd: Fd, at: number, lowerSize: number): Promise<number> {
    try {
      return await this.io.lseek(fd, at, SEEK_DATA);
    } catch (err) {
      if (err instanceof FsError && err.errno === "ENXIO") return lowerSize;
      throw err;
    }
  }

  /** A symlink, FIFO, socket or device of version 3 (§13): its header and record must verify. */
  private async object(fd: Fd, path: string | undefined, lower: string): Promise<void> {
    const bytes = Buffer.alloc(OBJECT_STORED_SIZE);
    const got = await readFully(this.io, fd, bytes, bytes.length, 0);
    try {
      const value = openObject(this.keyring, bytes.subarray(0, got), this.geometry.blockSize);
      if (value.kind === FileKind.Symlink) this.report.symlinks++;
      else this.report.specials++;
    } catch (err) {
      this.report.specials++;
      this.formatError(err, path, lower, "object: ");
    }
  }
}

/** An empty read-only file in place of whatever stands at `name` (replaceFileAt). */
async function replaceWithEmptyFile(io: LowerOps, dir: Fd, name: string): Promise<void> {
  await replaceFileAt(io, dir, name, Buffer.alloc(0), 0o444);
}
