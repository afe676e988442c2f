import { fromBase64Url } from "../crypto/bytes.js";
import { LONG_NAME_PREFIX, MAX_NAME_BYTES, MAX_SHORT_NAME, SIDECAR_SUFFIX } from "./names.js";

/**
 * Conflict copies (docs/format.md §3.3): a reading rule, nothing a writer
 * writes. A sync tool that finds an entry changed on two machines keeps both
 * versions by renaming one (or both) with a suffix of its own. Appended to an
 * encrypted name the suffix makes a foreign name (§3.1: base64url has no dot
 * and no space), which the mount would hide; here such a name is recognised,
 * the encrypted name under it found, and the cleartext name the mount shows
 * for it made: the original's name with the tool's mark put before its
 * extension, so the copy still opens with the same program and a person sees
 * what it is a copy of.
 *
 * Pure: no keys, no I/O. Whether the encrypted part authenticates is decided
 * by the caller, under the directory's IDs (§10).
 */

/** The sync tools whose conflict suffixes are recognised (§3.3). */
export type ConflictTool = "rclone-bisync" | "syncthing" | "parenthesized" | "copy-number";

/** A foreign lower name that is a conflict copy of an entry of the format. */
export interface ConflictCopy {
  /** The copy's own lower name. */
  readonly entry: string;
  /** The lower name it is a copy of: an encrypted name, or a `cm.L.` entry (§11). */
  readonly original: string;
  readonly kind: "name" | "long-name";
  /** The suffix as the tool wrote it. */
  readonly suffix: string;
  /**
   * Where the tool put it in a long name: after the whole name ("appended",
   * rclone), or before the hash as if it were an extension ("inserted":
   * Syncthing and Dropbox put their mark before the extension).
   */
  readonly shape: "appended" | "inserted";
  readonly tool: ConflictTool;
  /** What goes before the cleartext name's extension (§3.3). */
  readonly mark: string;
}

interface SuffixRule {
  readonly tool: ConflictTool;
  readonly pattern: RegExp;
  /** The mark in the cleartext name, from the suffix's match. */
  readonly mark: (match: RegExpExecArray) => string;
}

/**
 * Each tool's suffix, anchored: rclone bisync up to 1.65 (`..path1`,
 * `..path2`) and from 1.66 (`.conflict1`, ...); Syncthing
 * (`.sync-conflict-YYYYMMDD-HHMMSS-<device>`); a parenthesised remark that
 * says "conflict" (Dropbox's `(<host>'s conflicted copy <date>)`,
 * Nextcloud's `(conflicted copy <date> <time>)`, Seafile's `(SFConflict …)`);
 * and a copy number, ` (1)`, as file managers, OneDrive and Dropbox add.
 */
const RULES: readonly SuffixRule[] = [
  {
    tool: "rclone-bisync",
    pattern: /^\.\.path([12])$/,
    mark: (m) => ` (conflict path${m[1]!})`,
  },
  {
    tool: "rclone-bisync",
    pattern: /^\.conflict([1-9][0-9]{0,8})$/,
    mark: (m) => ` (conflict ${m[1]!})`,
  },
  {
    tool: "syncthing",
    pattern: /^\.sync-conflict-[0-9]{8}-[0-9]{6}-[A-Z0-9]{7}$/,
    mark: (m) => m[0],
  },
  {
    tool: "parenthesized",
    pattern: /^ \([^()/\0]{0,100}[Cc]onflict[^()/\0]{0,100}\)$/,
    mark: (m) => m[0],
  },
  { tool: "copy-number", pattern: /^ \([1-9][0-9]{0,8}\)$/, mark: (m) => m[0] },
];

/** Base64url characters; an encrypted name is a run of them (§1). */
const ENCODED_RUN = /^[A-Za-z0-9_-]+/;
const HASH_LENGTH = 43;
const LONG_NAME_STEM = LONG_NAME_PREFIX.slice(0, -1);

