import { readFile, readdir } from "node:fs/promises";
import { recordPath } from "../mount/runtime.js";
import { FSTYPE, currentMounts } from "../mount/mountinfo.js";
import { runProgram, type Account, type Output } from "./account.js";
import { cryptmountAsUser } from "./as-user.js";

/** Whether a cryptmount volume is mounted at `mountpoint`. */
export async function isMounted(mountpoint: string): Promise<boolean> {
  return (await currentMounts()).some((m) => m.mountpoint === mountpoint && m.fstype === FSTYPE);
}

/**
 * Mounts `lower` at `mountpoint` as the user: `cryptmount mount` run with the
 * user's uid and gid, so the server is the user's and the mount goes through
 * fusermount3, without allow_other. The password goes on its stdin (which
 * `cryptmount mount` reads when it is not a terminal), never in argv or the
 * environment.
 */
export async function mountAsUser(
  account: Account,
  lower: string,
  mountpoint: string,
  password: Buffer,
  extraArgs: readonly string[] = [],
): Promise<{ output: Output; nonEmpty: boolean }> {
  const nonEmpty = (await readdir(mountpoint).catch(() => [])).length > 0;
  const input = Buffer.alloc(password.length + 1, 0x0a);
  password.copy(input);
  try {
    const output = await cryptmountAsUser(
      account,
      ["mount", ...extraArgs, ...(nonEmpty ? ["--nonempty"] : []), lower, mountpoint],
      { input },
    );
    return { output, nonEmpty };
  } finally {
    input.fill(0);
  }
}

/**
 * Unmounts (as root). Files still open make umount fail with EBUSY: then the
 * mount is detached lazily (umount -l): it leaves the namespace now and the
 * server, which wipes its keys and exits when the kernel ends the
 * connection, goes once the last file is closed.
 */
export async function unmount(
  mountpoint: string,
  account?: Account,
): Promise<"unmounted" | "lazy" | "not mounted"> {
  if (!(await isMounted(mountpoint))) return "not mounted";
  const server = account ? await serverPid(account, mountpoint) : undefined;
  const r = await runProgram("umount", [mountpoint]);
  if (r.code === 0) {
    if (server !== undefined) await waitForExit(server);
    return "unmounted";
  }
  if (/busy/i.test(r.stderr)) {
    const lazy = await runProgram("umount", ["-l", mountpoint]);
    if (lazy.code === 0) return "lazy";
    throw new Error(`umount -l ${mountpoint}: ${lazy.stderr.trim()}`);
  }
  throw new Error(`umount ${mountpoint}: ${r.stderr.trim()}`);
}

/**
 * The pid of the user's server for `mountpoint`, from its status record
 * (src/mount/runtime.ts; the helper runs `cryptmount mount` without
 * XDG_RUNTIME_DIR, so the record is in /tmp/cryptmount-UID).
 */
async function serverPid(account: Account, mountpoint: string): Promise<number | undefined> {
  try {
    const text = await readFile(recordPath(mountpoint, `/tmp/cryptmount-${account.uid}`), "utf8");
    const pid = (JSON.parse(text) as { pid?: unknown }).pid;
    return typeof pid === "number" && Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Waits (up to 5 s) until `pid` is gone or a zombie: the server wipes its keys and exits after an unmount. */
async function waitForExit(pid: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
    if (stat === "" || stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}
