// POSIX conformance of a mounted volume, as root with --allow-other on a tmpfs
// lower (issue #9): special files, sparse files and fallocate, truncate,
// timestamps, ownership and permissions, sticky directories, long symlinks.
//
// Each it() runs one named check of test/helpers/posix_checks.py in a child
// process (which forks and drops to other users where a check needs them);
// the test process itself never touches the mount. The checks follow POSIX
// and the Linux man pages, not another test suite. Some describe format
// version 3 (special files, holes, KEEP_SIZE and PUNCH_HOLE, EFBIG); they are
// plain tests and fail on builds without it.

import { join } from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, it } from "vitest";
import {
  HELPERS,
  Sandbox,
  forceUnmount,
  haveFuse,
  isMounted,
  run,
  runOk,
  type Mounted,
} from "../helpers/volume.js";

const CHECKS = join(HELPERS, "posix_checks.py");
const isRoot = process.getuid?.() === 0;

/** A tmpfs of its own for each lower: space is measurable, and a runaway write stops at its size. */
async function mountTmpfs(sb: Sandbox, name: string, size: string): Promise<string> {
  const dir = await sb.mkdir(name);
  await runOk("mount", ["-t", "tmpfs", "-o", `size=${size},mode=755`, "tmpfs", dir]);
  return dir;
}

async function unmountTmpfs(dir: string): Promise<void> {
  if (!isMounted(dir)) return;
  const r = await run("umount", [dir], { timeoutMs: 10_000 });
  if (r.code !== 0) await run("umount", ["-l", dir], { timeoutMs: 10_000 });
}

async function createVolume(sb: Sandbox, lower: string): Promise<void> {
  await sb.cliOk([
    "init",
    "--passfile",
    sb.passfile,
    "--no-recovery",
    "--kdf-memory",
    "65536",
    "--kdf-iterations",
    "3",
    lower,
  ]);
}

/** Mounts with --allow-other, its log outside the lower's tmpfs (a full lower must not stop the log). */
async function mountVolume(sb: Sandbox, lower: string, mountpoint?: string): Promise<Mounted> {
  const mp = mountpoint ?? (await sb.mkdir("mnt"));
  const logFile = sb.path("server") + ".log";
  const r = await sb.mountRaw(lower, mp, { args: ["--allow-other"], logFile });
  if (r.code !== 0 || !isMounted(mp)) throw new Error(`mount ${lower}: ${r.stderr.trim()}`);
  const pid = sb.serverPid(mp);
  if (pid === undefined) throw new Error(`${mp}: no runtime record for the server`);
  return { lower, mountpoint: mp, logFile, pid };
}

