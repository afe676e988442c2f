// docs/lower-nbd.md, run as written: the test reads the recipe's `sh` blocks
// ("# step: NAME") from the doc and runs them with its own settings. A lower
// on ext4 on a loop device on nbdfuse, which reaches an nbdkit server over
// TLS with X.509 client certificates on loopback through a client-side
// nbdkit (nbd plugin, retry filter). The server refuses plain and
// certificate-less clients. With programs writing (fsync) and reading
// through cryptmount, the server is killed (-9) and started again within
// the retry window: they stall, then finish without an error. After a clean
// teardown of both sides and a restart: e2fsck and cryptmount fsck clean,
// every hash the same, including the files written during the outage.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import {
  CLI,
  ROOT,
  Sandbox,
  abortConnection,
  alive,
  forceUnmount,
  haveFuse,
  isMounted,
  killProcess,
  q,
  run,
  runOk,
  shOk,
  sleep,
  start,
  waitFor,
  waitForExit,
  type Mounted,
  type Started,
} from "../helpers/volume.js";

const have = async (cmd: string) => (await run("sh", ["-c", `command -v ${cmd}`])).code === 0;
const haveNbd =
  process.getuid?.() === 0 &&
  (await have("nbdkit")) &&
  (await have("nbdfuse")) &&
  (await have("nbdinfo")) &&
  (await have("certtool")) &&
  (await have("mkfs.ext4"));

/** The recipe's `sh` blocks by the name on their first line, `# step: NAME`. */
function recipeSteps(): Map<string, string> {
  const md = readFileSync(join(ROOT, "docs", "lower-nbd.md"), "utf8");
  const steps = new Map<string, string>();
  for (const [, body] of md.matchAll(/^```sh\n([\s\S]*?)^```$/gm)) {
    const name = /^# step: (\S+)\n/.exec(body!)?.[1];
    if (name) steps.set(name, body!);
  }
  return steps;
}

// The writer: files of 256 KiB, each written and fsynced, one line per file
// to a log outside the NBD chain (name, hash, seconds in write and fsync).
const WRITER = `
import hashlib, os, sys, time
d, log, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    data = os.urandom(256 * 1024)
    t0 = time.time()
    fd = os.open(os.path.join(d, "w%d" % i), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    t1 = time.time()
    os.fsync(fd)
    os.close(fd)
    with open(log, "a") as f:
        f.write("w%d %s %.2f %.2f\\n" % (i, hashlib.sha256(data).hexdigest(), t1 - t0, time.time() - t1))
    time.sleep(0.1)
`;

// Drops the clean cached pages of every regular file below the arguments, so that
// the next read has to go to the server.
const EVICT = `
import os, sys
for top in sys.argv[1:]:
    for root, dirs, files in os.walk(top):
        for name in files:
            if not os.path.isfile(os.path.join(root, name)):
                continue
            fd = os.open(os.path.join(root, name), os.O_RDONLY | os.O_NONBLOCK)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
`;

/** The variables of the recipe's settings step. */
interface Settings {
  PKI: string;
  DISK: string;
  ADDR: string;
  PORT: string;
  SERVER_PID: string;
  RUN: string;
  EXT: string;
}

