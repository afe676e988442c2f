// Tampering with the lower directory: a flipped byte in a content block or
// a header, swapped or dropped blocks, an entry moved to another directory.
// Reads of what was touched fail with EIO (logged with the cleartext path
// and block), everything else keeps working, and fsck names what was touched.

import { open, rename, truncate } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  HEADER_SIZE,
  SEALED_BLOCK_SIZE,
  Sandbox,
  haveFuse,
  newLowerEntries,
  q,
  readLog,
  run,
  runOk,
  seededBytes,
  sha256,
  shOk,
  type LogRecord,
  type Mounted,
  sandboxSuite,
} from "../helpers/volume.js";
import { fsck } from "../helpers/volume-tools.js";

const B = 32 * 1024;
const VICTIM_SIZE = 4 * B + 100; // blocks 0..4, the last one partial

let sb: Sandbox;

async function flipByte(path: string, offset: number): Promise<void> {
  const fh = await open(path, "r+");
  try {
    const one = Buffer.alloc(1);
    await fh.read(one, 0, 1, offset);
    one[0] = one[0]! ^ 0x5a;
    await fh.write(one, 0, 1, offset);
  } finally {
    await fh.close();
  }
}

/** Creates `rel` in the mount with seeded content and returns its lower path. */
async function createFile(
  m: Mounted,
  rel: string,
  size: number,
): Promise<{ lower: string; data: Buffer }> {
  const data = seededBytes(`tamper-${rel}`, size);
  const source = join(sb.dir, `source-${rel.replace(/\//g, "_")}`);
  await import("node:fs/promises").then((fs) => fs.writeFile(source, data));
  const added = await newLowerEntries(m.lower, () =>
    runOk("cp", [source, join(m.mountpoint, rel)]),
  );
  expect(added, `lower entries for ${rel}`).toHaveLength(1);
  return { lower: join(m.lower, added[0]!), data };
}

/** Sealed block `index` of a lower file. */
async function readSealed(lowerFile: string, index: number): Promise<Buffer> {
  const fh = await open(lowerFile, "r");
  try {
    const buf = Buffer.alloc(SEALED_BLOCK_SIZE);
    await fh.read(buf, 0, SEALED_BLOCK_SIZE, HEADER_SIZE + index * SEALED_BLOCK_SIZE);
    return buf;
  } finally {
    await fh.close();
  }
}

/** Block `index` of a file, read by dd with skip (one block, nothing before it). */
function readBlock(file: string, index: number, count = 1) {
  return run("bash", [
    "-c",
    `set -o pipefail; dd if=${q(file)} bs=${B} skip=${index} count=${count} status=none | sha256sum`,
  ]);
}

const blockHash = (data: Buffer, index: number, count = 1) =>
  sha256(data.subarray(index * B, (index + count) * B));

function ddError(stderr: string): void {
  expect(stderr).toMatch(/Input\/output error/);
}