describe.skipIf(!haveFuse || !isRoot)(
  "POSIX conformance (root, --allow-other, tmpfs lower)",
  () => {
    let sb: Sandbox;
    const tmpfs: string[] = [];
    let lower: string;
    let m: Mounted;
    let work: string;
    let testNo = 0;

    /** Runs one check in `dir` (default: this test's directory); throws with its reason when it fails. */
    async function posix(check: string, dir = work, lowerDir = lower): Promise<string> {
      const r = await run("python3", [CHECKS, check, dir, lowerDir], { timeoutMs: 50_000 });
      if (r.code !== 0) throw new Error(r.stderr.trim() || `${check}: exit ${r.code} ${r.stdout}`);
      const info = r.stdout.trim().replace(/^ok ?/, "");
      if (info) console.log(`${check}: ${info}`);
      return info;
    }

    beforeAll(async () => {
      sb = await Sandbox.create("posix");
      // Other users must reach the mount point (mkdtemp made the sandbox 0700).
      await runOk("chmod", ["755", sb.dir]);
      // 256 MiB bounds what a build without holes writes for a 10 GiB truncate.
      const fs = await mountTmpfs(sb, "lowerfs", "256m");
      tmpfs.push(fs);
      lower = join(fs, "vol");
      await createVolume(sb, lower);
      m = await mountVolume(sb, lower);
      await runOk("chmod", ["755", m.mountpoint]);
    });

    beforeEach(async () => {
      // A test that broke the mount must not take the next ones down with it.
      if (!isMounted(m.mountpoint)) {
        await sb.unmountAll();
        m = await mountVolume(sb, lower, m.mountpoint);
      }
      work = join(m.mountpoint, `t${++testNo}`);
      await runOk("mkdir", ["-m", "755", work]);
    });

    afterEach(async () => {
      // What a test left (a grown file on a build without holes) must not fill the lower for the next.
      if (isMounted(m.mountpoint)) await run("rm", ["-rf", work], { timeoutMs: 30_000 });
    });

    async function remount(): Promise<void> {
      await sb.unmount(m);
      m = await mountVolume(sb, lower, m.mountpoint);
    }

    afterAll(async () => {
      await sb?.unmountAll();
      if (m && isMounted(m.mountpoint)) await forceUnmount(m.mountpoint).catch(() => undefined);
      for (const dir of tmpfs) await unmountTmpfs(dir);
      await sb?.cleanup();
    });

    describe("special files", () => {
      it("mkfifo makes a FIFO with the mode asked, size 0, owned by the caller", async () => {
        await posix("mkfifo");
      });

      it("mknod S_IFCHR makes a character device with its st_rdev", async () => {
        await posix("mknod-chr");
      });

      it("mknod S_IFBLK makes a block device with its st_rdev (major 259, minor 65537)", async () => {
        await posix("mknod-blk");
      });

      it("mknod S_IFREG makes an ordinary, usable regular file", async () => {
        await posix("mknod-reg");
      });

      it("mkfifo and mknod over an existing name give EEXIST", async () => {
        await posix("mknod-exists");
      });

      it("a unix stream socket bound in the mount takes a connection and passes data both ways", async () => {
        await posix("socket");
      });

      it("a unix datagram socket bound in the mount receives a datagram", async () => {
        await posix("socket-dgram");
      });

      it("chmod of a FIFO, device and socket changes the mode and keeps the type and st_rdev", async () => {
        await posix("special-chmod");
      });

      it("chown and lchown of a FIFO, device and socket change the owner", async () => {
        await posix("special-chown");
      });

      it("rename of special files (in place, to another directory, over a regular file) keeps type and st_rdev", async () => {
        await posix("special-rename");
      });

      it("unlink removes special files", async () => {
        await posix("special-unlink");
      });

      it("hard links to special files share st_ino and count in st_nlink", async () => {
        await posix("special-hardlink");
      });

      it("special files have st_size 0, keep exact times set by utimensat, and chmod updates their ctime", async () => {
        await posix("special-attrs");
      });

      it("readdir gives special files their own type (d_type, find -printf %y)", async () => {
        await posix("special-readdir");
      });

      it("a FIFO in the mount passes 300 KiB between two processes", async () => {
        await posix("fifo-data");
      });

      it("special files keep type, mode, owner, st_rdev and links across unmount and mount", async () => {
        await posix("persist-make");
        await remount();
        await posix("persist-check");
      });
    });

    describe("sparse files", () => {
      it("truncate -s 10G takes almost no space in the lower and reads as zeros", async () => {
        await posix("sparse-truncate-10g");
      });

      it("one byte written at 2 GiB takes almost no space in the lower; the byte is in place, zeros before", async () => {
        await posix("sparse-write-2g");
      });

      it("data written into a hole reads back, the rest of the hole stays zero", async () => {
        await posix("sparse-rewrite-hole");
      });

      it("SEEK_DATA/SEEK_HOLE never report a hole where there is data, nor data past it", async () => {
        await posix("seek-data-hole");
      });

      it("truncate beyond the maximum file size gives EFBIG and leaves size and content unchanged", async () => {
        await posix("efbig-truncate");
      });

      it("ftruncate beyond the maximum file size gives EFBIG and leaves size and content unchanged", async () => {
        await posix("efbig-ftruncate");
      });

      it("a write beyond the maximum file size gives EFBIG and leaves size and content unchanged", async () => {
        await posix("efbig-write");
      });

      it("on an almost full lower a truncate works completely or fails leaving size, content and lower usage unchanged", async () => {
        // Its own small tmpfs, filled up by the check (beside the volume, not through the mount).
        const fs = await mountTmpfs(sb, "smallfs", "8m");
        tmpfs.push(fs);
        const small = join(fs, "vol");
        await createVolume(sb, small);
        const sm = await mountVolume(sb, small);
        try {
          const dir = join(sm.mountpoint, "d");
          await runOk("mkdir", [dir]);
          await posix("enospc-truncate", dir, small);
        } finally {
          await sb.unmount(sm).catch(() => forceUnmount(sm.mountpoint));
          await unmountTmpfs(fs);
        }
      });
    });

    describe("fallocate", () => {
      it("mode 0 grows the size (from 0 and beyond the end) and reads as zeros", async () => {
        await posix("fallocate-grow");
      });

      it("posix_fallocate grows the size", async () => {
        await posix("posix-fallocate");
      });

      it("FALLOC_FL_KEEP_SIZE succeeds and leaves st_size unchanged", async () => {
        await posix("fallocate-keep-size");
      });

      it("FALLOC_FL_PUNCH_HOLE|KEEP_SIZE zeroes the range (unaligned, and past the end) and keeps the size", async () => {
        await posix("fallocate-punch-hole");
      });

      it("FALLOC_FL_PUNCH_HOLE gives the lower's space back", async () => {
        await posix("fallocate-punch-frees");
      });
    });

    describe("truncate", () => {
      it("shrink then grow back gives zeros, not the old bytes (truncate and ftruncate)", async () => {
        await posix("truncate-shrink-grow");
      });

      it("grow across blocks keeps the content and adds zeros", async () => {
        await posix("truncate-grow");
      });

      it("to the same size changes nothing", async () => {
        await posix("truncate-same-size");
      });

      it("without write permission gives EACCES, of a directory EISDIR, to a negative size EINVAL", async () => {
        await posix("truncate-eacces-eisdir");
      });
    });

    describe("timestamps", () => {
      it("write updates mtime and ctime", async () => {
        await posix("times-write");
      });

      it("truncate (shrink and grow) updates mtime and ctime", async () => {
        await posix("times-truncate");
      });

      it("ftruncate updates mtime and ctime", async () => {
        await posix("times-ftruncate");
      });

      it("open with O_TRUNC updates mtime and ctime", async () => {
        await posix("times-open-trunc");
      });

      it("chmod updates ctime, not mtime", async () => {
        await posix("times-chmod");
      });

      it("chown updates ctime, not mtime", async () => {
        await posix("times-chown");
      });

      it("creating a file, directory or symlink updates the parent's mtime and ctime", async () => {
        await posix("times-create");
      });

      it("link updates the file's ctime and the parent's mtime and ctime", async () => {
        await posix("times-link");
      });

      it("unlink and rmdir update the parent's mtime and ctime, and a remaining link's ctime", async () => {
        await posix("times-unlink");
      });

      it("rename updates both parents' mtime and ctime, not the file's mtime", async () => {
        await posix("times-rename");
      });

      it("utimensat sets exact nanosecond times (also before 1970 and after 2038) and updates ctime", async () => {
        await posix("utimensat-explicit");
      });

      it("utimensat UTIME_NOW sets the current time", async () => {
        await posix("utimensat-now");
      });

      it("utimensat UTIME_OMIT leaves that time alone", async () => {
        await posix("utimensat-omit");
      });

      it("utimensat: UTIME_NOW needs write permission, explicit times need ownership", async () => {
        await posix("utimensat-permissions");
      });
    });

    describe("ownership and permissions", () => {
      it("files, directories and symlinks created by another user belong to that user", async () => {
        await posix("owner-new-entries");
      });

      it("FIFOs and sockets created by another user belong to that user; devices need privilege", async () => {
        await posix("owner-new-special");
      });

      it("chown: the owner may chgrp to its own groups only; others get EPERM; root may do anything", async () => {
        await posix("chown-rules");
      });

      it("an unprivileged chown clears set-user-ID and set-group-ID", async () => {
        await posix("chown-clears-setid");
      });

      it("chmod g+s by an owner outside the file's group leaves set-group-ID cleared", async () => {
        await posix("chmod-setgid-non-member");
      });

      it("entries made in a set-group-ID directory take its group; subdirectories stay set-group-ID", async () => {
        await posix("setgid-dir-inheritance");
      });

      it("EACCES for creating, reading, unlinking, renaming and searching without permission", async () => {
        await posix("eacces");
      });

      it("sticky directory: another user cannot unlink your file; you can", async () => {
        await posix("sticky-unlink");
      });

      it("sticky directory: another user cannot rename your file away or over it", async () => {
        await posix("sticky-rename");
      });

      it("sticky directory: its owner and root can remove anyone's files", async () => {
        await posix("sticky-owner-and-root");
      });
    });

    describe("symlinks", () => {
      for (const n of [1, 3000, 4000, 4095]) {
        it(`a ${n}-byte target reads back exactly and lstat st_size is ${n}`, async () => {
          await posix(`symlink-${n}`);
        });
      }

      it("a 4096-byte target gives ENAMETOOLONG", async () => {
        await posix("symlink-4096");
      });

      it("1, 3000 and 4095-byte targets survive unmount and mount", async () => {
        await posix("symlink-persist-make");
        await remount();
        await posix("symlink-persist-check");
      });
    });
  },
);
