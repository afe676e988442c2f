// fsck, rekey and upgrade when whoever can write the lower directory swaps a
// directory for a symlink to a copy of it outside the volume *while the
// tool is walking it* (docs/format.md §18.3). A walk by path would go on
// through the symlink and check, repair, rewrap or upgrade the copy; a walk
// on directory handles goes on in the directory it had opened, inside the
// lower. The swap is made from the tools' own progress hooks, so it lands at
// the same point of the walk every time.
//
// The outside copy is bait: an orphan sidecar (fsck --repair would remove
// it), valid file headers (rekey would rewrap them), version-1 ID entries
// (upgrade would tag them). It must come out of every run unchanged.

import { cpSync, renameSync, symlinkSync } from "node:fs";
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { ARGON2_MINIMUM } from "../../src/format/config.js";
import { ContentGeometry, sealBlocks } from "../../src/format/content.js";
import { dirIdEntryName } from "../../src/format/dir-ids.js";
import { createHeader } from "../../src/format/header.js";
import { encryptName, lowerEntryFor } from "../../src/format/names.js";
import type { Keyring } from "../../src/crypto/keys.js";
import type { Progress } from "../../src/volume/progress.js";
import { Fsck } from "../../src/volume/fsck.js";
import { rekey } from "../../src/volume/rekey.js";
import { upgrade } from "../../src/volume/upgrade.js";
import { initVolume, unlockVolume } from "../../src/volume/volume.js";
import { treeSnapshot } from "../helpers/hostile.js";

const B = 4096;
const secret = () => ({ kind: "passphrase" as const, bytes: Buffer.from("race passphrase") });

let temp: string;
beforeAll(async () => {
  temp = await mkdtemp(join(tmpdir(), "cryptmount-races-"));
});
afterAll(async () => {
  await rm(temp, { recursive: true, force: true });
});

let counter = 0;
const fresh = (name: string) => join(temp, `${name}-${++counter}`);

/** The outside tree after a first look (the first readlink of a copied symlink moves its atime). */
function snapshot(dir: string): string[] {
  treeSnapshot(dir);
  return treeSnapshot(dir);
}

/**
 * Replaces `lower/entry` by a symlink to `outside`: the real directory is
 * renamed to a foreign name inside the lower, so a walk that keeps its
 * handle stays in the volume.
 */
function swapper(lower: string, entry: string, outside: string): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    renameSync(join(lower, entry), join(lower, `${entry}.moved`));
    symlinkSync(outside, join(lower, entry));
  };
}

const onTick = (action: () => void): Progress => ({ start() {}, tick: action, stop() {} });

/**
 * A version-2 volume whose root holds one directory "sub" only, and "sub"
 * two files and a subdirectory "inner" (with a file), one file sorting
 * before "inner": the first file a walk checks is in "sub", before "inner".
 */
async function raceVolume(): Promise<{ lower: string; sub: string; inner: string }> {
  const lower = fresh("lower");
  await initVolume(lower, {
    slots: [{ secret: secret(), kdf: ARGON2_MINIMUM }],
    blockSize: B,
    recovery: false,
  });
  const { keyring } = await unlockVolume(lower, secret());
  try {
    const geometry = new ContentGeometry(B);
    const sub = await makeDir(keyring, lower, keyring.volume.rootDirId, "sub");
    // The file's name: of 16 candidates, the one whose lower name sorts lowest,
    // so that a subdirectory name sorting after it is quickly found. (A fixed
    // name could sort near the top under a random key: the search for a
    // later name then failed now and then.)
    const fileName = Array.from({ length: 16 }, (_, i) => `first-${i}`).reduce((a, b) =>
      entryOf(keyring, sub.id, a) < entryOf(keyring, sub.id, b) ? a : b,
    );
    const first = await makeFile(keyring, geometry, join(lower, sub.entry), sub.id, fileName);
    let name = "inner";
    for (let i = 0; !(entryOf(keyring, sub.id, name) > first); i++) {
      if (i > 256) throw new Error("no subdirectory name sorts after the file");
      name = `inner-${i}`;
    }
    const inner = await makeDir(keyring, join(lower, sub.entry), sub.id, name);
    await makeFile(keyring, geometry, join(lower, sub.entry, inner.entry), inner.id, "leaf");
    await makeFile(keyring, geometry, join(lower, sub.entry), sub.id, "second");
    return { lower, sub: sub.entry, inner: inner.entry };
  } finally {
    keyring.wipe();
  }
}

