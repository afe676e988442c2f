// Tools for the volume-level integration suites (test/integration/volume-*.test.ts):
// seeded randomness, bulk writers and checksummers that run as separate
// python3 processes (the test process never reads a mount itself), lower-tree
// snapshots, header parsing, fault injection, config edits, error-output
// checks and small loop-mounted filesystems.
//
// Reading the *lower* directory from the test process is fine: it is a plain
// directory, not a FUSE mount.

import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, openSync, readFileSync, readSync, readdirSync, statSync } from "node:fs";
import { copyFile, open, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "vitest";
import type { RecordReport } from "../../src/volume/fsck.js";
import {
  CLI,
  HEADER_SIZE,
  isMounted,
  pyOk,
  recoveryKeyArgs,
  recoveryKeyFile,
  run,
  type RunResult,
  type Sandbox,
} from "./volume.js";

export const CONFIG = "cryptmount.conf";
export const CONFIG_BAK = "cryptmount.conf.bak";
export const MIN_KDF = ["--kdf-memory", "65536", "--kdf-iterations", "3"] as const;

/** Offsets inside the 152-byte file header (src/format/header.ts). */
export const HEADER = { fileId: 8, slotA: 24, slotB: 88, slotSize: 64 } as const;
export const BLOCK_OVERHEAD = 28;

// ---------------------------------------------------------------------------
// Seeded randomness

/** mulberry32: a small deterministic PRNG; returns floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [min, max] from `rand`. */
export function randInt(rand: () => number, min: number, max: number): number {
  return min + Math.floor(rand() * (max - min + 1));
}

// ---------------------------------------------------------------------------
// Running commands that may leave a background server behind
//
// A background mount server inherits the caller's standard error (it logs
// there when it is not a terminal, docs/cryptmount.1.md). A runner that waits
// for the pipes to close (volume.ts run()) would then wait until the volume
// is unmounted, so here the output goes to files and we wait for the exit only.

export interface ExitRunOptions {
  env?: Record<string, string | undefined>;
  input?: string;
  timeoutMs?: number;
}

export interface StartedExit {
  proc: ChildProcess;
  done: Promise<RunResult>;
}

let outputCounter = 0;

export function startToExit(
  sb: Sandbox,
  cmd: string,
  args: readonly string[],
  options: ExitRunOptions = {},
): StartedExit {
  const base = join(sb.dir, `out-${process.pid}-${++outputCounter}`);
  const outFd = openSync(base + ".stdout", "w");
  const errFd = openSync(base + ".stderr", "w");
  const proc = spawn(cmd, args, {
    env: { ...process.env, LC_ALL: "C", LANG: "C", TZ: "UTC", ...sb.env, ...options.env },
    stdio: [options.input === undefined ? "ignore" : "pipe", outFd, errFd],
  });
  closeSync(outFd);
  closeSync(errFd);
  if (options.input !== undefined) {
    proc.stdin!.on("error", () => undefined);
    proc.stdin!.end(options.input);
  }
  const timeoutMs = options.timeoutMs ?? 120_000;
  const done = new Promise<RunResult>((resolve) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill("SIGKILL");
    }, timeoutMs);
    const finish = async (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      const stdoutBytes = await readFile(base + ".stdout").catch(() => Buffer.alloc(0));
      let stderr = await readFile(base + ".stderr", "utf8").catch(() => "");
      if (timedOut) stderr += `\n[test harness: killed after ${timeoutMs} ms]\n`;
      // The server may still hold the files open; unlinking them is fine.
      await rm(base + ".stdout", { force: true });
      await rm(base + ".stderr", { force: true });
      resolve({ code, signal, stdout: stdoutBytes.toString("utf8"), stderr, stdoutBytes });
    };
    proc.on("error", (e) => {
      clearTimeout(timer);
      resolve({
        code: 127,
        signal: null,
        stdout: "",
        stderr: String(e),
        stdoutBytes: Buffer.alloc(0),
      });
    });
    proc.on("exit", (code, signal) => void finish(code, signal));
  });
  return { proc, done };
}

/** Runs a program with the sandbox's environment and waits for its exit (not for its pipes). */
export function runToExit(
  sb: Sandbox,
  cmd: string,
  args: readonly string[],
  options: ExitRunOptions = {},
): Promise<RunResult> {
  return startToExit(sb, cmd, args, options).done;
}

