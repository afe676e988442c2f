// The version-3 lower layout survives a copy through plain object storage:
// the lower of a volume holding every kind of entry (FIFO, socket, devices,
// symlinks of every length, a sparse file with holes, hard links) is synced
// with rclone, without any special flag, to a local directory standing in for
// a bucket (rclone's local backend copies regular files and directories only,
// writes holes as real zeros, and drops modes like object storage does), and
// back into a fresh lower; the copy mounts and shows the same tree.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { Sandbox, haveFuse, q, run, runOk, shOk } from "../helpers/volume.js";

const haveRclone = (await run("sh", ["-c", "command -v rclone"])).code === 0;

/** Every entry below `dir`: path, type, size for files and symlinks, rdev for devices, target for symlinks. */
function tree(dir: string): Promise<string> {
  return shOk(
    `cd ${q(dir)} && find . -mindepth 1 -printf '%p %y' , \\( -type f -printf ' %s' \\) , ` +
      `\\( -type l -printf ' %s -> %l' \\) , -printf '\\n' | sort && ` +
      `stat -c '%n %t:%T' ./chr ./blk && sha256sum ./sparse ./dense ./hard-a`,
  );
}

describe.skipIf(!haveFuse || !haveRclone)("lower layout through object storage", () => {
  let sb: Sandbox;
  beforeAll(async () => {
    sb = await Sandbox.create("lower-sync");
  });
  afterAll(async () => {
    await sb?.cleanup();
  });

  it("rclone sync of the lower to a bucket directory and back mounts to the same tree", async () => {
    const lower = await sb.createVolume();
    const m = await sb.mount(lower, { args: ["--allow-other"] });
    const c = m.mountpoint;
    await shOk(
      `cd ${q(c)} && mkfifo fifo && mknod chr c 1 7 && mknod blk b 8 3 && mkdir -p d/e && ` +
        `ln -s target short && ln -s "$(printf 'x%.0s' $(seq 4095))" longest && ln -s ../short d/rel && ` +
        `head -c 70000 /dev/urandom > dense && truncate -s 300M sparse && ` +
        `printf 'middle' | dd of=sparse bs=1 seek=104857600 conv=notrunc status=none && ` +
        `printf 'tail' >> sparse && echo hi > hard-a && ln hard-a hard-b && ` +
        `python3 -c "import socket; socket.socket(socket.AF_UNIX).bind('sock')"`,
    );
    const before = await tree(c);
    expect(before).toContain("./fifo p");
    expect(before).toContain("./sock s");
    expect(before).toContain("./longest l 4095");
    await sb.unmount(m);

    // Nothing in the lower but regular files and directories: no --links needed.
    expect(await shOk(`find ${q(lower)} ! -type f ! -type d | wc -l`)).toBe("0");
    const bucket = join(sb.dir, "bucket");
    const back = join(sb.dir, "back");
    await runOk("rclone", ["sync", lower, bucket]);
    await runOk("rclone", ["sync", bucket, back]);
    // The hole came back as zeros: the copy is no longer sparse, and reads the same.
    const blocks = Number(await shOk(`du -s --block-size=1M ${q(back)} | cut -f1`));
    expect(blocks).toBeGreaterThan(250);

    const again = await sb.mount(back, { args: ["--allow-other"] });
    try {
      expect(await tree(again.mountpoint)).toBe(before);
      expect(await shOk(`cat ${q(join(again.mountpoint, "short"))} 2>&1 || true`)).toMatch(
        /No such file/,
      );
      expect(await shOk(`readlink ${q(join(again.mountpoint, "d/rel"))}`)).toBe("../short");
      // Empty directories made it too (their ID entry is an empty file).
      expect(await shOk(`ls -A ${q(join(again.mountpoint, "d/e"))} | wc -l`)).toBe("0");
    } finally {
      await sb.unmount(again);
    }
    const fsck = await sb.cli(["fsck", "--passfile", sb.passfile, back]);
    expect(fsck.stdout + fsck.stderr).toMatch(/clean/);
    expect(fsck.code).toBe(0);
  });
});
