// Helpers for the hostile-lower suites (test/integration/hostile-*.test.ts and
// concurrency.test.ts): a long-lived python3 client that touches the mount on
// the test's behalf with a deadline on every request, snapshots of "canary"
// trees outside the lower (content, modes, owners, xattrs, times), and small
// lower-side tools (FIFOs, entry swaps).
//
// The test process only ever touches the lower directory and canaries (plain
// directories); everything that goes through the mount goes through a child.

import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, constants, lstatSync, openSync, readSync, readdirSync } from "node:fs";
import { readlinkSync } from "node:fs";
import { join } from "node:path";
import * as xattr from "fs-xattr";
import {
  HELPERS,
  abortConnection,
  isMounted,
  run,
  sleep,
  start,
  type RunResult,
} from "./volume.js";

// ---------------------------------------------------------------------------
// The mount client (test/helpers/mount_client.py)

export interface ClientReply {
  id: number;
  ok: boolean;
  errno?: string;
  error?: string;
  /** The request did not answer before its deadline. */
  timeout?: boolean;
  sha256?: string;
  size?: number;
  type?: string;
  mode?: number;
  target?: string;
  names?: string[];
  value?: string;
}

export interface ClientRequest {
  op: string;
  path?: string;
  pathb64?: string;
  to?: string;
  tob64?: string;
  /** symlink: the target. */
  target?: string;
  data?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  name?: string;
  time?: number;
}

export class MountClient {
  private readonly proc: ChildProcess;
  private readonly pending = new Map<number, (r: ClientReply) => void>();
  private nextId = 1;
  private buffered = "";
  private stderr = "";
  private exited = false;

  constructor() {
    this.proc = spawn("python3", [join(HELPERS, "mount_client.py")], {
      env: { ...process.env, LC_ALL: "C", LANG: "C", PYTHONDONTWRITEBYTECODE: "1" },
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.proc.stdout!.setEncoding("utf8");
    this.proc.stdout!.on("data", (chunk: string) => {
      this.buffered += chunk;
      let at: number;
      while ((at = this.buffered.indexOf("\n")) >= 0) {
        const line = this.buffered.slice(0, at);
        this.buffered = this.buffered.slice(at + 1);
        if (!line.trim()) continue;
        const reply = JSON.parse(line) as ClientReply;
        const resolve = this.pending.get(reply.id);
        this.pending.delete(reply.id);
        resolve?.(reply);
      }
    });
    this.proc.stderr!.setEncoding("utf8");
    this.proc.stderr!.on("data", (c: string) => (this.stderr += c));
    this.proc.stdin!.on("error", () => undefined);
    this.proc.on("exit", () => {
      this.exited = true;
      for (const [id, resolve] of this.pending)
        resolve({ id, ok: false, errno: "CLIENT_EXITED", error: this.stderr.slice(-2000) });
      this.pending.clear();
    });
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  /** Sends one request; resolves with its answer, or `{timeout: true}` after `timeoutMs`. */
  request(req: ClientRequest, timeoutMs = 5_000): Promise<ClientReply> {
    const id = this.nextId++;
    if (this.exited)
      return Promise.resolve({ id, ok: false, errno: "CLIENT_EXITED", error: this.stderr });
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve({ id, ok: false, timeout: true, errno: "TIMEOUT" });
      }, timeoutMs);
      this.pending.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.proc.stdin!.write(JSON.stringify({ ...req, id }) + "\n");
    });
  }

  /** A client that timed out may be stuck in the kernel; SIGKILL gets it out (FUSE waits are killable). */
  async close(): Promise<void> {
    if (this.exited) return;
    this.proc.stdin!.end();
    const gone = new Promise<void>((r) => this.proc.once("exit", () => r()));
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 2_000);
    await Promise.race([gone, sleep(5_000)]);
    clearTimeout(t);
    if (!this.exited) this.proc.kill("SIGKILL");
  }
}

/** "ok", "TIMEOUT" or the errno name of a reply: what a table of outcomes shows. */
export function outcome(r: ClientReply): string {
  return r.ok ? "ok" : (r.errno ?? "?");
}

export const b64 = (data: Buffer | string) => Buffer.from(data).toString("base64");

