// Integration tests for the patched fuse-native binding
// (patches/fuse-native+2.2.6.patch, built by scripts/build-fuse.mjs).
//
// The file system is served by a child process (test/helpers/memfs-server.mjs)
// and driven with real programs (touch, stat, dd, truncate, python3): a
// process must never access a FUSE mount it serves itself synchronously.
//
// Needs /dev/fuse and fusermount. Without /dev/fuse the suite is skipped,
// unless CRYPTMOUNT_REQUIRE_FUSE=1 (then it fails). The caller-context test
// also needs root (it mounts with allow_other and acts as uid 65534 through
// setpriv). The Fuse.utimensat tests only need the patched build.

import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes, createHash } from "node:crypto";
import {
  accessSync,
  constants,
  lstatSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { mkdtemp, rm, rmdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { constants as osConstants, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import Fuse from "fuse-native";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..", "..");
const serverScript = join(root, "test", "helpers", "memfs-server.mjs");

const O_ACCMODE = 0o3;
const O_WRONLY = 0o1;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const GiB = 1024 ** 3;

function fuseAvailable(): boolean {
  try {
    accessSync("/dev/fuse", constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
const haveFuse = fuseAvailable() || process.env.CRYPTMOUNT_REQUIRE_FUSE === "1";
const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;

// ---------------------------------------------------------------------------
// Running programs (always asynchronously: the server's stdout is read by
// this process, so blocking here could stall the server).

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function runResult(cmd: string, args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    execFile(
      cmd,
      args,
      {
        timeout: timeoutMs,
        maxBuffer: 16 * 1024 * 1024,
        env: { ...process.env, TZ: "UTC", LC_ALL: "C" },
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolvePromise({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

async function run(cmd: string, args: string[], timeoutMs?: number): Promise<string> {
  const r = await runResult(cmd, args, timeoutMs);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
  }
  return r.stdout.trim();
}

const py = (code: string, ...args: string[]) => run("python3", ["-c", code, ...args]);

// Like runResult, but also reports the child's pid.
function runWithPid(
  cmd: string,
  args: string[],
  timeoutMs = 30_000,
): Promise<RunResult & { pid: number }> {
  return new Promise((resolvePromise) => {
    const child = execFile(
      cmd,
      args,
      { timeout: timeoutMs, env: { ...process.env, LC_ALL: "C" } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolvePromise({ code, stdout: String(stdout), stderr: String(stderr), pid: child.pid! });
      },
    );
  });
}

// ---------------------------------------------------------------------------
// Servers

interface ServerEvent {
  ev: string;
  [key: string]: unknown;
}

interface ServerOptions {
  extraOptions?: string[];
  timeout?: number | false;
  slowMs?: number;
}

interface Server {
  mnt: string;
  proc: ChildProcess;
  events: ServerEvent[];
  stderr: string[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exited: boolean;
}

const servers: Server[] = [];

function isMounted(mnt: string): boolean {
  const info = readFileSync("/proc/self/mountinfo", "utf8");
  return info.split("\n").some((line) => line.split(" ")[4] === mnt);
}

async function waitFor<T>(
  what: string,
  check: () => T | undefined | false,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function startServer(options: ServerOptions = {}): Promise<Server> {
  const mnt = await mkdtemp(join(tmpdir(), "cryptmount-fuse-test-"));
  const proc = spawn(process.execPath, [serverScript, mnt, JSON.stringify(options)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const server: Server = {
    mnt,
    proc,
    events: [],
    stderr: [],
    exited: false,
    exit: new Promise((resolveExit) => {
      proc.on("exit", (code, signal) => {
        server.exited = true;
        resolveExit({ code, signal });
      });
    }),
  };
  servers.push(server);

  let pending = "";
  proc.stdout!.setEncoding("utf8");
  proc.stdout!.on("data", (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.trim()) server.events.push(JSON.parse(line) as ServerEvent);
    }
  });
  proc.stderr!.setEncoding("utf8");
  proc.stderr!.on("data", (chunk: string) => server.stderr.push(chunk));

  await waitFor(
    "the server to mount",
    () => {
      if (server.events.some((e) => e.ev === "ready")) return true;
      const err = server.events.find((e) => e.ev === "error");
      if (err || server.exited) {
        throw new Error(
          `server failed: ${JSON.stringify(err ?? "exited")} ${server.stderr.join("")}`,
        );
      }
      return false;
    },
    15_000,
  );
  expect(isMounted(mnt)).toBe(true);
  return server;
}

function eventsOf(server: Server, ev: string): ServerEvent[] {
  return server.events.filter((e) => e.ev === ev);
}

function noErrors(server: Server): void {
  expect(eventsOf(server, "error")).toEqual([]);
}

async function stopServer(server: Server): Promise<void> {
  if (!server.exited) {
    server.proc.kill("SIGTERM");
    const done = await Promise.race([
      server.exit.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 5_000)),
    ]);
    if (!done) {
      server.proc.kill("SIGKILL");
      await server.exit;
    }
  }
  if (isMounted(server.mnt)) {
    const r = await runResult("fusermount", ["-u", server.mnt]);
    if (r.code !== 0) await runResult("fusermount", ["-uz", server.mnt]);
  }
  if (!isMounted(server.mnt)) await rmdir(server.mnt).catch(() => undefined);
}

afterEach(async () => {
  const all = servers.splice(0);
  for (const s of all) await stopServer(s);
});

// ---------------------------------------------------------------------------

describe.skipIf(!haveFuse)("patched fuse-native binding", () => {
  it("loads the patched build from build/Release", async () => {
    const fuseDir = dirname(
      createRequire(join(root, "package.json")).resolve("fuse-native/package.json"),
    );
    const gypBuild = createRequire(join(fuseDir, "package.json"))("node-gyp-build") as {
      resolve(dir: string): string;
    };
    expect(gypBuild.resolve(fuseDir)).toBe(join(fuseDir, "build", "Release", "fuse.node"));

    const s = await startServer();
    expect(eventsOf(s, "ready")[0]?.patchLevel).toBe(2);
    expect(Fuse.CRYPTMOUNT_PATCH_LEVEL).toBe(2);
  });

  it.skipIf(!isRoot)(
    "Fuse.context() is the caller of the request (uid, gid, pid, umask) while the handler runs synchronously",
    async () => {
      const s = await startServer({ extraOptions: ["allow_other"] });
      // Outside of any handler there is no context.
      expect(eventsOf(s, "ready")[0]?.context).toBeNull();

      // As uid/gid 65534 (no supplementary groups), with umask 027. Plain sh
      // (nobody may not be able to run every python3 on PATH): `exec mkdir`
      // keeps the pid we spawned; `: >` is a create made by sh itself, which
      // then prints its pid, uid and gid.
      const asNobody = (script: string, ...args: string[]) =>
        runWithPid("setpriv", [
          `--reuid=${NOBODY}`,
          `--regid=${NOBODY}`,
          "--clear-groups",
          "/bin/sh",
          "-c",
          script,
          "sh",
          ...args,
        ]);
      const mk = await asNobody('umask 027 && exec mkdir "$1"', join(s.mnt, "nobody-dir"));
      expect(mk.stderr).toBe("");
      expect(mk.code).toBe(0);
      const cr = await asNobody(
        'umask 027 && : > "$1" && echo $$ $(id -u) $(id -g)',
        join(s.mnt, "nobody-file"),
      );
      expect(cr.stderr).toBe("");
      expect(cr.code).toBe(0);
      expect(cr.stdout.trim()).toBe(`${cr.pid} ${NOBODY} ${NOBODY}`);

      const nobody = { uid: NOBODY, gid: NOBODY, umask: 0o027 };
      const mkdirs = eventsOf(s, "mkdir").filter((e) => e.path === "/nobody-dir");
      expect(mkdirs).toHaveLength(1);
      // fuse.context() (the instance method) agrees; after an await: null.
      const mkCaller = { ...nobody, pid: mk.pid };
      expect(mkdirs[0]).toMatchObject({ ctx: mkCaller, own: mkCaller, later: null });
      const creates = eventsOf(s, "create").filter((e) => e.path === "/nobody-file");
      expect(creates).toHaveLength(1);
      const crCaller = { ...nobody, pid: cr.pid };
      expect(creates[0]).toMatchObject({ ctx: crCaller, own: crCaller });

      // A request from another process gets that process's context.
      const rootChild = await runWithPid("/bin/sh", [
        "-c",
        'umask 022 && exec mkdir "$1"',
        "sh",
        join(s.mnt, "root-dir"),
      ]);
      expect(rootChild.code).toBe(0);
      const rootMkdir = eventsOf(s, "mkdir").find((e) => e.path === "/root-dir");
      expect(rootMkdir?.ctx).toEqual({
        uid: process.getuid!(),
        gid: process.getgid!(),
        pid: rootChild.pid,
        umask: 0o022,
      });
      noErrors(s);
    },
  );

  it("utimens keeps atime and mtime apart, with nanoseconds", async () => {
    const s = await startServer();
    const f = join(s.mnt, "times");
    await run("touch", [f]);

    await py(
      "import os,sys; os.utime(sys.argv[1], ns=(1234567890123456789, 1300000000987654321))",
      f,
    );
    expect(await run("stat", ["-c", "%X %Y %.9X %.9Y", f])).toBe(
      "1234567890 1300000000 1234567890.123456789 1300000000.987654321",
    );
    expect(eventsOf(s, "utimens").at(-1)).toMatchObject({
      atime: "1234567890123456789",
      mtime: "1300000000987654321",
    });

    // touch -d sets one time at a time with -a / -m.
    await run("touch", ["-a", "-d", "2001-02-03 04:05:06.111111111", f]);
    await run("touch", ["-m", "-d", "2002-03-04 05:06:07.222222222", f]);
    expect(await run("stat", ["-c", "%.9X %.9Y", f])).toBe(
      "981173106.111111111 1015218367.222222222",
    );

    // Before the epoch, and beyond 32-bit seconds (year 2200).
    await py("import os,sys; os.utime(sys.argv[1], ns=(-1500000000, 7258118400000000001))", f);
    expect(await run("stat", ["-c", "%.9X %.9Y", f])).toBe("-1.500000000 7258118400.000000001");
    noErrors(s);
  });

  it("touch -a changes only atime and touch -m only mtime (UTIME_NOW / UTIME_OMIT)", async () => {
    const s = await startServer();
    const f = join(s.mnt, "now");
    await run("touch", [f]);
    await py(
      "import os,sys; os.utime(sys.argv[1], ns=(1000000000111111111, 1100000000222222222))",
      f,
    );

    const times = async () => (await run("stat", ["-c", "%.9X %.9Y", f])).split(" ");
    const nowish = (t: string | undefined, before: number, after: number) => {
      expect(Number(t)).toBeGreaterThanOrEqual(Math.floor(before / 1000));
      expect(Number(t)).toBeLessThanOrEqual(after / 1000 + 1);
    };

    let before = Date.now();
    await run("touch", ["-a", f]);
    let after = Date.now();
    const [atimeA, mtimeA] = await times();
    nowish(atimeA, before, after);
    expect(mtimeA).toBe("1100000000.222222222");
    expect(eventsOf(s, "utimens").at(-1)).toMatchObject({ atime: "now", mtime: "omit" });

    before = Date.now();
    await run("touch", ["-m", f]);
    after = Date.now();
    const [atimeM, mtimeM] = await times();
    expect(atimeM).toBe(atimeA);
    nowish(mtimeM, before, after);
    expect(eventsOf(s, "utimens").at(-1)).toMatchObject({ atime: "omit", mtime: "now" });
    noErrors(s);
  });

  it("create receives the open flags (O_EXCL visible)", async () => {
    const s = await startServer();
    const f = join(s.mnt, "excl");
    const createExcl =
      "import os,sys; fd = os.open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640); " +
      "os.write(fd, b'x'); os.close(fd)";
    await py(createExcl, f);

    const created = eventsOf(s, "create");
    expect(created).toHaveLength(1);
    const flags = created[0]!.flags as number;
    expect(flags & O_EXCL).toBe(O_EXCL);
    expect(flags & O_CREAT).toBe(O_CREAT);
    expect(flags & O_ACCMODE).toBe(O_WRONLY);
    expect((created[0]!.mode as number) & 0o777).toBe(0o640);

    // A second exclusive create fails; open(path, flags) still gets flags.
    const again = await runResult("python3", ["-c", createExcl, f]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain("FileExistsError");
    expect(await run("cat", [f])).toBe("x");
    expect(eventsOf(s, "open").at(-1)?.flags).toBeTypeOf("number");
    noErrors(s);
  });

  it("file handles 0 and 2^32-1 work", async () => {
    // The server hands out 0, 0xffffffff, 0x80000000, 0x7fffffff first and
    // serves read/write by handle only.
    const s = await startServer();
    const f = join(s.mnt, "handles");
    await py("import sys; open(sys.argv[1], 'w').write('first')", f);
    expect(await run("cat", [f])).toBe("first");
    await py("import sys; open(sys.argv[1], 'a').write('+second')", f);
    expect(await run("cat", [f])).toBe("first+second");

    const used = [...eventsOf(s, "create"), ...eventsOf(s, "open")].map((e) => e.fh);
    expect(used).toEqual([0, 0xffffffff, 0x80000000, 0x7fffffff]);
    const written = eventsOf(s, "write").map((e) => e.fh);
    expect(written).toEqual([0, 0x80000000]);
    noErrors(s);
  });

  it("reports sizes, offsets, inode numbers and statfs counts beyond 32 bits", async () => {
    const s = await startServer({ extraOptions: ["use_ino"] });
    const f = join(s.mnt, "sparse");
    await run("truncate", ["-s", "5G", f]);
    expect(await run("stat", ["-c", "%s %b", f])).toBe(`${5 * GiB} ${(5 * GiB) / 512}`);

    // Write 4 KiB just past 5 GiB and read it back.
    const local = await mkdtemp(join(tmpdir(), "cryptmount-fuse-data-"));
    try {
      const block = randomBytes(4096);
      const src = join(local, "block");
      await writeFile(src, block);
      const seek = String((5 * GiB) / 4096);
      await run("dd", [
        `if=${src}`,
        `of=${f}`,
        "bs=4096",
        `seek=${seek}`,
        "count=1",
        "conv=notrunc",
      ]);
      expect(Number(await run("stat", ["-c", "%s", f]))).toBe(5 * GiB + 4096);
      const back = join(local, "back");
      await run("dd", [`if=${f}`, `of=${back}`, "bs=4096", `skip=${seek}`, "count=1"]);
      const hash = (b: Buffer) => createHash("sha256").update(b).digest("hex");
      expect(hash(readFileSync(back))).toBe(hash(block));
    } finally {
      await rm(local, { recursive: true, force: true });
    }

    // The server numbers inodes from 2^33 (use_ino passes them through).
    expect(BigInt(await run("stat", ["-c", "%i", f]))).toBeGreaterThan(2n ** 33n);
    expect(await run("stat", ["-f", "-c", "%b %f %a %c %d", s.mnt])).toBe(
      `${2 ** 40} ${2 ** 40 - 1} ${2 ** 40 - 2} ${2 ** 33} ${2 ** 33 - 1}`,
    );
    noErrors(s);
  });

  it("extraOptions big_writes turns 4 KiB write requests into 128 KiB ones", async () => {
    const total = 8 * 1024 * 1024;
    const maxWrite = async (server: Server) => {
      const f = join(server.mnt, "big");
      await run("dd", ["if=/dev/zero", `of=${f}`, "bs=1M", "count=8"]);
      const writes = await waitFor("all writes to be reported", () => {
        const w = eventsOf(server, "write").filter((e) => e.path === "/big");
        return w.reduce((n, e) => n + (e.len as number), 0) >= total ? w : false;
      });
      noErrors(server);
      return Math.max(...writes.map((e) => e.len as number));
    };

    const plain = await startServer();
    expect(await maxWrite(plain)).toBe(4096);

    const big = await startServer({
      extraOptions: ["big_writes", "max_write=131072", "fsname=cryptmount", "subtype=cryptmount"],
    });
    expect(await maxWrite(big)).toBe(131072);
    const info = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .find((line) => line.split(" ")[4] === big.mnt);
    expect(info).toContain("fuse.cryptmount");
  });

  it("timeout: false disables the per-op timeout", async () => {
    const limited = await startServer({ timeout: 1000, slowMs: 2500 });
    const r = await runResult("stat", [join(limited.mnt, "slow")]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/timed out/i);

    const unlimited = await startServer({ timeout: false, slowMs: 2500 });
    const t0 = Date.now();
    await run("stat", [join(unlimited.mnt, "slow")]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
  });

  it("an external fusermount -u ends the server process by itself", async () => {
    const s = await startServer();
    await run("touch", [join(s.mnt, "x")]);
    await run("fusermount", ["-u", s.mnt]);
    const result = await Promise.race([
      s.exit,
      new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 5_000)),
    ]);
    expect(result).toEqual({ code: 0, signal: null });
    expect(eventsOf(s, "external-unmount")).toHaveLength(1);
    expect(isMounted(s.mnt)).toBe(false);
  });

  it("unmount() from JS does not report an external unmount and lets the process exit", async () => {
    const s = await startServer();
    s.proc.kill("SIGTERM"); // the server calls fuse.unmount() and nothing else
    const result = await Promise.race([
      s.exit,
      new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 5_000)),
    ]);
    expect(result).toEqual({ code: 0, signal: null });
    expect(eventsOf(s, "unmounted")).toHaveLength(1);
    expect(eventsOf(s, "external-unmount")).toHaveLength(0);
    expect(isMounted(s.mnt)).toBe(false);
  });
});

// Fuse.utimensat: a plain synchronous utimensat(2) with nanosecond times, for
// lower (non-FUSE) paths. No mount involved.
describe("Fuse.utimensat", () => {
  let dir = "";
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "cryptmount-utimensat-"));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const times = (p: string, follow = true) => {
    const st = follow ? statSync(p, { bigint: true }) : lstatSync(p, { bigint: true });
    return [st.atimeNs, st.mtimeNs];
  };

  it("sets atime and mtime to the nanosecond, before the epoch and beyond 32-bit seconds", () => {
    const f = join(dir, "exact");
    writeFileSync(f, "x");
    Fuse.utimensat(f, 1234567890123456789n, 1300000000987654321n);
    expect(times(f)).toEqual([1234567890123456789n, 1300000000987654321n]);

    Fuse.utimensat(f, -1500000001n, 7258118400000000001n);
    expect(times(f)).toEqual([-1500000001n, 7258118400000000001n]);

    // A Buffer path works too.
    Fuse.utimensat(Buffer.from(f), 1n, 999999999n);
    expect(times(f)).toEqual([1n, 999999999n]);
  });

  it("'omit' keeps a time as it is", () => {
    const f = join(dir, "omit");
    writeFileSync(f, "x");
    Fuse.utimensat(f, 1000000000111111111n, 1100000000222222222n);
    Fuse.utimensat(f, "omit", 1200000000333333333n);
    expect(times(f)).toEqual([1000000000111111111n, 1200000000333333333n]);
    Fuse.utimensat(f, 1300000000444444444n, "omit");
    expect(times(f)).toEqual([1300000000444444444n, 1200000000333333333n]);
    Fuse.utimensat(f, "omit", "omit");
    expect(times(f)).toEqual([1300000000444444444n, 1200000000333333333n]);
  });

  it("'now' sets the current time", () => {
    const f = join(dir, "now");
    writeFileSync(f, "x");
    Fuse.utimensat(f, 1000000000000000000n, 1000000000000000000n);
    // The kernel's clock for file times is coarse: allow a second of slack.
    const before = BigInt(Date.now() - 1000) * 1_000_000n;
    Fuse.utimensat(f, "now", "omit");
    const after = BigInt(Date.now() + 1000) * 1_000_000n;
    const [atime, mtime] = times(f);
    expect(atime! >= before && atime! <= after).toBe(true);
    expect(mtime).toBe(1000000000000000000n);

    Fuse.utimensat(f, "omit", "now");
    const [atime2, mtime2] = times(f);
    expect(atime2).toBe(atime);
    expect(mtime2! >= before && mtime2! <= after).toBe(true);
  });

  it("noFollow changes a symlink itself, not its target", () => {
    const target = join(dir, "target");
    const link = join(dir, "link");
    writeFileSync(target, "x");
    symlinkSync("target", link);
    Fuse.utimensat(target, 1000000000000000001n, 1000000000000000002n);

    Fuse.utimensat(link, 1500000000000000003n, 1500000000000000004n, true);
    expect(times(link, false)).toEqual([1500000000000000003n, 1500000000000000004n]);
    expect(times(target)).toEqual([1000000000000000001n, 1000000000000000002n]);

    // Without noFollow the target changes.
    Fuse.utimensat(link, 1600000000000000005n, 1600000000000000006n);
    expect(times(target)).toEqual([1600000000000000005n, 1600000000000000006n]);
    // (following the link may update its atime, but not its mtime)
    expect(times(link, false)[1]).toBe(1500000000000000004n);
  });

  it("throws errors shaped like node's fs errors", () => {
    const missing = join(dir, "missing", "file");
    let caught: unknown;
    try {
      Fuse.utimensat(missing, 1n, 1n);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(Error);
    expect(caught).toMatchObject({
      code: "ENOENT",
      errno: -osConstants.errno.ENOENT,
      syscall: "utimensat",
      path: missing,
    });
    expect((caught as Error).message).toBe(
      `ENOENT: no such file or directory, utimensat '${missing}'`,
    );

    const f = join(dir, "notdir");
    writeFileSync(f, "x");
    expect(() => Fuse.utimensat(join(f, "x"), "now", "now")).toThrow(
      expect.objectContaining({ code: "ENOTDIR", errno: -osConstants.errno.ENOTDIR }),
    );
  });

  it("rejects bad arguments with a TypeError", () => {
    const f = join(dir, "args");
    writeFileSync(f, "x");
    const bad = [
      () => Fuse.utimensat(f, 1 as unknown as bigint, "now"),
      () => Fuse.utimensat(f, "now", "later" as unknown as "now"),
      () => Fuse.utimensat(`${f}\0`, "now", "now"),
      () => Fuse.utimensat(42 as unknown as string, "now", "now"),
    ];
    for (const call of bad) expect(call).toThrow(TypeError);
  });
});
