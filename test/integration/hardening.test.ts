// The mount server hardens itself before it receives a key: not dumpable, no
// core file, every open file the hard limit allows, key buffers locked in RAM
// where RLIMIT_MEMLOCK allows (always as root). It says so in its log.

import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import {
  CLI,
  Sandbox,
  forceUnmount,
  haveFuse,
  isMounted,
  readLog,
  sandboxSuite,
  start,
  waitFor,
} from "../helpers/volume.js";

let sb: Sandbox;

function limit(limits: string, name: string): [string, string] {
  const line = limits.split("\n").find((l) => l.startsWith(name));
  const m = line && /^.+?\s{2,}(\S+)\s+(\S+)/.exec(line);
  if (!m) throw new Error(`no "${name}" in\n${limits}`);
  return [m[1]!, m[2]!];
}

describe.skipIf(!haveFuse)("mount server hardening", () => {
  sandboxSuite("harden", (s) => {
    sb = s;
  });

  it("no core dumps, not dumpable, open-file limit raised, key buffers locked", async () => {
    const lower = await sb.createVolume("lower", ["--no-recovery"]);
    const m = await sb.mount(lower, { args: ["--verbose"] });
    const limits = await readFile(`/proc/${m.pid}/limits`, "utf8");
    expect(limit(limits, "Max core file size")).toEqual(["0", "0"]);
    const [soft, hard] = limit(limits, "Max open files");
    expect(soft).toBe(hard);

    const entries = await readLog(m.logFile, (e) => e.msg === "server hardened");
    const entry = entries.find((e) => e.msg === "server hardened")!;
    expect(entry.dumpable).toBe(false);
    expect(entry.coreLimit).toBe(0);
    const [locked, total] = String(entry.lockedKeyBuffers).split("/").map(Number);
    expect(total).toBeGreaterThan(0);
    if (process.getuid?.() === 0) {
      expect(locked).toBe(total);
      const status = await readFile(`/proc/${m.pid}/status`, "utf8");
      expect(Number(/VmLck:\s+(\d+)/.exec(status)![1])).toBeGreaterThan(0);
    }
    // Nothing secret in the log.
    const log = await readFile(m.logFile, "utf8");
    expect(log).not.toMatch(/correct horse/);
    await sb.unmount(m);
  });

  it("a foreground mount (-f) hardens itself too and unmounts cleanly on SIGTERM", async () => {
    const lower = await sb.createVolume("fg", ["--no-recovery"]);
    const mountpoint = await sb.mkdir("fg-mnt");
    const server = start(
      process.execPath,
      [CLI, "mount", "-f", "--passfile", sb.passfile, lower, mountpoint],
      {
        env: sb.env,
      },
    );
    try {
      await waitFor("the foreground mount", async () => isMounted(mountpoint), 30_000);
      const limits = await readFile(`/proc/${server.proc.pid}/limits`, "utf8");
      expect(limit(limits, "Max core file size")).toEqual(["0", "0"]);
      server.proc.kill("SIGTERM");
      const r = await server.done;
      expect(r.code, r.stderr).toBe(0);
      expect(isMounted(mountpoint)).toBe(false);
    } finally {
      if (isMounted(mountpoint)) await forceUnmount(mountpoint);
      server.proc.kill("SIGKILL");
    }
  });

  it("init, passwd, fsck, rekey and upgrade hold keys with core dumps off", async () => {
    const lower = await sb.createVolume("cmds", ["--no-recovery"]);
    // The passphrase command runs under the command it serves ($PPID): it
    // records that process's core-file limit while the command waits for it.
    const probe = (out: string) =>
      `grep "Max core file size" /proc/$PPID/limits > ${out}; cat ${sb.passfile}`;
    const runs: [string, string[]][] = [
      [
        "init",
        [
          "init",
          "--no-recovery",
          "--kdf-memory",
          "65536",
          "--extpass",
          probe("OUT"),
          sb.path("fresh"),
        ],
      ],
      ["fsck", ["fsck", "--extpass", probe("OUT"), lower]],
      ["passwd", ["passwd", "--extpass", probe("OUT"), "--new-passfile", sb.passfile, lower]],
      ["rekey", ["rekey", "--extpass", probe("OUT"), lower]],
      ["upgrade", ["upgrade", "--extpass", probe("OUT"), lower]],
    ];
    for (const [name, args] of runs) {
      const out = sb.path(`${name}-limits`);
      const r = await sb.cli(args.map((a) => a.replace("OUT", out)));
      expect(r.code, `${name}: ${r.stderr}`).toBe(0);
      const [soft, hard] = limit(await readFile(out, "utf8"), "Max core file size");
      expect([name, soft, hard]).toEqual([name, "0", "0"]);
    }
  });
});
