import type { Account } from "./account.js";
import { runAsUser } from "./as-user.js";

/**
 * Copying a home into (or out of) its volume, as the user, and checking the
 * copy: contents and symlink targets (diff -r --no-dereference) and every
 * entry's type and mode (find -printf), so nothing is lost or changed
 * silently. Ownership is the user's on both sides.
 */
export async function copyTree(account: Account, from: string, to: string): Promise<void> {
  const r = await runAsUser(account, "cp", [
    "-dR",
    "--preserve=mode,timestamps,links",
    "--",
    `${from}/.`,
    `${to}/`,
  ]);
  if (r.code !== 0)
    throw new Error(
      `copying ${from} to ${to} failed: ${r.stderr.trim().split("\n").slice(0, 3).join("; ")}`,
    );
}

async function listing(account: Account, dir: string): Promise<string> {
  const r = await runAsUser(account, "find", [dir, "-mindepth", "1", "-printf", "%y %m %P\\0"]);
  if (r.code !== 0) throw new Error(`listing ${dir} failed: ${r.stderr.trim()}`);
  return r.stdout.split("\0").filter(Boolean).sort().join("\n");
}

/** Undefined when `a` and `b` hold the same tree; otherwise what differs (first lines). */
export async function compareTrees(
  account: Account,
  a: string,
  b: string,
): Promise<string | undefined> {
  const diff = await runAsUser(account, "diff", ["-r", "--no-dereference", "-q", "--", a, b]);
  if (diff.code !== 0)
    return (diff.stdout.trim() || diff.stderr.trim()).split("\n").slice(0, 5).join("; ");
  const [la, lb] = [await listing(account, a), await listing(account, b)];
  if (la !== lb) {
    const setB = new Set(lb.split("\n"));
    const first = la.split("\n").find((l) => !setB.has(l)) ?? "entry lists differ";
    return `types or modes differ (${first})`;
  }
  return undefined;
}
