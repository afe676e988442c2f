import { realpath, stat } from "node:fs/promises";
import { resolve } from "node:path";
import { EXIT, UserError } from "../errors.js";
import { FSTYPE, currentMounts, type MountEntry } from "./mountinfo.js";

/**
 * Is a volume mounted? The one check behind every command that rewrites a
 * volume (rekey, fsck --repair) and behind mount's own "already mounted".
 *
 * Paths are compared as the kernel sees them: the lower argument resolved
 * (trailing slash, relative path, symlinks), the mount table's source
 * unescaped (mountinfo writes space, tab, newline and backslash as \ooo;
 * parseMountinfo undoes that), and also with libfuse's option escaping undone
 * (our fsname escapes `,` and `\`; libfuse normally removes it before the
 * mount, older versions kept it). A source naming the same directory by
 * another path (a bind mount, a renamed parent) matches by device and inode.
 */

/** Undoes fsnameFor's backslash escaping of `,` and `\`. */
export function unescapeFsname(source: string): string {
  return source.replace(/\\(.)/gs, "$1");
}

async function identity(path: string): Promise<string | undefined> {
  const st = await stat(path).catch(() => undefined);
  return st?.isDirectory() ? `${st.dev}:${st.ino}` : undefined;
}

/** The cryptmount mount serving `lower`, if any. */
export async function mountOf(lower: string): Promise<MountEntry | undefined> {
  const real = await realpath(lower).catch(() => resolve(lower));
  const ours = (await currentMounts()).filter((m) => m.fstype === FSTYPE);
  if (ours.length === 0) return undefined;
  const byName = ours.find((m) => m.source === real || unescapeFsname(m.source) === real);
  if (byName) return byName;
  const id = await identity(real);
  if (id === undefined) return undefined;
  for (const m of ours) {
    for (const candidate of new Set([m.source, unescapeFsname(m.source)])) {
      if (candidate.startsWith("/") && (await identity(candidate)) === id) return m;
    }
  }
  return undefined;
}

/** Throws a UserError (exit 6, "already mounted") when `lower` is mounted; `action` names what was refused. */
export async function refuseIfMounted(lower: string, action: string): Promise<void> {
  const entry = await mountOf(lower);
  if (entry) {
    throw new UserError(
      `${lower}: volume is mounted at ${entry.mountpoint}; unmount it before ${action}`,
      EXIT.alreadyMounted,
    );
  }
}
