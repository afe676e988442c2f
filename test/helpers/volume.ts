// Helpers for the integration suites: create cryptmount volumes, mount them
// with the real CLI (the server always runs as a separate background
// process), drive them with real programs, and clean up whatever happens.
//
// Every suite makes one Sandbox (beforeAll) with its own temporary directory
// under os.tmpdir() and its own CRYPTMOUNT_RUNTIME_DIR, so mount records of
// different suites never mix. sandbox.unmountAll() (afterEach) and
// sandbox.cleanup() (afterAll) unmount everything the suite mounted, even
// when a test failed or the server hung, and kill leftover servers.

import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { accessSync, constants, existsSync, readFileSync, readdirSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, beforeEach } from "vitest";
import { parseMountinfo } from "../../src/mount/mountinfo.js";

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(here, "..", "..");
export const CLI = join(ROOT, "dist", "cli", "main.js");
export const HELPERS = here;

/** Format constants (src/format/header.ts, content.ts) the tamper tests need. */
export const HEADER_SIZE = 152;
export const BLOCK_SIZE = 32 * 1024;
export const BLOCK_OVERHEAD = 28;
export const SEALED_BLOCK_SIZE = BLOCK_SIZE + BLOCK_OVERHEAD;

/** Exit codes, as the CLI documents them. */
export { EXIT } from "../../src/errors.js";

export const PASSPHRASE = "correct horse battery staple";

/** Where the test helpers have init write a volume's recovery key: beside its lower directory. */
export function recoveryKeyFile(lower: string): string {
  return `${lower}.recovery-key`;
}

/** --recovery-key-file for an init of `lower`, unless `extra` has --no-recovery or its own file. */
export function recoveryKeyArgs(lower: string, extra: readonly string[]): string[] {
  return extra.includes("--no-recovery") || extra.includes("--recovery-key-file")
    ? []
    : ["--recovery-key-file", recoveryKeyFile(lower)];
}