/** The cryptmount CLI, waited for until it exits. */
export function cli(
  sb: Sandbox,
  args: readonly string[],
  options: ExitRunOptions = {},
): Promise<RunResult> {
  return runToExit(sb, process.execPath, [CLI, ...args], options);
}

export async function cliOk(
  sb: Sandbox,
  args: readonly string[],
  options: ExitRunOptions = {},
): Promise<string> {
  const r = await cli(sb, args, options);
  if (r.code !== 0)
    throw new Error(
      `cryptmount ${args.join(" ")} failed (exit ${r.code}, signal ${r.signal}): ${r.stderr.trim()}`,
    );
  return r.stdout;
}

export interface LiveMount {
  readonly lower: string;
  readonly mountpoint: string;
  readonly pid: number;
}

/**
 * Mounts with "cryptmount mount" (background server) at a fresh mount point
 * inside the sandbox (so sb.unmountAll() takes it down whatever happens).
 */
export async function mountVolume(
  sb: Sandbox,
  lower: string,
  options: { mountpoint?: string; args?: readonly string[]; key?: readonly string[] } = {},
): Promise<LiveMount> {
  const mountpoint = options.mountpoint ?? (await sb.mkdir("mnt"));
  const key = options.key ?? ["--passfile", sb.passfile];
  const r = await cli(sb, ["mount", ...key, ...(options.args ?? []), lower, mountpoint], {
    timeoutMs: 60_000,
  });
  if (r.code !== 0) throw new Error(`mount ${lower} failed (exit ${r.code}): ${r.stderr.trim()}`);
  if (!isMounted(mountpoint))
    throw new Error(`${mountpoint}: mount reported success but is not mounted`);
  const pid = sb.serverPid(mountpoint);
  if (pid === undefined) throw new Error(`${mountpoint}: no runtime record for the server`);
  return { lower, mountpoint, pid };
}

