// mount(8), fstab and systemd: "mount -t fuse.cryptmount" through mount.fuse,
// fstab lines in a temporary fstab (mount -T), mount -a, read-only mounts,
// umount(8) ending the server by itself, and the example systemd unit.

import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  ROOT,
  Sandbox,
  haveFuse,
  isMounted,
  mountEntry,
  q,
  run,
  sh,
  waitForExit,
  sandboxSuite,
} from "../helpers/volume.js";
import {
  checksumTree,
  cliOk,
  mountVolume,
  runToExit,
  unmountVolume,
  writeNamed,
} from "../helpers/volume-tools.js";

let sb: Sandbox;
let lower: string;
const files = { "a.txt": "alpha\n", "dir/b.bin": Buffer.from([0, 1, 2, 3, 255]) };

const haveMountFuse =
  existsSync("/sbin/mount.fuse") ||
  existsSync("/usr/sbin/mount.fuse") ||
  existsSync("/sbin/mount.fuse3");
const haveCryptmountInPath = existsSync("/usr/local/bin/cryptmount");
const canMount = haveFuse && process.getuid?.() === 0 && haveMountFuse && haveCryptmountInPath;

describe.skipIf(!canMount)("mount(8), fstab and umount(8)", () => {
  sandboxSuite("vmount", async (s) => {
    sb = s;
    lower = await sb.createVolume();
    const m = await mountVolume(sb, lower);
    await writeNamed(m.mountpoint, files);
    await unmountVolume(sb, m);
  });

  /**
   * mount(8)/umount(8) with the sandbox's runtime dir, so the server's record
   * lands there. The server inherits mount's stderr: wait for the exit only.
   */
  const mount = (args: string[]) => runToExit(sb, "mount", args, { timeoutMs: 30_000 });
  const umount = (mnt: string) => run("umount", [mnt], { env: sb.env, timeoutMs: 30_000 });

  async function expectContent(mnt: string): Promise<void> {
    const sums = await checksumTree(mnt);
    expect(Object.keys(sums).sort()).toEqual(Object.keys(files).sort());
  }

  /** umount(8) alone takes the mount down and the server exits by itself. */
  async function umountAndWait(mnt: string): Promise<void> {
    const pid = sb.serverPid(mnt);
    expect(pid, "the server wrote a runtime record").toBeDefined();
    const r = await umount(mnt);
    expect(r.code, r.stderr).toBe(0);
    expect(isMounted(mnt)).toBe(false);
    expect(await waitForExit(pid!, 10_000), `server ${pid} exits after umount(8)`).toBe(true);
    expect(sb.serverPid(mnt), "runtime record removed").toBeUndefined();
    sb.forget(mnt);
  }

  it("mount -t fuse.cryptmount LOWER MNT -o passfile=P, then umount MNT", async () => {
    const mnt = await sb.mkdir("mnt");
    const r = await mount(["-t", "fuse.cryptmount", lower, mnt, "-o", `passfile=${sb.passfile}`]);
    expect(r.code, r.stderr).toBe(0);
    const entry = mountEntry(mnt);
    expect(entry?.fstype).toBe("fuse.cryptmount");
    expect(entry?.source).toBe(lower);
    await expectContent(mnt);
    // A write through this mount lands in the volume.
    const w = await sh(`printf 'through mount(8)\\n' > ${q(join(mnt, "new.txt"))}`);
    expect(w.code, w.stderr).toBe(0);
    await umountAndWait(mnt);

    // Remount with the CLI: the file written through mount(8) is there.
    const m = await mountVolume(sb, lower);
    const sums = await checksumTree(m.mountpoint);
    expect(Object.keys(sums)).toContain("new.txt");
    await sh(`rm ${q(join(m.mountpoint, "new.txt"))}`);
    await unmountVolume(sb, m);
  });

  it("mount -t fuse.cryptmount with a wrong passphrase fails and leaves nothing mounted", async () => {
    const mnt = await sb.mkdir("mnt");
    const wrong = sb.path("wrong.pass");
    await writeFile(wrong, "not the passphrase\n", { mode: 0o600 });
    const r = await mount(["-t", "fuse.cryptmount", lower, mnt, "-o", `passfile=${wrong}`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/^cryptmount: .*wrong passphrase/m);
    expect(isMounted(mnt)).toBe(false);
  });

  it("-o ro: reads work, writes fail with EROFS", async () => {
    const mnt = await sb.mkdir("mnt");
    const r = await mount([
      "-t",
      "fuse.cryptmount",
      lower,
      mnt,
      "-o",
      `ro,passfile=${sb.passfile}`,
    ]);
    expect(r.code, r.stderr).toBe(0);
    await expectContent(mnt);
    for (const script of [
      `printf x > ${q(join(mnt, "ro-new.txt"))}`,
      `printf x >> ${q(join(mnt, "a.txt"))}`,
      `mkdir ${q(join(mnt, "ro-dir"))}`,
      `rm ${q(join(mnt, "a.txt"))}`,
      `mv ${q(join(mnt, "a.txt"))} ${q(join(mnt, "renamed.txt"))}`,
      `touch ${q(join(mnt, "a.txt"))}`,
    ]) {
      const w = await sh(script);
      expect(w.code, script).not.toBe(0);
      expect(w.stderr, script).toMatch(/Read-only file system/);
    }
    await expectContent(mnt);
    await umountAndWait(mnt);
  });

  it.each([
    ["defaults", "rw"],
    ["defaults,ro", "ro"],
    ["nofail", "rw"],
    ["x-systemd.automount,nofail", "rw"],
    ["ro,nofail,x-systemd.automount,x-systemd.device-timeout=10s,noatime", "ro"],
  ])("fstab line with %s: mount -T FSTAB MNT, then umount MNT", async (options, mode) => {
    const mnt = await sb.mkdir("mnt");
    const fstab = sb.path("fstab");
    await writeFile(
      fstab,
      `# test fstab\n${lower}  ${mnt}  fuse.cryptmount  ${options},passfile=${sb.passfile}  0  0\n`,
    );
    const r = await mount(["-T", fstab, mnt]);
    expect(r.code, r.stderr).toBe(0);
    expect(mountEntry(mnt)?.fstype).toBe("fuse.cryptmount");
    await expectContent(mnt);
    const w = await sh(
      `printf x > ${q(join(mnt, "probe.txt"))} && rm ${q(join(mnt, "probe.txt"))}`,
    );
    if (mode === "ro") {
      expect(w.code).not.toBe(0);
      expect(w.stderr).toMatch(/Read-only file system/);
    } else {
      expect(w.code, w.stderr).toBe(0);
    }
    await umountAndWait(mnt);
  });

  it("the fstab line of the man page and docs/examples/fstab.example works with its paths replaced", async () => {
    const example = await readFile(join(ROOT, "docs", "examples", "fstab.example"), "utf8");
    const line = example.split("\n").find((l) => l.trim() && !l.startsWith("#"));
    expect(line).toBeDefined();
    const man = await readFile(join(ROOT, "docs", "cryptmount.1.md"), "utf8");
    expect(man).toContain(line!.trim());
    const mnt = await sb.mkdir("mnt");
    const fstab = sb.path("fstab");
    const ours = line!
      .replace("/data/lower", lower)
      .replace("/data/clear", mnt)
      .replace("/etc/cryptmount/data.pass", sb.passfile);
    expect(ours).not.toContain("/data/");
    await writeFile(fstab, ours + "\n");
    const r = await mount(["-T", fstab, mnt]);
    expect(r.code, r.stderr).toBe(0);
    await expectContent(mnt);
    await umountAndWait(mnt);
  });

  it("mount -a -T FSTAB mounts the auto entries and skips noauto ones", async () => {
    const auto = await sb.mkdir("mnt");
    const manual = await sb.mkdir("mnt");
    const second = await sb.createVolume("lower2");
    const fstab = sb.path("fstab");
    await writeFile(
      fstab,
      [
        `${lower} ${auto} fuse.cryptmount defaults,passfile=${sb.passfile},nofail 0 0`,
        `${second} ${manual} fuse.cryptmount noauto,passfile=${sb.passfile} 0 0`,
        "",
      ].join("\n"),
    );
    const r = await mount(["-a", "-T", fstab]);
    expect(r.code, r.stderr).toBe(0);
    expect(isMounted(auto)).toBe(true);
    expect(isMounted(manual)).toBe(false);
    // A noauto entry is mounted by naming its mount point.
    const r2 = await mount(["-T", fstab, manual]);
    expect(r2.code, r2.stderr).toBe(0);
    expect(isMounted(manual)).toBe(true);
    // Already mounted: mount -a again does nothing and succeeds.
    const again = await mount(["-a", "-T", fstab]);
    expect(again.code, again.stderr).toBe(0);
    const status = JSON.parse(await cliOk(sb, ["status", "--json"])) as { mountpoint: string }[];
    expect(status.map((s) => s.mountpoint).sort()).toEqual([auto, manual].sort());
    await umountAndWait(auto);
    await umountAndWait(manual);
  });
});

const systemdAnalyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].find((p) =>
  existsSync(p),
);

describe("systemd unit example", () => {
  it.skipIf(!systemdAnalyze)(
    "docs/examples/data-clear.mount passes systemd-analyze verify",
    async () => {
      const unit = join(ROOT, "docs", "examples", "data-clear.mount");
      const r = await run(systemdAnalyze!, ["verify", "--man=no", unit], { timeoutMs: 60_000 });
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(r.stderr).not.toMatch(/Unknown key|Refusing|bad unit/i);
      const text = await readFile(unit, "utf8");
      expect(text).toMatch(/^Type=fuse\.cryptmount$/m);
      expect(text).toMatch(/^What=\/data\/lower$/m);
      expect(text).toMatch(/^Where=\/data\/clear$/m);
      expect(text).toMatch(/^Options=.*passfile=/m);
    },
  );
});
