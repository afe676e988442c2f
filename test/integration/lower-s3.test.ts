// docs/lower-s3.md, "Synced": the lower of a volume goes to a real S3 bucket
// (s3rver on loopback) with a plain `rclone sync`, no special flags; the
// local lower is wiped; `rclone sync` brings the bucket down into a fresh
// lower, which mounts to the same tree: every file's hash, empty
// directories, symlinks, a FIFO, a socket, devices and a sparse file. fsck
// is clean. Then a byte flipped in one object in the bucket: that file reads
// EIO (named in the log and by fsck), every other file still reads.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import {
  Sandbox,
  haveFuse,
  newLowerEntries,
  pyOk,
  q,
  readLog,
  run,
  shOk,
  type LogRecord,
} from "../helpers/volume.js";
import { BUCKET, REMOTE, haveRclone, rcloneOk, startS3, type S3Server } from "../helpers/s3.js";

/** Every entry below `dir` with its type, sizes, symlink targets, device numbers and file hashes. */
function tree(dir: string): Promise<string> {
  return shOk(
    `cd ${q(dir)} && find . -mindepth 1 -printf '%p %y' , \\( -type f -printf ' %s' \\) , ` +
      `\\( -type l -printf ' %s -> %l' \\) , -printf '\\n' | sort && ` +
      `stat -c '%n %t:%T' ./chr ./blk && find . -type f -print0 | sort -z | xargs -0 sha256sum`,
  );
}

describe.skipIf(!haveFuse || !haveRclone)("a lower synced through S3 (rclone, s3rver)", () => {
  let sb: Sandbox;
  let s3: S3Server | undefined;
  beforeAll(async () => {
    sb = await Sandbox.create("lower-s3");
    s3 = await startS3(join(sb.dir, "s3"));
  });
  afterAll(async () => {
    await sb?.unmountAll();
    await s3?.stop();
    await sb?.cleanup();
  });

  it("sync up, wipe, sync down into a fresh lower: same tree, fsck clean; a flipped byte in the bucket is EIO for that file only", async () => {
    const bucket = `${REMOTE}:${BUCKET}/volume`;
    const lower = await sb.createVolume();
    const m = await sb.mount(lower, { args: ["--allow-other"] });
    const c = m.mountpoint;
    await shOk(
      `cd ${q(c)} && mkfifo fifo && mknod chr c 1 7 && mknod blk b 8 3 && mkdir -p d/e empty && ` +
        `ln -s target short && ln -s "$(printf 'x%.0s' $(seq 4095))" longest && ln -s ../short d/rel && ` +
        `head -c 200000 /dev/urandom > dense && : > zero && truncate -s 40M sparse && ` +
        `printf 'middle' | dd of=sparse bs=1 seek=20971520 conv=notrunc status=none && ` +
        `printf 'tail' >> sparse && echo hi > hard-a && ln hard-a hard-b && ` +
        `for i in $(seq 1 30); do head -c $((i * 977)) /dev/urandom > d/f$i; done && ` +
        `python3 -c "import socket; socket.socket(socket.AF_UNIX).bind('sock')"`,
    );
    // The victim of the flipped byte, and which lower file holds it.
    const created = await newLowerEntries(lower, () =>
      shOk(`head -c 100000 /dev/urandom > ${q(c)}/d/victim`),
    );
    expect(created).toHaveLength(1);
    const victimLower = created[0]!;
    const before = await tree(c);
    expect(before).toContain("./fifo p");
    expect(before).toContain("./sock s");
    expect(before).toContain("./empty d");
    await sb.unmount(m);
    expect(await shOk(`find ${q(lower)} ! -type f ! -type d | wc -l`)).toBe("0");

    // The recipe: plain sync up, lose the local copy, plain sync down.
    await rcloneOk(s3!, ["sync", lower, bucket]);
    await rm(lower, { recursive: true });
    const fresh = sb.path("fresh");
    await rcloneOk(s3!, ["sync", bucket, fresh]);

    let again = await sb.mount(fresh, { args: ["--allow-other"] });
    try {
      expect(await tree(again.mountpoint)).toBe(before);
      expect(await shOk(`readlink ${q(join(again.mountpoint, "d/rel"))}`)).toBe("../short");
      expect(await shOk(`ls -A ${q(join(again.mountpoint, "empty"))} | wc -l`)).toBe("0");
      // The hole came back as zeros, and reads the same.
      expect(await shOk(`tail -c 4 ${q(join(again.mountpoint, "sparse"))}`)).toBe("tail");
    } finally {
      await sb.unmount(again);
    }
    const fsck = await sb.cli(["fsck", "--passfile", sb.passfile, fresh]);
    expect(fsck.stdout + fsck.stderr).toMatch(/clean/);
    expect(fsck.code).toBe(0);

    // Silent corruption in the bucket: one byte of one object's first block.
    const object = `${bucket}/${victimLower}`;
    const local = join(sb.dir, "object");
    await rcloneOk(s3!, ["copyto", object, local]);
    await pyOk(
      "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[1000]^=0x55; open(p,'wb').write(b)",
      [local],
    );
    await rcloneOk(s3!, ["copyto", local, object]);
    await rcloneOk(s3!, ["sync", bucket, fresh]);

    again = await sb.mount(fresh, { args: ["--allow-other"] });
    try {
      const cat = await run("cat", [join(again.mountpoint, "d/victim")]);
      expect(cat.code).not.toBe(0);
      expect(cat.stderr).toMatch(/Input\/output error/);
      const records = await readLog(again.logFile, (r) => r.msg === "corrupt block: read refused");
      expect(records.find((r: LogRecord) => r.msg === "corrupt block: read refused")).toMatchObject(
        { path: "/d/victim" },
      );
      // Everything else still reads.
      expect(
        await shOk(
          `cd ${q(again.mountpoint)} && find . -type f ! -path ./d/victim -print0 | xargs -0 cat | wc -c`,
        ),
      ).toMatch(/^\d+$/);
    } finally {
      await sb.unmount(again);
    }
    const dirty = await sb.cli(["fsck", "--passfile", sb.passfile, fresh]);
    expect(dirty.code).toBe(7);
    expect(dirty.stdout + dirty.stderr).toMatch(/\/d\/victim/);
  });
});