describe.skipIf(!haveFuse || !haveNbd)(
  "a lower on NBD over TLS with client certificates (nbdkit, nbdfuse, loop, ext4)",
  () => {
    let sb: Sandbox;
    let settings: Settings | undefined;
    const steps = recipeSteps();
    let mounted: Mounted | undefined;
    const children: Started[] = [];

    beforeAll(async () => {
      sb = await Sandbox.create("lower-nbd");
      const port = String(20000 + Math.floor(Math.random() * 20000));
      settings = {
        PKI: join(sb.dir, "pki"),
        DISK: join(sb.dir, "srv", "disk.img"),
        ADDR: "127.0.0.1",
        PORT: port,
        SERVER_PID: join(sb.dir, "nbd-server.pid"),
        RUN: join(sb.dir, "nbd-client"),
        EXT: join(sb.dir, "ext"),
      };
    });

    const pidIn = (file: string): number | undefined => {
      const pid = existsSync(file) ? Number(readFileSync(file, "utf8").trim()) : NaN;
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    };

    /** Runs one step of the recipe with the test's settings. */
    async function step(name: string): Promise<string> {
      const body = steps.get(name);
      if (!body) throw new Error(`docs/lower-nbd.md has no step ${name}`);
      const vars = Object.entries(settings!)
        .map(([k, v]) => `${k}=${q(v)}`)
        .join("\n");
      return runOk("sh", ["-ec", `${vars}\n${body}`], { timeoutMs: 30_000 });
    }

    async function serverDown(): Promise<void> {
      const pid = pidIn(settings!.SERVER_PID);
      await step("server-down");
      if (pid !== undefined && !(await waitForExit(pid, 10_000)))
        throw new Error(`the NBD server ${pid} did not exit`);
    }

    /** Runs a command, but stops waiting after `ms` (a process in D state outlives its SIGKILL). */
    async function bounded(
      cmd: string,
      args: string[],
      ms: number,
      env?: Record<string, string>,
    ): Promise<boolean> {
      const r = await Promise.race([
        start(cmd, args, { timeoutMs: ms, env }).done,
        sleep(ms + 1_000).then(() => undefined),
      ]);
      return r !== undefined && r.code === 0;
    }

    /**
     * Everything down, bounded, whatever state a failure left: a server the
     * test killed is started again first, so that what waits on it completes;
     * then cryptmount, the ext4, nbdfuse, loop devices left on its file, the
     * client and server nbdkit. What still hangs has its FUSE connection
     * aborted (nbdfuse's only after the ext4 failed to unmount: the sandbox's
     * own sweep, which aborts every FUSE mount below it, would lose the
     * ext4's dirty data; that is why it runs last).
     */
    async function teardown(): Promise<void> {
      for (const c of children.splice(0)) if (c.proc.exitCode === null) c.proc.kill("SIGKILL");
      if (!settings) return;
      const { DISK, EXT, RUN, SERVER_PID } = settings;
      const nbdfuse = join(RUN, "nbdfuse");
      const server = pidIn(SERVER_PID);
      if (isMounted(nbdfuse) && (server === undefined || !alive(server)) && existsSync(DISK))
        await step("server-up").catch(() => undefined);
      if (mounted && isMounted(mounted.mountpoint)) {
        const umount = [CLI, "umount", mounted.mountpoint];
        const down = await bounded(process.execPath, umount, 10_000, sb.env);
        if (!down || isMounted(mounted.mountpoint)) await forceUnmount(mounted.mountpoint);
        await killProcess(mounted.pid);
      }
      mounted = undefined;
      if (isMounted(EXT) && !(await bounded("umount", [EXT], 10_000))) {
        await abortConnection(nbdfuse);
        await bounded("umount", ["-l", EXT], 10_000);
      }
      if (isMounted(nbdfuse) && !(await bounded("fusermount3", ["-u", nbdfuse], 5_000)))
        await forceUnmount(nbdfuse);
      const loops = await run("losetup", ["-n", "-O", "NAME", "-j", join(nbdfuse, "nbd")]);
      for (const dev of loops.stdout.split("\n").filter(Boolean))
        await bounded("losetup", ["-d", dev.trim()], 5_000);
      for (const file of [join(RUN, "nbdfuse.pid"), join(RUN, "nbd-client.pid"), SERVER_PID]) {
        const pid = pidIn(file);
        if (pid !== undefined) await killProcess(pid);
      }
    }

    afterAll(async () => {
      await teardown().catch(() => undefined);
      await sb?.cleanup();
    });

    it("the recipe's settings are the ones the test gives", () => {
      const doc = steps.get("settings") ?? "";
      const names = [...doc.matchAll(/(?:^|\s)([A-Z_]+)=/g)].map((m) => m[1]).sort();
      expect(names).toEqual(Object.keys(settings!).sort());
    });

    it("server and client up; plain and certificate-less clients refused; data survives the server killed mid-write and a full restart", async () => {
      const { PKI, DISK, ADDR, PORT, EXT, SERVER_PID } = settings!;
      await step("certificates");
      await step("disk");
      await step("server-up");
      expect((await step("check")).trim()).toBe(String(128 * 1024 * 1024));

      // Refused: no TLS at all, and TLS with the CA but no client certificate.
      await shOk(`mkdir -m 700 ${q(join(sb.dir, "ca-only"))}`);
      await runOk("cp", [join(PKI, "ca", "ca-cert.pem"), join(sb.dir, "ca-only")]);
      const plain = await run("nbdinfo", ["--size", `nbd://${ADDR}:${PORT}/`], {
        timeoutMs: 15_000,
      });
      expect(plain.code, plain.stdout).not.toBe(0);
      const noCert = await run(
        "nbdinfo",
        ["--size", `nbds://${ADDR}:${PORT}/?tls-certificates=${join(sb.dir, "ca-only")}`],
        { timeoutMs: 15_000 },
      );
      expect(noCert.code, noCert.stdout).not.toBe(0);

      await step("client-up");
      const lower = join(EXT, "vault");
      await sb.cliOk([
        "init",
        "--passfile",
        sb.passfile,
        "--kdf-memory",
        "65536",
        "--kdf-iterations",
        "3",
        "--no-recovery",
        lower,
      ]);
      mounted = await sb.mount(lower);
      const c = mounted.mountpoint;
      await shOk(
        `cd ${q(c)} && head -c 3000000 /dev/urandom > big && mkdir -p d/e w && echo hi > d/e/small && ` +
          `ln -s d/e/small link && mkfifo fifo && truncate -s 20M sparse && printf end >> sparse && sync`,
      );
      const tree = () =>
        shOk(
          `cd ${q(c)} && sha256sum big d/e/small sparse && readlink link && ` +
            `find . -mindepth 1 ! -path './w/*' -printf '%p %y\\n' | sort`,
        );
      const before = await tree();

      // The outage: a writer (fsync per file) and a reader of uncached blocks
      // while the server is killed and, 4 s later, started again.
      const log = join(sb.dir, "writer.log");
      const lines = async () =>
        (await readFile(log, "utf8").catch(() => "")).split("\n").filter(Boolean);
      const writer = start("python3", ["-c", WRITER, join(c, "w"), log, "30"], {
        timeoutMs: 90_000,
      });
      children.push(writer);
      await waitFor("the writer's first files", async () => (await lines()).length >= 3);
      await runOk("python3", ["-c", EVICT, c, lower], { timeoutMs: 20_000 });
      const serverPid = pidIn(SERVER_PID)!;
      process.kill(serverPid, "SIGKILL");
      await waitForExit(serverPid, 5_000);
      const reader = start("sha256sum", [join(c, "big")], { timeoutMs: 90_000 });
      children.push(reader);
      await sleep(1_000);
      const stalledAt = (await lines()).length;
      await sleep(3_000);
      expect((await lines()).length, "the writer goes on while the server is away").toBe(stalledAt);
      expect(reader.proc.exitCode, "the reader finished while the server was away").toBeNull();
      await step("server-up");
      const [w, r] = await Promise.all([writer.done, reader.done]);
      expect(w.code, w.stderr).toBe(0);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.split(" ")[0]).toBe(before.split(" ")[0]);
      const written = await lines();
      expect(written).toHaveLength(30);
      // The file in flight waited (in write or fsync) for the server to come back.
      const longest = Math.max(
        ...written.map((l) => Number(l.split(" ")[2]) + Number(l.split(" ")[3])),
      );
      expect(longest).toBeGreaterThan(3);
      const sums = written.map((l) => `${l.split(" ")[1]}  w/${l.split(" ")[0]}`);

      // Clean teardown of both sides, then everything up again.
      await sb.unmount(mounted);
      mounted = undefined;
      await step("client-down");
      await serverDown();
      const e2fsck = await run("e2fsck", ["-fn", DISK]);
      expect(e2fsck.code, e2fsck.stdout + e2fsck.stderr).toBe(0);
      await step("server-up");
      await step("client-up");
      const fsck = await sb.cli(["fsck", "--passfile", sb.passfile, lower]);
      expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
      mounted = await sb.mount(lower, { mountpoint: c });
      expect(await tree()).toBe(before);
      const check = await run("sha256sum", ["-c", "-"], { cwd: c, input: sums.join("\n") + "\n" });
      expect(check.code, check.stdout + check.stderr).toBe(0);
      await sb.unmount(mounted);
      mounted = undefined;
      await step("client-down");
      await serverDown();
    });
  },
);