export function fuseAvailable(): boolean {
  try {
    accessSync("/dev/fuse", constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Run the suites when /dev/fuse is usable, or when CRYPTMOUNT_REQUIRE_FUSE=1 (then they fail loudly without it). */
export const haveFuse = fuseAvailable() || process.env.CRYPTMOUNT_REQUIRE_FUSE === "1";

/** The suites run the compiled CLI; `npx tsc -p .` must have run. */
export function requireBuild(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first with "npx tsc -p ."`);
}

// ---------------------------------------------------------------------------
// Running programs. Always asynchronous: the test process must never block
// on a mount (even though here the server is another process).

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  input?: string | Buffer;
  timeoutMs?: number;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

const BASE_ENV = { LC_ALL: "C", LANG: "C", TZ: "UTC" };

/** A started child process; `done` settles when it exits (never rejects). */
export interface Started {
  proc: ChildProcess;
  done: Promise<RunResult>;
}

export function start(cmd: string, args: readonly string[], options: RunOptions = {}): Started {
  const proc = spawn(cmd, args, {
    cwd: options.cwd,
    env: { ...process.env, ...BASE_ENV, ...options.env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  proc.stdout!.on("data", (c: Buffer) => out.push(c));
  proc.stderr!.on("data", (c: Buffer) => err.push(c));
  proc.stdin!.on("error", () => undefined);
  if (options.input !== undefined) proc.stdin!.end(options.input);
  else proc.stdin!.end();
  const timeoutMs = options.timeoutMs ?? 120_000;
  const done = new Promise<RunResult>((resolvePromise) => {
    const timer = setTimeout(() => {
      err.push(Buffer.from(`\n[test harness: killed after ${timeoutMs} ms]\n`));
      proc.kill("SIGKILL");
    }, timeoutMs);
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolvePromise({
        code,
        signal,
        stdout: stdoutBytes.toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        stdoutBytes,
      });
    };
    proc.on("error", (e) => {
      err.push(Buffer.from(String(e)));
      finish(127, null);
    });
    // Not "close": `cryptmount mount` leaves a background server that
    // inherits its stderr, so the pipe stays open long after the command
    // exits. Wait for its output to drain, briefly, then stop listening.
    proc.on("exit", (code, signal) => {
      const drained = (s: NodeJS.ReadableStream | null) =>
        new Promise<void>((r) => {
          if (!s || (s as { readableEnded?: boolean }).readableEnded) return r();
          s.once("end", () => r());
          s.once("close", () => r());
        });
      const grace = sleep(300);
      void Promise.race([Promise.all([drained(proc.stdout), drained(proc.stderr)]), grace]).then(
        () => {
          proc.stdout?.destroy();
          proc.stderr?.destroy();
          finish(code, signal);
        },
      );
    });
  });
  return { proc, done };
}

export function run(
  cmd: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<RunResult> {
  return start(cmd, args, options).done;
}

function describeRun(cmd: string, args: readonly string[], r: RunResult): string {
  const status = r.signal ? `signal ${r.signal}` : `exit ${r.code}`;
  return `${cmd} ${args.join(" ")} failed (${status}): ${r.stderr.trim() || r.stdout.trim()}`;
}

/** Runs a program and returns its stdout (trimmed); throws with its stderr when it fails. */
export async function runOk(
  cmd: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<string> {
  const r = await run(cmd, args, options);
  if (r.code !== 0) throw new Error(describeRun(cmd, args, r));
  return r.stdout.trim();
}

export const sh = (script: string, options?: RunOptions) => run("sh", ["-c", script], options);
export const shOk = (script: string, options?: RunOptions) => runOk("sh", ["-c", script], options);
export const py = (code: string, args: readonly string[] = [], options?: RunOptions) =>
  run("python3", ["-c", code, ...args], options);
export const pyOk = (code: string, args: readonly string[] = [], options?: RunOptions) =>
  runOk("python3", ["-c", code, ...args], options);

/** Quotes one word for sh. */
export function q(word: string): string {
  return "'" + word.replace(/'/g, "'\\''") + "'";
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitFor<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

// ---------------------------------------------------------------------------
// Mounts, processes, connections

export interface MountInfoEntry {
  mountpoint: string;
  /** "major:minor" of the mount's device; for FUSE the minor is the connection number. */
  device: string;
  fstype: string;
  source: string;
}

export function mountTable(): MountInfoEntry[] {
  return parseMountinfo(readFileSync("/proc/self/mountinfo", "utf8"));
}

export function mountEntry(mountpoint: string): MountInfoEntry | undefined {
  const matches = mountTable().filter((m) => m.mountpoint === mountpoint);
  return matches[matches.length - 1];
}

export function isMounted(mountpoint: string): boolean {
  return mountEntry(mountpoint) !== undefined;
}

/** The state letter of a process (R, S, D, T, Z, ...) from /proc, or undefined when it is gone. */
export function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return undefined;
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  // A zombie is dead for our purposes: the CLI's server is reparented to
  // init, which may take its time to reap it.
  const state = processState(pid);
  return state !== undefined && state !== "Z";
}

export async function waitForExit(pid: number, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

const CONNECTIONS = "/sys/fs/fuse/connections";

/** Makes /sys/fs/fuse/connections usable (mounts fusectl when root and it is missing). Best effort. */
async function ensureFusectl(): Promise<boolean> {
  if (mountTable().some((m) => m.fstype === "fusectl")) return true;
  if (process.getuid?.() !== 0 || !existsSync(CONNECTIONS)) return false;
  const r = await run("mount", ["-t", "fusectl", "fusectl", CONNECTIONS], { timeoutMs: 5_000 });
  return r.code === 0;
}

/**
 * Aborts the FUSE connection of a mount (as if the server died): pending and
 * future requests fail with ENOTCONN, so nothing stays stuck on a hung server.
 * Returns false when the connection could not be found.
 */
export async function abortConnection(mountpoint: string): Promise<boolean> {
  const entry = mountEntry(mountpoint);
  if (!entry || !entry.fstype.startsWith("fuse")) return false;
  const minor = entry.device.split(":")[1];
  if (minor === undefined) return false;
  await ensureFusectl();
  const abort = join(CONNECTIONS, minor, "abort");
  if (!existsSync(abort)) return false;
  await writeFile(abort, "1").catch(() => undefined);
  return true;
}

/**
 * Unmounts `mountpoint` whatever state its server is in: fusermount -u; when
 * busy or hung, abort the connection and detach lazily (fusermount -uz).
 */
export async function forceUnmount(mountpoint: string): Promise<void> {
  if (!isMounted(mountpoint)) return;
  const r = await run("fusermount", ["-u", mountpoint], { timeoutMs: 10_000 });
  if (r.code === 0 && !isMounted(mountpoint)) return;
  await abortConnection(mountpoint);
  await run("fusermount", ["-uz", mountpoint], { timeoutMs: 10_000 });
  if (isMounted(mountpoint)) await run("umount", ["-l", mountpoint], { timeoutMs: 10_000 });
}

export async function killProcess(pid: number): Promise<void> {
  if (!alive(pid)) return;
  // A stopped process would only act on SIGTERM once continued.
  if (processState(pid) !== "T") {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      return;
    }
    if (await waitForExit(pid, 5_000)) return;
  }
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return;
  }
  await waitForExit(pid, 5_000);
}

// ---------------------------------------------------------------------------
// Deterministic data

/** `length` pseudo-random bytes determined by `seed` (SHA-256 in counter mode). */
export function seededBytes(seed: string, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let counter = 0;
  for (let at = 0; at < length; at += 32) {
    const block = createHash("sha256").update(`${seed}:${counter++}`).digest();
    block.copy(out, at, 0, Math.min(32, length - at));
  }
  return out;
}

export function sha256(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}

// ---------------------------------------------------------------------------
// Sandboxes, volumes, mounts

export interface Mounted {
  readonly lower: string;
  readonly mountpoint: string;
  readonly logFile: string;
  /** The background server's pid, from its runtime record. */
  readonly pid: number;
}

export interface MountOptions {
  mountpoint?: string;
  /** Extra CLI arguments, e.g. ["--ro"] or ["-o", "ro"]. */
  args?: string[];
  passfile?: string;
}

/** JSON log lines written by a server (pino, one object a line). */
export interface LogRecord {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export class Sandbox {
  readonly runtimeDir: string;
  readonly passfile: string;
  /** Mount points this sandbox mounted and has not unmounted yet, with the server pid when known. */
  private readonly live = new Map<string, number | undefined>();
  private readonly pids = new Set<number>();
  private counter = 0;

  private constructor(readonly dir: string) {
    this.runtimeDir = join(dir, "run");
    this.passfile = join(dir, "passphrase");
  }

  static async create(label: string): Promise<Sandbox> {
    requireBuild();
    const dir = await mkdtemp(join(tmpdir(), `cryptmount-it-${label}-`));
    const sandbox = new Sandbox(dir);
    await mkdir(sandbox.runtimeDir, { mode: 0o700 });
    await writeFile(sandbox.passfile, PASSPHRASE + "\n", { mode: 0o600 });
    return sandbox;
  }

  /** Environment for programs: isolated runtime dir, HOME inside the sandbox (git, python). */
  get env(): Record<string, string> {
    return { CRYPTMOUNT_RUNTIME_DIR: this.runtimeDir, HOME: this.dir };
  }

  /** A fresh path inside the sandbox ("name-N"), not created. */
  path(name: string): string {
    return join(this.dir, `${name}-${++this.counter}`);
  }

  /** A fresh empty directory inside the sandbox. */
  async mkdir(name: string): Promise<string> {
    const p = this.path(name);
    await mkdir(p, { recursive: true });
    return p;
  }

  /** Runs the cryptmount CLI with this sandbox's runtime dir. */
  cli(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    return run(process.execPath, [CLI, ...args], {
      ...options,
      env: { ...this.env, ...options.env },
    });
  }

  async cliOk(args: readonly string[], options: RunOptions = {}): Promise<string> {
    const r = await this.cli(args, options);
    if (r.code !== 0) throw new Error(describeRun("cryptmount", args, r));
    return r.stdout;
  }

  /**
   * Creates a volume with the minimum (fast) KDF parameters; returns its lower
   * directory. Its recovery key goes to `recoveryKeyFile(lower)` (init prints
   * it only to a terminal) unless `extra` says otherwise.
   */
  async createVolume(name = "lower", extra: string[] = []): Promise<string> {
    const lower = this.path(name);
    await this.cliOk([
      "init",
      "--passfile",
      this.passfile,
      "--kdf-memory",
      "65536",
      "--kdf-iterations",
      "3",
      ...recoveryKeyArgs(lower, extra),
      ...extra,
      lower,
    ]);
    return lower;
  }

  /** Starts `cryptmount mount` (background server); returns its result without checking it. */
  async mountRaw(
    lower: string,
    mountpoint: string,
    options: MountOptions & { logFile?: string } = {},
  ): Promise<RunResult> {
    const args = ["mount", "--passfile", options.passfile ?? this.passfile];
    if (options.logFile) args.push("--log-file", options.logFile);
    args.push(...(options.args ?? []), lower, mountpoint);
    const r = await this.cli(args, { timeoutMs: 30_000 });
    if (isMounted(mountpoint) && !this.live.has(mountpoint)) this.track(mountpoint);
    return r;
  }

  /** Mounts `lower` (at a fresh mount point unless given) and waits for it to be live. */
  async mount(lower: string, options: MountOptions = {}): Promise<Mounted> {
    const mountpoint = options.mountpoint ?? (await this.mkdir("mnt"));
    const logFile = lower + ".log";
    const r = await this.mountRaw(lower, mountpoint, { ...options, logFile });
    if (r.code !== 0) throw new Error(describeRun("cryptmount mount", [lower, mountpoint], r));
    if (!isMounted(mountpoint))
      throw new Error(`${mountpoint}: mount reported success but is not mounted`);
    const pid = this.serverPid(mountpoint);
    if (pid === undefined) throw new Error(`${mountpoint}: no runtime record for the server`);
    this.track(mountpoint, pid);
    return { lower, mountpoint, logFile, pid };
  }

  private track(mountpoint: string, pid?: number): void {
    pid ??= this.serverPid(mountpoint);
    this.live.set(mountpoint, pid);
    if (pid !== undefined) this.pids.add(pid);
  }

  /** Server pid of a mount, from the runtime records the CLI writes. */
  serverPid(mountpoint: string): number | undefined {
    let names: string[];
    try {
      names = readdirSync(this.runtimeDir);
    } catch {
      return undefined;
    }
    for (const name of names.filter((n) => n.endsWith(".json"))) {
      try {
        const record = JSON.parse(readFileSync(join(this.runtimeDir, name), "utf8")) as {
          mountpoint: string;
          pid: number;
        };
        if (record.mountpoint === mountpoint) return record.pid;
      } catch {
        /* being replaced */
      }
    }
    return undefined;
  }

  /** Unmounts with `cryptmount umount` (waits for the server to exit); throws if that fails. */
  async unmount(m: Mounted | string): Promise<void> {
    const mountpoint = typeof m === "string" ? m : m.mountpoint;
    const pid = this.live.get(mountpoint) ?? (typeof m === "string" ? undefined : m.pid);
    const r = await this.cli(["umount", mountpoint], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(describeRun("cryptmount umount", [mountpoint], r));
    if (isMounted(mountpoint)) throw new Error(`${mountpoint}: still mounted after umount`);
    if (pid !== undefined && !(await waitForExit(pid, 10_000)))
      throw new Error(`server ${pid} did not exit after umount`);
    this.live.delete(mountpoint);
  }

  /** Unmounts and mounts the same volume again at the same place. */
  async remount(m: Mounted, options: MountOptions = {}): Promise<Mounted> {
    await this.unmount(m);
    return this.mount(m.lower, { ...options, mountpoint: m.mountpoint });
  }

  /** Forgets a mount that a test took down itself (it must already be gone). */
  forget(mountpoint: string): void {
    if (!isMounted(mountpoint)) this.live.delete(mountpoint);
  }

  /** Takes down every mount of this sandbox, however broken, and kills leftover servers. */
  async unmountAll(): Promise<void> {
    for (const [mountpoint, pid] of [...this.live]) {
      // A stopped (hung) server answers nothing: kill it, then detach its mount.
      if (pid !== undefined && processState(pid) === "T") {
        await abortConnection(mountpoint);
        await killProcess(pid);
      }
      if (isMounted(mountpoint)) {
        const r = await this.cli(["umount", mountpoint], { timeoutMs: 15_000 });
        if (r.code !== 0 || isMounted(mountpoint)) await forceUnmount(mountpoint);
      }
      if (pid !== undefined) await killProcess(pid);
      this.live.delete(mountpoint);
    }
    // Anything mounted below the sandbox that we did not track (a test that mounted by hand).
    for (const m of mountTable()) {
      if (m.mountpoint.startsWith(this.dir + "/") && m.fstype.startsWith("fuse")) {
        const pid = this.serverPid(m.mountpoint);
        await forceUnmount(m.mountpoint);
        if (pid !== undefined) this.pids.add(pid);
      }
    }
    for (const pid of [...this.pids]) {
      await killProcess(pid);
      this.pids.delete(pid);
    }
  }

  async cleanup(): Promise<void> {
    await this.unmountAll();
    // Never delete through a mount that is still there.
    if (
      mountTable().some((m) => m.mountpoint === this.dir || m.mountpoint.startsWith(this.dir + "/"))
    ) {
      throw new Error(`${this.dir}: something is still mounted below; not removing it`);
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Parsed JSON log lines (waits until one matches `until`, if given). */
export async function readLog(
  logFile: string,
  until?: (r: LogRecord) => boolean,
  timeoutMs = 5_000,
): Promise<LogRecord[]> {
  const parse = async () => {
    const text = await readFile(logFile, "utf8").catch(() => "");
    return text
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as LogRecord);
  };
  if (!until) return parse();
  return waitFor(
    `a matching record in ${logFile}`,
    async () => {
      const records = await parse();
      return records.some(until) ? records : undefined;
    },
    timeoutMs,
  );
}

/** Relative paths of every entry below `dir` (the lower tree), sorted. */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      out.push(p);
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk("");
  return out.sort();
}

/**
 * Lower entries created by `action`: lower paths (relative to `lower`) that
 * exist afterwards and did not before. Used to find the encrypted file
 * behind a cleartext one.
 */
export async function newLowerEntries(
  lower: string,
  action: () => Promise<unknown>,
): Promise<string[]> {
  const before = new Set(await listTree(lower));
  await action();
  return (await listTree(lower)).filter((p) => !before.has(p));
}

// ---------------------------------------------------------------------------
// Suite lifecycles

/**
 * Registers the hooks of a suite with its own sandbox: made once before the
 * tests (then `ready` runs, e.g. to create volumes), everything it mounted
 * unmounted after each test, and removed at the end whatever happened.
 */
export function sandboxSuite(label: string, ready: (sb: Sandbox) => void | Promise<void>): void {
  let sb: Sandbox | undefined;
  beforeAll(async () => {
    sb = await Sandbox.create(label);
    await ready(sb);
  });
  afterEach(async () => {
    await sb?.unmountAll();
  });
  afterAll(async () => {
    await sb?.cleanup();
  });
}

/** What a suite on one mounted volume works with; `work` is a fresh directory in the mount for each test. */
export interface SuiteMount {
  sb: Sandbox;
  lower: string;
  m: Mounted;
  work: string;
}

/**
 * Registers the hooks of a suite that runs on one volume: create and mount
 * it once, give each test a fresh directory (remounting first if an earlier
 * test broke the mount), and unmount and clean up at the end whatever
 * happened. `update` receives the state whenever it changes.
 */
export function mountedSuite(label: string, update: (state: SuiteMount) => void): void {
  let state: SuiteMount | undefined;
  let testNo = 0;
  beforeAll(async () => {
    const sb = await Sandbox.create(label);
    const lower = await sb.createVolume();
    state = { sb, lower, m: await sb.mount(lower), work: "" };
    update(state);
  });
  beforeEach(async () => {
    const s = state!;
    // A test that broke the mount must not take the next ones down with it.
    if (!isMounted(s.m.mountpoint)) {
      await s.sb.unmountAll();
      s.m = await s.sb.mount(s.lower, { mountpoint: s.m.mountpoint });
    }
    s.work = join(s.m.mountpoint, `t${++testNo}`);
    await runOk("mkdir", [s.work]);
    update(s);
  });
  afterAll(async () => {
    if (state && isMounted(state.m.mountpoint))
      await forceUnmount(state.m.mountpoint).catch(() => undefined);
    await state?.sb.cleanup();
  });
}
