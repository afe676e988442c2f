// Helpers for the `cryptmount home` suites (test/integration/home-*.test.ts):
// real test users, PAM service files for pamtester, and a guard that puts
// back every system file, mode and account the suite touched, even when a
// test failed.

import { existsSync, readFileSync, statSync } from "node:fs";
import { chmod, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CLI, HELPERS, ROOT, run, runOk, type RunResult } from "./volume.js";

export const MODULE = join(ROOT, "build", "pam_cryptmount.so");
export const PTY = join(HELPERS, "pty_answer.py");
/** Small Argon2 for tests (the minimum passes; 64 MiB). */
export const KDF = ["--kdf-memory", "65536", "--kdf-iterations", "3"];

function which(program: string): boolean {
  return ["/usr/bin", "/usr/sbin", "/bin", "/sbin"].some((d) => existsSync(join(d, program)));
}

/** Why the home suites cannot run here, or undefined. */
export function homeUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root";
  if (!existsSync(MODULE)) return "build/pam_cryptmount.so not built (libpam0g-dev)";
  if (!which("pamtester")) return "pamtester not installed";
  if (!which("fusermount3")) return "fusermount3 not installed";
  if (!existsSync("/dev/fuse")) return "no /dev/fuse";
  return undefined;
}

export const cli = (args: readonly string[], input?: string) =>
  run(process.execPath, [CLI, ...args], input === undefined ? {} : { input });

export function helperOptions(debug = false): string {
  return `${debug ? "debug " : ""}node=${process.execPath} cli=${CLI}`;
}

/** A PAM service for pamtester: pam_unix plus our module, by absolute path. */
export function serviceText(extra = ""): string {
  const opts = helperOptions() + (extra ? ` ${extra}` : "");
  return [
    "auth     required pam_unix.so",
    `auth     optional ${MODULE} ${opts}`,
    "account  required pam_unix.so",
    "session  required pam_permit.so",
    `session  optional ${MODULE} ${opts}`,
    "password required pam_unix.so",
    `password optional ${MODULE} ${opts}`,
    "",
  ].join("\n");
}

export function pamtester(
  service: string,
  user: string,
  ops: readonly string[],
  password?: string,
): Promise<RunResult> {
  return run("pamtester", ["-v", service, user, ...ops], {
    input: password === undefined ? "" : `${password}\n`,
  });
}

/** Runs `command` on a pty as `asUser` (or root), typing `answers` at its prompts. */
export function onPty(
  asUser: string | undefined,
  command: readonly string[],
  answers: readonly string[],
) {
  const argv = ["python3", PTY, ...command];
  const full = asUser ? ["runuser", "-u", asUser, "--", ...argv] : argv;
  return run(full[0]!, full.slice(1), { input: answers.join("\n") + "\n" });
}

export const asUser = (user: string, script: string) =>
  run("runuser", ["-u", user, "--", "sh", "-c", script]);

export function cryptmountMounts(): { mountpoint: string; source: string }[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" - "))
    .filter((p) => p[1]?.startsWith("fuse.cryptmount "))
    .map(([a, b]) => ({ mountpoint: a!.split(" ")[4]!, source: b!.split(" ")[1]! }));
}

export const mountedAt = (mountpoint: string) =>
  cryptmountMounts().some((m) => m.mountpoint === mountpoint);

/**
 * Records system state before a suite changes it and puts it back after:
 * files (content and mode, or absence), device modes, test accounts and
 * their processes, and paths the suite created.
 */
export class SystemGuard {
  private readonly files = new Map<string, { data: Buffer; mode: number } | null>();
  private readonly modes = new Map<string, number>();
  private readonly users: string[] = [];
  private readonly paths: string[] = [];

  /** Remembers `path` (content, mode, or that it does not exist) to restore it later. */
  keepFile(path: string): void {
    if (this.files.has(path)) return;
    this.files.set(
      path,
      existsSync(path) ? { data: readFileSync(path), mode: statSync(path).mode & 0o7777 } : null,
    );
  }

  /** Removed at the end (if it did not exist before). */
  removeLater(path: string): void {
    if (!existsSync(path)) this.paths.push(path);
  }

  /** Made by the suite: removed at the end. */
  own(path: string): void {
    this.paths.push(path);
  }

  async setMode(path: string, mode: number): Promise<void> {
    if (!this.modes.has(path)) this.modes.set(path, statSync(path).mode & 0o7777);
    await chmod(path, mode);
  }

  /** A test account with a home from /etc/skel and this password. */
  async createUser(prefix: string, password: string): Promise<string> {
    const name = `${prefix}${process.pid.toString(36)}${Math.floor(Math.random() * 1e4)}`.slice(
      0,
      30,
    );
    await runOk("useradd", ["-m", "-s", "/bin/sh", name]);
    this.users.push(name);
    await runOk("chpasswd", [], { input: `${name}:${password}\n` });
    return name;
  }

  async restore(): Promise<void> {
    const errors: string[] = [];
    for (const user of this.users) {
      for (const m of cryptmountMounts().filter(
        (m) =>
          m.source.includes(`/.cryptmount/${user}/`) || m.mountpoint.startsWith(`/home/${user}`),
      )) {
        await run("umount", ["-l", m.mountpoint]);
      }
      const ps = await run("ps", ["-o", "pid=", "-u", user]);
      for (const pid of ps.stdout.split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          /* gone */
        }
      }
      await rm(`/etc/cryptmount/home/${user}.json`, { force: true });
      await rm(`/home/.cryptmount/${user}`, { recursive: true, force: true });
      for (const suffix of [".cryptmount-backup", ".cryptmount-restore", ".cryptmount-leftovers"])
        await rm(`/home/${user}${suffix}`, { recursive: true, force: true });
      await rm(`/run/cryptmount-home/${user}.lock`, { force: true });
      await rm(`/run/cryptmount-home/${user}.sessions`, { force: true });
      const uid = (await run("id", ["-u", user])).stdout.trim();
      if (/^\d+$/.test(uid)) await rm(`/tmp/cryptmount-${uid}`, { recursive: true, force: true });
      const r = await run("userdel", ["-r", "-f", user]);
      if (r.code !== 0 && r.code !== 12 && existsSync(`/home/${user}`)) errors.push(r.stderr);
      await rm(`/home/${user}`, { recursive: true, force: true });
    }
    for (const [path, saved] of this.files) {
      if (saved === null) await rm(path, { force: true });
      else {
        await writeFile(path, saved.data);
        await chmod(path, saved.mode);
      }
    }
    for (const [path, mode] of this.modes) await chmod(path, mode);
    for (const path of this.paths.reverse()) await rm(path, { recursive: true, force: true });
    for (const dir of ["/etc/cryptmount/home", "/home/.cryptmount"]) {
      if (existsSync(dir) && (await readdir(dir)).length === 0) await rm(dir, { recursive: true });
    }
    if (errors.length > 0) throw new Error(`restoring failed: ${errors.join("; ")}`);
  }
}