function entryOf(keyring: Keyring, dirId: Buffer, name: string): string {
  return lowerEntryFor(encryptName(keyring.volume.names, dirId, name)).entry;
}

async function makeDir(
  keyring: Keyring,
  parent: string,
  parentId: Buffer,
  name: string,
): Promise<{ entry: string; id: Buffer }> {
  const entry = entryOf(keyring, parentId, name);
  const id = randomBytes(16);
  await mkdir(join(parent, entry));
  await writeFile(join(parent, entry, dirIdEntryName(keyring.volume.dirIds, id)), "");
  return { entry, id };
}

async function makeFile(
  keyring: Keyring,
  geometry: ContentGeometry,
  dir: string,
  dirId: Buffer,
  name: string,
): Promise<string> {
  const entry = entryOf(keyring, dirId, name);
  const { bytes, header } = createHeader(keyring, { blockSize: B });
  const file = { fileKey: header.fileKey, fileId: header.fileId, geometry };
  await writeFile(
    join(dir, entry),
    Buffer.concat([bytes, sealBlocks(file, 0, Buffer.from(`content of ${name}`), true)]),
  );
  return entry;
}

/** A copy of `lower/sub` outside the volume, with an orphan sidecar planted in its "inner". */
async function baitCopy(lower: string, sub: string, inner: string): Promise<string> {
  const outside = join(fresh("outside"), "sub");
  cpSync(join(lower, sub), outside, { recursive: true, preserveTimestamps: true });
  await writeFile(join(outside, inner, `cm.L.${"A".repeat(43)}.n`), "bait\n");
  await writeFile(join(outside, "..", "sentinel.txt"), "outside the volume\n");
  return join(outside, "..");
}

describe("a directory swapped for a symlink to an outside copy during the walk", () => {
  it("fsck --repair goes on in the directory it opened; the outside copy is untouched", async () => {
    const { lower, sub, inner } = await raceVolume();
    const outside = await baitCopy(lower, sub, inner);
    const before = snapshot(outside);
    const { keyring } = await unlockVolume(lower, secret());
    try {
      const report = await new Fsck(lower, keyring, B, {
        repair: true,
        progress: onTick(swapper(lower, sub, join(outside, "sub"))),
      }).run();
      expect(report.problems).toEqual([]);
      expect(report.directories).toBe(3);
    } finally {
      keyring.wipe();
    }
    expect(snapshot(outside)).toEqual(before);
  });

  it("rekey rewraps the files of the directory it opened, never the outside copies", async () => {
    const { lower, sub, inner } = await raceVolume();
    const outside = await baitCopy(lower, sub, inner);
    const before = snapshot(outside);
    const unlocked = await unlockVolume(lower, secret());
    try {
      const result = await rekey(unlocked, onTick(swapper(lower, sub, join(outside, "sub"))));
      expect(result.problems).toEqual([]);
      expect(result.rewrapped).toBe(result.files);
    } finally {
      unlocked.close();
    }
    expect(snapshot(outside)).toEqual(before);
  });

  it("upgrade tags the IDs of the directories it opened, never the outside copy's", async () => {
    const fixture = fileURLToPath(new URL("../fixtures/volume-v1", import.meta.url));
    const { passphrase } = JSON.parse(
      readFileSync(new URL("../fixtures/volume-v1.expected.json", import.meta.url), "utf8"),
    ) as { passphrase: string };
    const lower = fresh("v1");
    await cp(fixture, lower, { recursive: true, verbatimSymlinks: true });
    const unlocked = await unlockVolume(lower, {
      kind: "passphrase",
      bytes: Buffer.from(passphrase),
    });
    const docs = lowerEntryFor(
      encryptName(unlocked.keyring.volume.names, unlocked.keyring.volume.rootDirId, "docs"),
    ).entry;
    const outside = fresh("outside");
    cpSync(join(lower, docs), join(outside, "docs"), { recursive: true, preserveTimestamps: true });
    const before = snapshot(outside);
    const swap = swapper(lower, docs, join(outside, "docs"));
    try {
      // Right after "docs" itself, before its subdirectory "deeper".
      await upgrade(unlocked, {
        onStep: (step, dir) => {
          if (step === "entries" && dir === join(lower, docs)) swap();
        },
      });
    } finally {
      unlocked.close();
    }
    expect(snapshot(outside)).toEqual(before);
  });
});