/** "cryptmount umount" and wait for the server to be gone. */
export async function unmountVolume(sb: Sandbox, m: LiveMount): Promise<void> {
  const r = await cli(sb, ["umount", m.mountpoint], { timeoutMs: 30_000 });
  if (r.code !== 0)
    throw new Error(`umount ${m.mountpoint} failed (exit ${r.code}): ${r.stderr.trim()}`);
  if (isMounted(m.mountpoint)) throw new Error(`${m.mountpoint}: still mounted after umount`);
  const deadline = Date.now() + 15_000;
  while (serverAlive(m.pid)) {
    if (Date.now() > deadline) throw new Error(`server ${m.pid} did not exit after umount`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function serverAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// Errors

/** The CLI's error contract: the documented exit code, one stderr line starting "cryptmount: ", no stack trace. */
export function expectCliError(r: RunResult, code: number, pattern?: RegExp): void {
  const context = `exit ${r.code} signal ${r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
  expect(r.code, context).toBe(code);
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines, context).toHaveLength(1);
  expect(lines[0], context).toMatch(/^cryptmount: \S/);
  expect(r.stderr, context).not.toMatch(/\n\s+at |internal error/);
  if (pattern) expect(lines[0], context).toMatch(pattern);
}

// ---------------------------------------------------------------------------
// Keys

/** The recovery key init or passwd --new-recovery-key printed (groups of 5 like XXXXX-XXXXX-...). */
export function recoveryKeyFrom(stdout: string): string {
  const m = /^\s*([0-9A-Z]{5}(?:-[0-9A-Z]{5}){3,})\s*$/m.exec(stdout);
  if (!m) throw new Error(`no recovery key in output:\n${stdout}`);
  return m[1]!;
}

/** Writes a one-line secret file (mode 600) and returns its path. */
export async function secretFile(
  sb: Sandbox,
  name: string,
  content: string | Buffer,
): Promise<string> {
  const path = sb.path(name);
  await writeFile(path, typeof content === "string" ? content + "\n" : content, { mode: 0o600 });
  return path;
}

/** The recovery key a --recovery-key-file holds (one line). */
export async function recoveryKeyIn(file: string): Promise<string> {
  return recoveryKeyFrom(await readFile(file, "utf8"));
}

/**
 * Creates a volume like Sandbox.createVolume but also returns init's stdout
 * and, unless --no-recovery, the recovery key it wrote to
 * recoveryKeyFile(lower).
 */
export async function initVolume(
  sb: Sandbox,
  extra: readonly string[] = [],
  passfile = sb.passfile,
): Promise<{ lower: string; stdout: string; recoveryKey?: string }> {
  const lower = sb.path("lower");
  const stdout = await cliOk(sb, [
    "init",
    "--passfile",
    passfile,
    ...MIN_KDF,
    ...recoveryKeyArgs(lower, extra),
    ...extra,
    lower,
  ]);
  if (extra.includes("--no-recovery")) return { lower, stdout };
  const given = extra.indexOf("--recovery-key-file");
  const file = given >= 0 ? extra[given + 1]! : recoveryKeyFile(lower);
  return { lower, stdout, recoveryKey: await recoveryKeyIn(file) };
}

// ---------------------------------------------------------------------------
// Bulk writing and checksumming through a mount, in python3 processes

export type Manifest = Record<string, string>;

const WRITER = String.raw`
import hashlib, json, os, random, sys
root, seed, dirs, per_dir, max_size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
r = random.Random(seed)
out = {}
for d in range(dirs):
    dname = "d%03d" % d
    os.makedirs(os.path.join(root, dname), exist_ok=True)
    for f in range(per_dir):
        rel = "%s/f%04d" % (dname, f)
        data = r.randbytes(r.randint(0, max_size))
        with open(os.path.join(root, rel), "wb") as fh:
            fh.write(data)
        out[rel] = hashlib.sha256(data).hexdigest()
json.dump(out, sys.stdout)
`;

/**
 * Writes `dirs` x `perDir` files of 0..maxSize seeded random bytes below
 * `root` (normally a mount point) and returns their manifest (path -> sha256).
 */
export async function writeFiles(
  root: string,
  seed: string,
  dirs: number,
  perDir: number,
  maxSize: number,
): Promise<Manifest> {
  const out = await pyOk(WRITER, [root, seed, String(dirs), String(perDir), String(maxSize)], {
    timeoutMs: 600_000,
  });
  return JSON.parse(out) as Manifest;
}

const CHECKSUMMER = String.raw`
import errno, hashlib, json, os, sys
root = sys.argv[1]
only = set(json.loads(sys.argv[2])) if len(sys.argv) > 2 and sys.argv[2] != "-" else None
tolerant = len(sys.argv) > 3 and sys.argv[3] == "tolerant"
out = {}
for dp, dn, fn in os.walk(root):
    dn.sort()
    for f in sorted(fn):
        p = os.path.join(dp, f)
        rel = os.path.relpath(p, root)
        if only is not None and rel not in only:
            continue
        if os.path.islink(p):
            out[rel] = "link:" + os.readlink(p)
            continue
        try:
            with open(p, "rb") as fh:
                out[rel] = hashlib.sha256(fh.read()).hexdigest()
        except OSError as e:
            if not tolerant:
                raise
            out[rel] = "error:" + errno.errorcode.get(e.errno, str(e.errno))
json.dump(out, sys.stdout)
`;

/**
 * sha256 of every regular file below `root` (a mount point), read by a
 * python3 process. `tolerant`: a file that fails to read maps to
 * "error:EIO" (or its errno) instead of failing the whole run.
 */
export async function checksumTree(
  root: string,
  only?: readonly string[],
  tolerant = false,
): Promise<Manifest> {
  const args = [root, only ? JSON.stringify(only) : "-", ...(tolerant ? ["tolerant"] : [])];
  return JSON.parse(await pyOk(CHECKSUMMER, args, { timeoutMs: 600_000 })) as Manifest;
}

/** Writes named files below `root` (a mount point) from a python3 process. */
export async function writeNamed(
  root: string,
  files: Record<string, Buffer | string>,
): Promise<void> {
  const spec = Object.fromEntries(
    Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString("base64")]),
  );
  await pyOk(
    String.raw`
import base64, json, os, sys
root = sys.argv[1]
for rel, data in json.loads(sys.stdin.read()).items():
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as fh:
        fh.write(base64.b64decode(data))
`,
    [root],
    { input: JSON.stringify(spec) },
  );
}

export function sha256Hex(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}

// ---------------------------------------------------------------------------
// The lower tree (a plain directory: synchronous reads are fine)

/**
 * In a copy of a fixture volume, gives the Syncthing conflict copy in its
 * root what a sync tool would have put there: its original's bytes. (The
 * fixtures' copy holds 13 cleartext bytes; since the mount shows conflict
 * copies, docs/format.md §3.3, fsck reads it and finds SHORT_HEADER.)
 */
export async function realFixtureConflictCopy(lower: string): Promise<void> {
  for (const name of readdirSync(lower)) {
    const original = /^([A-Za-z0-9_-]+)\.sync-conflict-/.exec(name)?.[1];
    if (original) await copyFile(join(lower, original), join(lower, name));
  }
}

/** Relative paths of the regular files below `lower`, sorted; `skipConfig` leaves out cryptmount.conf*. */
export function lowerFiles(lower: string, skipConfig = true): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of readdirSync(join(lower, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && !(skipConfig && rel === "" && e.name.startsWith(CONFIG))) out.push(p);
    }
  };
  walk("");
  return out.sort();
}

/** Lower paths of the volume's content files (encrypted names or long-name entries, not sidecars or dir IDs). */
export function lowerContentFiles(lower: string): string[] {
  return lowerFiles(lower).filter((p) => {
    const name = p.slice(p.lastIndexOf("/") + 1);
    return !name.includes(".") || (name.startsWith("cm.L.") && !name.endsWith(".n"));
  });
}

/** sha256 of every lower file (config excluded): "byte-identical" comparisons. */
export function lowerSnapshot(lower: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of lowerFiles(lower)) out[p] = sha256Hex(readFileSync(join(lower, p)));
  return out;
}

export interface LowerSplit {
  header: Buffer;
  /** sha256 of everything after the header. */
  body: string;
  size: number;
}

/** Each content file's header bytes and a hash of what follows it. */
export function lowerSplit(
  lower: string,
  files = lowerContentFiles(lower),
): Map<string, LowerSplit> {
  const out = new Map<string, LowerSplit>();
  for (const p of files) {
    const bytes = readFileSync(join(lower, p));
    out.set(p, {
      header: Buffer.from(bytes.subarray(0, HEADER_SIZE)),
      body: sha256Hex(bytes.subarray(HEADER_SIZE)),
      size: bytes.length,
    });
  }
  return out;
}

/** Epochs of the two key slots of a header (undefined for an empty slot). */
export function headerEpochs(header: Buffer): (number | undefined)[] {
  return [HEADER.slotA, HEADER.slotB].map((at) => {
    const slot = header.subarray(at, at + HEADER.slotSize);
    return slot.every((b) => b === 0) ? undefined : slot.readUInt32BE(0);
  });
}

/** Reads just the header of a lower file (synchronously; the lower is not a mount). */
export function readHeader(path: string): Buffer {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(HEADER_SIZE);
    readSync(fd, buf, 0, HEADER_SIZE, 0);
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** How many of `files` (absolute lower paths) have a key slot wrapped under `epoch`. */
export function countWrappedUnder(files: readonly string[], epoch: number): number {
  let n = 0;
  for (const f of files) {
    try {
      if (headerEpochs(readHeader(f)).includes(epoch)) n++;
    } catch {
      /* being rewritten; counted next time */
    }
  }
  return n;
}

export function fileSize(path: string): number {
  return statSync(path).size;
}

// ---------------------------------------------------------------------------
// Fault injection

/** Flips one bit of the byte at `offset`. */
export async function flipBit(path: string, offset: number, bit = 0): Promise<void> {
  const handle = await open(path, "r+");
  try {
    const b = Buffer.alloc(1);
    await handle.read(b, 0, 1, offset);
    b[0]! ^= 1 << bit;
    await handle.write(b, 0, 1, offset);
  } finally {
    await handle.close();
  }
}

/** Swaps two equal-length byte ranges of a file. */
export async function swapRanges(
  path: string,
  a: number,
  b: number,
  length: number,
): Promise<void> {
  const handle = await open(path, "r+");
  try {
    const x = Buffer.alloc(length);
    const y = Buffer.alloc(length);
    await handle.read(x, 0, length, a);
    await handle.read(y, 0, length, b);
    await handle.write(y, 0, length, a);
    await handle.write(x, 0, length, b);
  } finally {
    await handle.close();
  }
}

/** A base64url name with one character changed to another valid one (not the last, which carries padding bits). */
export function tamperName(name: string, at = Math.floor(name.length / 2)): string {
  const c = name[at]!;
  const replacement = c === "A" ? "B" : "A";
  return name.slice(0, at) + replacement + name.slice(at + 1);
}

// ---------------------------------------------------------------------------
// Config

export async function readConfigText(lower: string, backup = false): Promise<string> {
  return readFile(join(lower, backup ? CONFIG_BAK : CONFIG), "utf8");
}

export async function readConfig(lower: string, backup = false): Promise<Record<string, unknown>> {
  return JSON.parse(await readConfigText(lower, backup)) as Record<string, unknown>;
}

/** Both config copies, for "unchanged" assertions. */
export async function configCopies(lower: string): Promise<[string, string]> {
  return [await readConfigText(lower), await readConfigText(lower, true)];
}

/** Rewrites config fields in both copies (or only the primary). */
export async function editConfig(
  lower: string,
  edit: (c: Record<string, unknown>) => void,
  which: "both" | "primary" = "both",
): Promise<void> {
  for (const name of which === "both" ? [CONFIG, CONFIG_BAK] : [CONFIG]) {
    const c = JSON.parse(await readFile(join(lower, name), "utf8")) as Record<string, unknown>;
    edit(c);
    await writeFile(join(lower, name), JSON.stringify(c, null, 2) + "\n");
  }
}

export interface InfoJson {
  volumeId: string;
  formatVersion: number;
  features: string[];
  blockSize: number;
  keyEpoch: number;
  rekeyInProgress?: { from: number; to: number };
  slots: { id: number; kind: string; label?: string }[];
  configSource: string;
}

export async function info(sb: Sandbox, lower: string): Promise<InfoJson> {
  return JSON.parse(await cliOk(sb, ["info", "--json", lower])) as InfoJson;
}

// ---------------------------------------------------------------------------
// fsck

export interface FsckProblem {
  severity: "error" | "warning";
  code: string;
  path?: string;
  lower: string;
  /** CONFLICT_COPY: the cleartext path of the entry it copies. */
  original?: string;
  block?: number;
  message: string;
  repaired?: boolean;
}

export interface FsckJson {
  clean: boolean;
  files: number;
  directories: number;
  symlinks: number;
  bytes: number;
  checked: number;
  skipped: number;
  skippedBytes: number;
  record: RecordReport;
  seconds: number;
  problems: FsckProblem[];
}

export async function fsck(
  sb: Sandbox,
  lower: string,
  extra: readonly string[] = [],
): Promise<{ code: number | null; report: FsckJson; stderr: string }> {
  const r = await cli(sb, ["fsck", "--passfile", sb.passfile, "--json", ...extra, lower], {
    timeoutMs: 300_000,
  });
  let report: FsckJson;
  try {
    report = JSON.parse(r.stdout) as FsckJson;
  } catch {
    throw new Error(`fsck printed no JSON (exit ${r.code}): ${r.stderr}`);
  }
  return { code: r.code, report, stderr: r.stderr };
}

// ---------------------------------------------------------------------------
// Small loop-mounted filesystems (for ENOSPC)

export interface LoopFs {
  readonly dir: string;
  readonly image: string;
  cleanup(): Promise<void>;
}

/** Why a loop-mounted ext4 cannot be made here, or undefined when it can. */
export async function loopUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "not root: cannot mount a loop device";
  for (const tool of ["mkfs.ext4", "losetup"]) {
    const r = await run("sh", ["-c", `command -v ${tool}`]);
    if (r.code !== 0) return `${tool} is not installed`;
  }
  const r = await run("losetup", ["-f"]);
  if (r.code !== 0) return `no free loop device (${r.stderr.trim()})`;
  return undefined;
}

/** A fresh ext4 filesystem of `mib` MiB mounted at a new directory of the sandbox. */
export async function makeLoopFs(sb: Sandbox, mib: number): Promise<LoopFs> {
  const image = sb.path("disk.img");
  const dir = await sb.mkdir("disk");
  const steps: [string, string[]][] = [
    ["truncate", ["-s", `${mib}M`, image]],
    ["mkfs.ext4", ["-q", "-F", image]],
    ["mount", ["-o", "loop", image, dir]],
  ];
  for (const [cmd, args] of steps) {
    const r = await run(cmd, args, { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr.trim()}`);
  }
  return {
    dir,
    image,
    async cleanup() {
      // A server that just exited may still be closing files on it: retry, then detach lazily.
      for (let attempt = 0; attempt < 20 && isMounted(dir); attempt++) {
        const r = await run("umount", [dir], { timeoutMs: 30_000 });
        if (r.code === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      if (isMounted(dir)) await run("umount", ["-l", dir], { timeoutMs: 30_000 });
      if (isMounted(dir)) throw new Error(`${dir}: loop filesystem still mounted`);
    },
  };
}