function ruleFor(suffix: string): { tool: ConflictTool; mark: string } | undefined {
  for (const rule of RULES) {
    const match = rule.pattern.exec(suffix);
    if (match) return { tool: rule.tool, mark: rule.mark(match) };
  }
  return undefined;
}

/** What a foreign lower name is a conflict copy of, or undefined when it is none (§3.3). */
export function parseConflictCopy(entry: string): ConflictCopy | undefined {
  // "cm.L" without its dot: Dropbox's mark goes where the dot was (`cm.L (…).<hash>`).
  if (entry.startsWith(LONG_NAME_STEM)) return parseLongCopy(entry);
  const encoded = ENCODED_RUN.exec(entry)?.[0];
  if (encoded === undefined || encoded.length === entry.length) return undefined;
  if (encoded.length > MAX_SHORT_NAME || !fromBase64Url(encoded)) return undefined;
  const suffix = entry.slice(encoded.length);
  const rule = ruleFor(suffix);
  if (!rule) return undefined;
  return { entry, original: encoded, kind: "name", suffix, shape: "appended", ...rule };
}

function isHash(text: string): boolean {
  return text.length === HASH_LENGTH && fromBase64Url(text) !== undefined;
}

function parseLongCopy(entry: string): ConflictCopy | undefined {
  // Appended: "cm.L.<hash><suffix>".
  const hash = entry.slice(LONG_NAME_PREFIX.length, LONG_NAME_PREFIX.length + HASH_LENGTH);
  if (isHash(hash)) {
    const suffix = entry.slice(LONG_NAME_PREFIX.length + HASH_LENGTH);
    const rule = suffix === "" ? undefined : ruleFor(suffix);
    if (!rule) return undefined;
    const original = LONG_NAME_PREFIX + hash;
    return { entry, original, kind: "long-name", suffix, shape: "appended", ...rule };
  }
  // Inserted before the "extension": "cm.L<suffix>.<hash>".
  const stem = LONG_NAME_STEM;
  const tail = entry.slice(-HASH_LENGTH);
  if (entry.length <= stem.length + 1 + HASH_LENGTH || !isHash(tail)) return undefined;
  if (entry[entry.length - HASH_LENGTH - 1] !== ".") return undefined;
  const suffix = entry.slice(stem.length, -HASH_LENGTH - 1);
  const rule = ruleFor(suffix);
  if (!rule) return undefined;
  const original = LONG_NAME_PREFIX + tail;
  return { entry, original, kind: "long-name", suffix, shape: "inserted", ...rule };
}

/**
 * Where the stored name of a long-name copy may be, in order (§3.3): the
 * original's sidecar, then the sidecar's own copy, made by the same tool
 * when the sidecar conflicted too. Each must still hash to the original.
 */
export function sidecarCandidates(copy: ConflictCopy): string[] {
  const sidecar = copy.original + SIDECAR_SUFFIX;
  return copy.shape === "appended"
    ? [sidecar, sidecar + copy.suffix]
    : [sidecar, copy.original + copy.suffix + SIDECAR_SUFFIX];
}

/** An extension is the part from the last dot, if the dot is not the first character and it is short. */
const MAX_EXTENSION_BYTES = 20;

function splitExtension(name: string): [stem: string, extension: string] {
  const dot = name.lastIndexOf(".");
  if (dot <= 0 || dot === name.length - 1) return [name, ""];
  const extension = name.slice(dot);
  if (Buffer.byteLength(extension, "utf8") > MAX_EXTENSION_BYTES || /\s/.test(extension))
    return [name, ""];
  return [name.slice(0, dot), extension];
}

/** Drops whole code points from the end of `text` until it fits in `bytes`. */
function fitBytes(text: string, bytes: number): string {
  const points = [...text];
  while (points.length > 0 && Buffer.byteLength(points.join(""), "utf8") > bytes) points.pop();
  return points.join("");
}

/**
 * The cleartext name of a copy of `name` with `mark` (§3.3):
 * `<stem><mark><extension>`, the stem shortened when the result would pass
 * 255 bytes. `report.txt` with ` (conflict path2)` is
 * `report (conflict path2).txt`.
 */