/**
 * After a hang: abort the FUSE connection so that blocked requests fail with
 * ENOTCONN (never a D-state mount), and open every FIFO given read-write
 * without blocking, which releases a server stuck opening one.
 */
export async function rescue(mountpoint: string, fifos: readonly string[] = []): Promise<void> {
  if (isMounted(mountpoint)) await abortConnection(mountpoint);
  releaseFifos(fifos);
}

export function releaseFifos(fifos: readonly string[]): void {
  for (const f of fifos) {
    try {
      const st = lstatSync(f);
      if (!st.isFIFO()) continue;
      const fd = openSync(f, constants.O_RDWR | constants.O_NONBLOCK);
      closeSync(fd);
    } catch {
      /* gone */
    }
  }
}

export async function mkfifo(path: string): Promise<void> {
  const r = await run("mkfifo", ["-m", "644", path], { timeoutMs: 5_000 });
  if (r.code !== 0) throw new Error(`mkfifo ${path}: ${r.stderr}`);
}

// ---------------------------------------------------------------------------
// Canary trees: everything about a tree that an operation could change

/** Reads without touching atime (we own the files), so the snapshot itself changes nothing. */
function hashFile(path: string): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOATIME | constants.O_NONBLOCK);
  try {
    const h = createHash("sha256");
    const buf = Buffer.alloc(65536);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
    return h.digest("hex");
  } finally {
    closeSync(fd);
  }
}

function xattrsOf(path: string): string {
  try {
    return xattr
      .listAttributesSync(path)
      .sort()
      .map((n) => `${n}=${b64(xattr.getAttributeSync(path, n))}`)
      .join(",");
  } catch {
    return "-";
  }
}

/** One line per entry below (and including) `root`: type, mode, owner, size, times, xattrs, content or target. */
export function treeSnapshot(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    const p = rel ? join(root, rel) : root;
    const st = lstatSync(p, { bigint: true });
    let what: string;
    if (st.isSymbolicLink()) what = "link:" + readlinkSync(p);
    else if (st.isFile()) what = "file:" + hashFile(p);
    else if (st.isDirectory()) what = "dir";
    else what = "other";
    const mode = (Number(st.mode) & 0o7777).toString(8);
    // A directory's atime moves when this very walk lists it; files are read with O_NOATIME.
    const atime = st.isDirectory() ? "-" : String(st.atimeNs);
    out.push(
      `${rel || "."} ${what} mode=${mode} uid=${st.uid} gid=${st.gid} size=${st.size} ` +
        `atime=${atime} mtime=${st.mtimeNs} ctime=${st.ctimeNs} xattrs=${st.isSymbolicLink() ? "-" : xattrsOf(p)}`,
    );
    if (st.isDirectory())
      for (const name of readdirSync(p).sort()) walk(rel ? `${rel}/${name}` : name);
  };
  walk("");
  return out;
}

// ---------------------------------------------------------------------------
// Programs through a mount that may hang

/**
 * Runs a program with a deadline that does not depend on the program
 * exiting: a process whose FUSE request already reached a stuck server waits
 * uninterruptibly (D state) and ignores SIGKILL until the server answers or
 * the connection is aborted. After `ms`: `onHang` (e.g. release a FIFO the
 * server is stuck on), then 3 s more; still stuck: `onStuck` (abort the
 * connection), then up to 5 s for the process to go.
 */
export async function runGuarded(
  cmd: string,
  args: readonly string[],
  ms: number,
  onHang: () => Promise<void>,
  onStuck: () => Promise<void>,
): Promise<{ hung: boolean; result?: RunResult }> {
  const started = start(cmd, args, { timeoutMs: ms });
  const within = (t: number) => Promise.race([started.done, sleep(t).then(() => undefined)]);
  let result = await within(ms + 500);
  // Killed by its own timeout (e.g. blocked opening a FIFO in the kernel): a hang too.
  if (result) return { hung: result.stderr.includes("[test harness: killed"), result };
  await onHang();
  result = await within(3_000);
  if (result) return { hung: true, result };
  await onStuck();
  result = await within(5_000);
  return { hung: true, result };
}