describe.skipIf(!haveFuse)("tampered lower files", () => {
  sandboxSuite("tamper", (s) => {
    sb = s;
  });

  it("a flipped byte in a content block: EIO for that block, logged with path and block; the rest reads", async () => {
    const lower = await sb.createVolume();
    let m = await sb.mount(lower);
    await runOk("mkdir", [join(m.mountpoint, "dir")]);
    const victim = await createFile(m, "dir/victim.bin", VICTIM_SIZE);
    const bystander = await createFile(m, "dir/bystander.bin", 3 * B + 7);
    await sb.unmount(m);

    await flipByte(victim.lower, HEADER_SIZE + 2 * SEALED_BLOCK_SIZE + 1000); // inside block 2
    m = await sb.mount(lower, { mountpoint: m.mountpoint });
    const file = join(m.mountpoint, "dir/victim.bin");

    const cat = await run("cat", [file]);
    expect(cat.code).not.toBe(0);
    expect(cat.stderr).toMatch(/cat: .*victim\.bin: Input\/output error/);

    const records = await readLog(m.logFile, (r) => r.msg === "corrupt block: read refused");
    const corrupt = records.filter((r: LogRecord) => r.msg === "corrupt block: read refused");
    expect(corrupt[0]).toMatchObject({ path: "/dir/victim.bin", block: 2 });
    expect(corrupt.every((r) => r.block === 2 && r.path === "/dir/victim.bin")).toBe(true);
    expect(JSON.stringify(records)).not.toMatch(/Error\n\s+at /);

    // Blocks before the bad one read, alone and together; so do the ones after.
    for (const [index, count] of [
      [0, 1],
      [1, 1],
      [0, 2],
      [3, 1],
      [4, 1],
      [3, 2],
    ] as const) {
      const r = await readBlock(file, index, count);
      expect(r.code, `blocks ${index}+${count}: ${r.stderr}`).toBe(0);
      expect(r.stdout.split(" ")[0]).toBe(blockHash(victim.data, index, count));
    }
    // The bad block fails, alone or as part of a larger read.
    for (const [index, count] of [
      [2, 1],
      [1, 2],
      [2, 3],
    ] as const) {
      const r = await run("dd", [
        `if=${file}`,
        `bs=${B}`,
        `skip=${index}`,
        `count=${count}`,
        "of=/dev/null",
        "status=none",
      ]);
      expect(r.code, `blocks ${index}+${count}`).not.toBe(0);
      ddError(r.stderr);
    }
    // stat and listing are unaffected; so is the other file.
    expect(await runOk("stat", ["-c", "%s", file])).toBe(String(VICTIM_SIZE));
    expect(await runOk("ls", [join(m.mountpoint, "dir")])).toBe("bystander.bin\nvictim.bin");
    const other = await runOk("sha256sum", [join(m.mountpoint, "dir/bystander.bin")]);
    expect(other.split(" ")[0]).toBe(sha256(bystander.data));

    // fsck names the file and the block, and nothing else (a plain check may run beside a mount).
    const checked = await fsck(sb, lower);
    expect(checked.code, checked.stderr).toBe(7);
    expect(checked.report.problems).toEqual([
      expect.objectContaining({ code: "BLOCK_AUTH", path: "/dir/victim.bin", block: 2 }),
    ]);
    expect(checked.report).toMatchObject({ files: 2, checked: 2 });

    // Overwriting the whole bad block repairs the file (no read needed). iflag=fullblock:
    // dd takes what one read of the pipe gives, and a part of a block would need the bad one.
    await shOk(
      `dd if=${q(file)} bs=${B} count=2 status=none > ${q(sb.dir + "/head")} && ` +
        `head -c ${B} /dev/zero | dd of=${q(file)} bs=${B} seek=2 iflag=fullblock conv=notrunc status=none`,
    );
    expect((await run("cat", [file])).code).toBe(0);
  });

  it("a flipped byte in a file header: EIO on open, logged; stat and the listing still work", async () => {
    const lower = await sb.createVolume();
    let m = await sb.mount(lower);
    const inId = await createFile(m, "file-id.bin", 5000);
    const inSlot = await createFile(m, "key-slot.bin", 5000);
    const fine = await createFile(m, "fine.bin", 5000);
    await sb.unmount(m);

    await flipByte(inId.lower, 12); // file ID
    await flipByte(inSlot.lower, 24 + 20); // wrapped file key in slot A
    m = await sb.mount(lower, { mountpoint: m.mountpoint });

    for (const name of ["file-id.bin", "key-slot.bin"]) {
      const r = await run("cat", [join(m.mountpoint, name)]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/Input\/output error/);
      const open = await run("python3", [
        "-c",
        "import sys; open(sys.argv[1], 'rb')",
        join(m.mountpoint, name),
      ]);
      expect(open.stderr).toMatch(/OSError: \[Errno 5\]/);
      expect(await runOk("stat", ["-c", "%s", join(m.mountpoint, name)])).toBe("5000");
    }
    const records = await readLog(
      m.logFile,
      (r) => r.msg === "cannot open file: header invalid" && r.path === "/key-slot.bin",
    );
    expect(
      records.some(
        (r) => r.msg === "cannot open file: header invalid" && r.path === "/file-id.bin",
      ),
    ).toBe(true);
    expect(await runOk("ls", [m.mountpoint])).toBe("file-id.bin\nfine.bin\nkey-slot.bin");
    expect((await runOk("sha256sum", [join(m.mountpoint, "fine.bin")])).split(" ")[0]).toBe(
      sha256(fine.data),
    );
  });

  it("swapped, cut-off and appended blocks are detected; blocks before them still read", async () => {
    const lower = await sb.createVolume();
    let m = await sb.mount(lower);
    const swapped = await createFile(m, "swapped.bin", 3 * B + 5);
    const cut = await createFile(m, "cut.bin", 3 * B + 10);
    const dropped = await createFile(m, "dropped.bin", 3 * B + 10);
    const grown = await createFile(m, "grown.bin", 2 * B + 100);
    await sb.unmount(m);

    // Swap sealed blocks 0 and 1.
    const fh = await open(swapped.lower, "r+");
    const b0 = Buffer.alloc(SEALED_BLOCK_SIZE);
    const b1 = Buffer.alloc(SEALED_BLOCK_SIZE);
    await fh.read(b0, 0, SEALED_BLOCK_SIZE, HEADER_SIZE);
    await fh.read(b1, 0, SEALED_BLOCK_SIZE, HEADER_SIZE + SEALED_BLOCK_SIZE);
    await fh.write(b1, 0, SEALED_BLOCK_SIZE, HEADER_SIZE);
    await fh.write(b0, 0, SEALED_BLOCK_SIZE, HEADER_SIZE + SEALED_BLOCK_SIZE);
    await fh.close();
    // Cut inside block 2: a valid length whose last block was never sealed as final.
    await truncate(cut.lower, HEADER_SIZE + 2 * SEALED_BLOCK_SIZE + 1000);
    // Drop the final block exactly: a length no valid file has.
    await truncate(dropped.lower, HEADER_SIZE + 3 * SEALED_BLOCK_SIZE);
    // Append a copy of block 0 after the final block.
    const gh = await open(grown.lower, "a");
    await gh.write(await readSealed(grown.lower, 0));
    await gh.close();

    m = await sb.mount(lower, { mountpoint: m.mountpoint });
    const at = (name: string) => join(m.mountpoint, name);
    for (const name of ["swapped.bin", "cut.bin", "dropped.bin", "grown.bin"]) {
      const r = await run("cat", [at(name)]);
      expect(r.code, name).not.toBe(0);
      expect(r.stderr, name).toMatch(/Input\/output error/);
    }
    expect(await runOk("stat", ["-c", "%s", at("cut.bin")])).toBe(String(2 * B + 1000 - 28));
    expect(await runOk("stat", ["-c", "%s", at("grown.bin")])).toBe(String(3 * B + 100));
    // The length of dropped.bin is impossible: stat reports the damage rather than an empty file.
    expect((await run("stat", ["-c", "%s", at("dropped.bin")])).stderr).toMatch(
      /Input\/output error/,
    );
    // Reads that stop before the damage succeed.
    for (const [name, data] of [
      ["cut.bin", cut.data],
      ["grown.bin", grown.data],
    ] as const) {
      const r = await readBlock(at(name), 0, 2);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.split(" ")[0], name).toBe(blockHash(data, 0, 2));
    }
    const r = await readBlock(at("swapped.bin"), 2, 2);
    expect(r.stdout.split(" ")[0]).toBe(sha256(swapped.data.subarray(2 * B)));

    const records = await readLog(m.logFile, (x) => x.path === "/grown.bin");
    const blocks = records.filter((x) => x.msg === "corrupt block: read refused");
    expect(blocks.find((x) => x.path === "/swapped.bin")).toMatchObject({ block: 0 });
    expect(blocks.find((x) => x.path === "/cut.bin")).toMatchObject({ block: 2 });
    expect(blocks.find((x) => x.path === "/grown.bin")).toMatchObject({ block: 2 });
    expect(records.find((x) => x.path === "/dropped.bin")).toMatchObject({
      msg: "file has an invalid length",
    });
  });

  it("an entry moved to another lower directory disappears from listings (skipped, logged)", async () => {
    const lower = await sb.createVolume();
    let m = await sb.mount(lower);
    const d1 = await newLowerEntries(lower, () => runOk("mkdir", [join(m.mountpoint, "d1")]));
    const d2 = await newLowerEntries(lower, () => runOk("mkdir", [join(m.mountpoint, "d2")]));
    const d1Dir = d1.find((p) => !p.includes("/"))!;
    const d2Dir = d2.find((p) => !p.includes("/"))!;
    const moved = await createFile(m, "d1/moved.txt", 100);
    await createFile(m, "d1/stays.txt", 100);
    await createFile(m, "d2/resident.txt", 100);
    await sb.unmount(m);

    const entry = moved.lower.slice(join(lower, d1Dir).length + 1);
    await rename(moved.lower, join(lower, d2Dir, entry));
    m = await sb.mount(lower, { mountpoint: m.mountpoint });

    const ls2 = await run("ls", ["-la", join(m.mountpoint, "d2")]);
    expect(ls2.code, ls2.stderr).toBe(0);
    expect(await runOk("ls", [join(m.mountpoint, "d2")])).toBe("resident.txt");
    expect(await runOk("ls", [join(m.mountpoint, "d1")])).toBe("stays.txt");
    expect((await run("cat", [join(m.mountpoint, "d1/moved.txt")])).stderr).toMatch(/No such file/);
    await runOk("find", [m.mountpoint]);
    const records = await readLog(m.logFile, (r) => /entry is hidden/.test(r.msg));
    const hidden = records.find((r) => /entry is hidden/.test(r.msg));
    expect(hidden).toMatchObject({ dir: "/d2", level: 40 });
    // The cleartext directory and the lower name are never logged side by side at default levels.
    expect(hidden).not.toHaveProperty("entry");
    expect(JSON.stringify(records)).not.toContain(entry);
    // The directory still works normally.
    await shOk(`printf new > ${q(join(m.mountpoint, "d2/new.txt"))}`);
    expect(await runOk("ls", [join(m.mountpoint, "d2")])).toBe("new.txt\nresident.txt");
  });
});