export function conflictCopyName(name: string, mark: string): string {
  const [stem, extension] = splitExtension(name);
  const room = MAX_NAME_BYTES - Buffer.byteLength(mark + extension, "utf8");
  if (room >= 0) return fitBytes(stem, room) + mark + extension;
  return fitBytes(stem + mark + extension, MAX_NAME_BYTES);
}

/** A copy whose original's cleartext name is known. */
export interface NamedConflictCopy {
  readonly entry: string;
  /** The original's cleartext name. */
  readonly name: string;
  readonly mark: string;
}

/**
 * The cleartext names of a directory's conflict copies (§3.3): each copy
 * gets conflictCopyName, or, when that is taken by an entry of the
 * directory or an earlier copy, the same with ` (2)`, ` (3)`, ... after the
 * mark. Copies are named in the order of their lower names, so every
 * reader of the same listing gives the same names.
 */
export function nameConflictCopies(
  taken: ReadonlySet<string>,
  copies: readonly NamedConflictCopy[],
): Map<string, string> {
  const used = new Set(taken);
  const names = new Map<string, string>();
  const ordered = [...copies].sort((a, b) => (a.entry < b.entry ? -1 : a.entry > b.entry ? 1 : 0));
  for (const copy of ordered) {
    let name = conflictCopyName(copy.name, copy.mark);
    for (let n = 2; used.has(name); n++) name = conflictCopyName(copy.name, `${copy.mark} (${n})`);
    used.add(name);
    names.set(copy.entry, name);
  }
  return names;
}

/**
 * Whether a cleartext name may be one nameConflictCopies gives: every mark
 * has a " (" or is Syncthing's. Lookups of other names never need the
 * directory's conflict copies.
 */
export function mayNameConflictCopy(name: string): boolean {
  return name.includes(" (") || name.includes(".sync-conflict-");
}

/**
 * The mark of an entry shadowed by another that decrypts to the same name
 * (§12.3: both hosts made the name in a directory they both created, and
 * the sync merged the two); lookups find the other, under the smaller ID.
 */
export const DUPLICATE_MARK = " (duplicate)";

/** An entry of a directory as the mount shows it (§3.3). */
export interface ViewEntry {
  readonly entry: string;
  readonly name: string;
  /** For a conflict copy or a shadowed duplicate: the name it is a version of. */
  readonly versionOf?: string;
  readonly duplicate?: true;
}

/**
 * What a directory shows (§3.3): its entries, each name once (of entries
 * that decrypt to the same name, `winner` says which keeps it: the one a
 * lookup finds); the others and the conflict copies under the names
 * nameConflictCopies gives them, which collide with none of the entries'.
 */
export function directoryView(
  named: readonly { readonly entry: string; readonly name: string }[],
  copies: readonly NamedConflictCopy[],
  winner: (name: string, entries: readonly string[]) => string,
): ViewEntry[] {
  const byName = new Map<string, string[]>();
  for (const { entry, name } of named) {
    const group = byName.get(name);
    if (group) group.push(entry);
    else byName.set(name, [entry]);
  }
  const shown: ViewEntry[] = [];
  const versions: NamedConflictCopy[] = [...copies];
  const shadowed = new Set<string>();
  for (const [name, entries] of byName) {
    const kept = entries.length === 1 ? entries[0]! : winner(name, entries);
    shown.push({ entry: kept, name });
    for (const entry of entries)
      if (entry !== kept) {
        versions.push({ entry, name, mark: DUPLICATE_MARK });
        shadowed.add(entry);
      }
  }
  const originals = new Map(versions.map((v) => [v.entry, v.name]));
  for (const [entry, name] of nameConflictCopies(new Set(byName.keys()), versions))
    shown.push({
      entry,
      name,
      versionOf: originals.get(entry)!,
      ...(shadowed.has(entry) ? { duplicate: true as const } : {}),
    });
  return shown;
}
