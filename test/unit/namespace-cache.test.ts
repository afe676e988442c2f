// The namespace caches locations by cleartext path and directory IDs by lower
// path. These tests drive CryptFs in process (no FUSE) through the sequences
// that would serve a stale location if an invalidation were missing: a
// directory removed and made again at the same path, a directory moved away,
// changed and moved back, two directories trading places. Each runs on both
// lower I/O flavours.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { Keyring } from "../../src/crypto/keys.js";
import { CryptFs } from "../../src/fs/crypt-fs.js";
import { toErrno } from "../../src/fs/errors.js";
import { asyncLowerIo, directLowerIo } from "../../src/fs/lower-io.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const O_WRONLY = 0o1;
const O_EXCL = 0o200;

function volume(io: typeof directLowerIo): CryptFs {
  const root = mkdtempSync(join(tmpdir(), "cm-nscache-"));
  dirs.push(root);
  const keyring = new Keyring(
    Buffer.alloc(16, 1),
    1,
    new Map([[1, Buffer.alloc(32, 2)]]),
    Buffer.alloc(32, 3),
  );
  return new CryptFs(root, keyring, 4096, pino({ level: "silent" }), { io });
}

async function touch(fs: CryptFs, path: string, text = path): Promise<void> {
  const fh = await fs.create(path, 0o644, O_WRONLY | O_EXCL);
  await fs.write(path, fh, Buffer.from(text), text.length, 0);
  await fs.release(path, fh);
}

async function read(fs: CryptFs, path: string): Promise<string> {
  const fh = await fs.open(path, 0);
  try {
    return (await fs.read(path, fh, 1000, 0)).toString();
  } finally {
    await fs.release(path, fh);
  }
}

/** A volume holding the file at `/d1/d2/name`, read once so that its location is cached. */
async function volumeWith(io: typeof directLowerIo, file: string): Promise<CryptFs> {
  const fs = volume(io);
  const parts = file.split("/").filter(Boolean);
  for (let i = 1; i < parts.length; i++) await fs.mkdir("/" + parts.slice(0, i).join("/"), 0o755);
  await touch(fs, file);
  expect(await read(fs, file)).toBe(file);
  return fs;
}

const names = async (fs: CryptFs, path: string) => (await fs.list(path)).map((e) => e.name).sort();
const missing = (p: Promise<unknown>) => p.then(() => "exists", toErrno);

describe.each([
  ["inline", directLowerIo],
  ["threadpool", asyncLowerIo],
])("namespace caches (%s I/O)", (_label, io) => {
  it("a directory removed and made again at the same path shows only its new entries", async () => {
    const fs = await volumeWith(io, "/a/x/old");
    await fs.unlink("/a/x/old");
    await fs.rmdir("/a/x");
    await fs.mkdir("/a/x", 0o755);
    await touch(fs, "/a/x/new");
    expect(await names(fs, "/a/x")).toEqual(["new"]);
    expect(await read(fs, "/a/x/new")).toBe("/a/x/new");
    expect(await missing(fs.getattr("/a/x/old"))).toBe("ENOENT");
  });

  it("a directory moved away, changed there and moved back shows its changes", async () => {
    const fs = await volumeWith(io, "/a/x/f");
    await fs.rename("/a", "/b");
    expect(await missing(fs.getattr("/a/x/f"))).toBe("ENOENT");
    await fs.unlink("/b/x/f");
    await fs.rmdir("/b/x");
    await fs.mkdir("/b/x", 0o755);
    await touch(fs, "/b/x/g", "g");
    await fs.rename("/b", "/a");
    expect(await names(fs, "/a/x")).toEqual(["g"]);
    expect(await read(fs, "/a/x/g")).toBe("g");
  });

  it("two directories trading places through a third name", async () => {
    const fs = volume(io);
    for (const d of ["/a", "/c"]) {
      await fs.mkdir(d, 0o755);
      await fs.mkdir(`${d}/sub`, 0o755);
      await touch(fs, `${d}/sub/file`, d);
    }
    expect(await read(fs, "/a/sub/file")).toBe("/a");
    expect(await read(fs, "/c/sub/file")).toBe("/c");
    await fs.rename("/a", "/t");
    await fs.rename("/c", "/a");
    await fs.rename("/t", "/c");
    expect(await read(fs, "/a/sub/file")).toBe("/c");
    expect(await read(fs, "/c/sub/file")).toBe("/a");
    await touch(fs, "/a/sub/more", "more");
    expect(await names(fs, "/a/sub")).toEqual(["file", "more"]);
    expect(await names(fs, "/c/sub")).toEqual(["file"]);
  });

  it("a directory replaced by a rename onto it (it was empty) takes the mover's entries", async () => {
    const fs = volume(io);
    await fs.mkdir("/src", 0o755);
    await touch(fs, "/src/kept", "kept");
    await fs.mkdir("/dst", 0o755);
    expect(await missing(fs.getattr("/dst/kept"))).toBe("ENOENT");
    await fs.rename("/src", "/dst");
    expect(await read(fs, "/dst/kept")).toBe("kept");
    expect(await missing(fs.getattr("/src/kept"))).toBe("ENOENT");
  });
});
