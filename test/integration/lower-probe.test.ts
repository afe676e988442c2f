// init and mount refuse a lower that cannot hold the format, before writing
// anything (src/volume/lower-probe.ts, exit 11): a read-only bind mount, and
// the case from issue 12, an `rclone mount` of an S3 bucket without a write
// cache (it cannot open a file for reading and writing, nor write into the
// middle of one). The same bucket mounted with `--vfs-cache-mode writes`
// passes, and `--no-probe` skips the check.

import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { mkdir, readdir } from "node:fs/promises";
import { join } from "node:path";
import { EXIT, Sandbox, haveFuse, isMounted, run, runOk } from "../helpers/volume.js";
import { MIN_KDF } from "../helpers/volume-tools.js";
import {
  BUCKET,
  REMOTE,
  haveRclone,
  rcloneMount,
  rcloneOk,
  startS3,
  type RcloneMount,
  type S3Server,
} from "../helpers/s3.js";

const isRoot = process.getuid?.() === 0;

describe.skipIf(!haveFuse)("lower probe: init and mount refuse an unfit lower", () => {
  let sb: Sandbox;
  let s3: S3Server | undefined;
  const binds: string[] = [];
  const rclones: RcloneMount[] = [];
  beforeAll(async () => {
    sb = await Sandbox.create("lower-probe");
  });
  afterEach(async () => {
    await sb.unmountAll();
    for (const m of rclones.splice(0)) await m.stop();
    for (const b of binds.splice(0)) if (isMounted(b)) await run("umount", ["-l", b]);
  });
  afterAll(async () => {
    await s3?.stop();
    await sb?.cleanup();
  });

  const init = (lower: string, extra: string[] = []) =>
    sb.cli(["init", "--passfile", sb.passfile, ...MIN_KDF, "--no-recovery", ...extra, lower]);

  it.skipIf(!isRoot)(
    "a read-only bind mount: init and a read-write mount exit 11 naming the check; --ro mounts",
    async () => {
      const lower = await sb.createVolume();
      const ro = await sb.mkdir("ro");
      await runOk("mount", ["--bind", lower, ro]);
      binds.push(ro);
      await runOk("mount", ["-o", "remount,bind,ro", ro]);
      const empty = await sb.mkdir("empty");
      const roEmpty = await sb.mkdir("ro-empty");
      await runOk("mount", ["--bind", empty, roEmpty]);
      binds.push(roEmpty);
      await runOk("mount", ["-o", "remount,bind,ro", roEmpty]);

      const r = await init(join(roEmpty, "vol"));
      expect(r.code, r.stderr).toBe(EXIT.lowerUnsuitable);
      expect(r.stderr).toMatch(
        /cannot hold a cryptmount volume: check "a directory can be created" failed \(EROFS\)/,
      );
      expect(r.stderr).not.toMatch(/\n\s+at /);

      const mnt = await sb.mkdir("mnt");
      const m = await sb.mountRaw(ro, mnt);
      expect(m.code, m.stderr).toBe(EXIT.lowerUnsuitable);
      expect(m.stderr).toMatch(/--ro/);
      expect(isMounted(mnt)).toBe(false);
      // Read-only mounts write nothing and are not probed.
      const mounted = await sb.mount(ro, { args: ["--ro"], mountpoint: mnt });
      await sb.unmount(mounted);
    },
  );

  it.skipIf(!haveRclone)(
    "an rclone mount of a bucket without a write cache is refused before anything is written; with --vfs-cache-mode writes it passes",
    async () => {
      s3 ??= await startS3(join(sb.dir, "s3"));
      const bare = await rcloneMount(
        s3,
        `${REMOTE}:${BUCKET}/bare`,
        await sb.mkdir("bucket"),
        join(sb.dir, "cache-bare"),
      );
      rclones.push(bare);
      const lower = join(bare.mountpoint, "vault");
      const r = await init(lower);
      expect(r.code, r.stderr).toBe(EXIT.lowerUnsuitable);
      expect(r.stderr).toMatch(/check "a file opens for reading and writing/);
      expect(r.stderr).toMatch(/--vfs-cache-mode writes/);
      // Nothing was left behind: not the volume, not the probe's directory.
      expect(await readdir(bare.mountpoint)).toEqual([]);
      expect(await rcloneOk(s3, ["lsf", "-R", `${REMOTE}:${BUCKET}`])).toBe("");

      // --no-probe goes ahead (and the lower is as unfit as it was).
      const forced = await init(lower, ["--no-probe"]);
      expect(forced.code).not.toBe(EXIT.lowerUnsuitable);
      await bare.stop();

      const cached = await rcloneMount(
        s3,
        `${REMOTE}:${BUCKET}/cached`,
        await sb.mkdir("bucket"),
        join(sb.dir, "cache-writes"),
        ["--vfs-cache-mode", "writes"],
      );
      rclones.push(cached);
      const good = join(cached.mountpoint, "vault");
      await mkdir(good);
      const ok = await init(good);
      expect(ok.code, ok.stderr).toBe(0);
      expect((await readdir(good)).sort()).toEqual(["cryptmount.conf", "cryptmount.conf.bak"]);
    },
  );

  it("a fit local lower: init and mount probe it and leave nothing behind", async () => {
    const lower = await sb.mkdir("fit");
    const r = await init(lower);
    expect(r.code, r.stderr).toBe(0);
    expect((await readdir(lower)).filter((n) => n.startsWith(".cryptmount-probe"))).toEqual([]);
    const m = await sb.mount(lower);
    expect((await readdir(lower)).filter((n) => n.startsWith(".cryptmount-probe"))).toEqual([]);
    await sb.unmount(m);
    const fsck = await sb.cli(["fsck", "--passfile", sb.passfile, lower]);
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
  });
});
