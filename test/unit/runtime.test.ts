// The runtime directory holding mount records: created 0700 when missing; a
// derived one (XDG_RUNTIME_DIR, /run or the /tmp fallback) that is a symlink,
// owned by someone else or writable by others is refused for writing and
// ignored for reading. CRYPTMOUNT_RUNTIME_DIR is taken as given.
//
// The tests pass their own directories: the real default for root is
// /run/cryptmount, which a test must never touch.

import { chmod, chown, mkdir, mkdtemp, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureRuntimeDir, listRecords, runtimeDir } from "../../src/mount/runtime.js";
import { rejection } from "../helpers/user-error.js";

let temp: string;
let n = 0;
const uid = process.getuid?.() ?? 0;
const fresh = () => join(temp, `cryptmount-${++n}`);

const record = {
  lower: "/l",
  mountpoint: "/m",
  pid: process.pid,
  keySource: "passphrase",
  since: new Date(0).toISOString(),
  readOnly: false,
  allowOther: false,
};

async function withRecord(dir: string): Promise<void> {
  await writeFile(join(dir, "r.json"), JSON.stringify(record));
}

beforeAll(async () => {
  temp = await mkdtemp(join(tmpdir(), "cryptmount-runtime-"));
});
afterAll(async () => {
  await rm(temp, { recursive: true, force: true });
});

describe("runtime directory", () => {
  it("derived from XDG_RUNTIME_DIR (or /tmp) for users, /run/cryptmount for root", () => {
    const saved = { ...process.env };
    try {
      delete process.env.CRYPTMOUNT_RUNTIME_DIR;
      process.env.XDG_RUNTIME_DIR = "/xdg";
      expect(runtimeDir()).toBe(uid === 0 ? "/run/cryptmount" : `/xdg/cryptmount-${uid}`);
      process.env.CRYPTMOUNT_RUNTIME_DIR = "/explicit";
      expect(runtimeDir()).toBe("/explicit");
    } finally {
      process.env.CRYPTMOUNT_RUNTIME_DIR = saved.CRYPTMOUNT_RUNTIME_DIR;
      if (saved.CRYPTMOUNT_RUNTIME_DIR === undefined) delete process.env.CRYPTMOUNT_RUNTIME_DIR;
      process.env.XDG_RUNTIME_DIR = saved.XDG_RUNTIME_DIR;
      if (saved.XDG_RUNTIME_DIR === undefined) delete process.env.XDG_RUNTIME_DIR;
    }
  });

  it("is created 0700 when missing; its records are read", async () => {
    const dir = await ensureRuntimeDir(fresh(), true);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    await withRecord(dir);
    expect(await listRecords(dir, true)).toEqual([record]);
  });

  it("group- or world-writable: refused for writing, ignored for reading", async () => {
    const dir = await ensureRuntimeDir(fresh(), true);
    await withRecord(dir);
    for (const mode of [0o777, 0o770, 0o702, 0o1777]) {
      await chmod(dir, mode);
      const err = await rejection(ensureRuntimeDir(dir, true));
      expect(err.message).toMatch(/refusing the runtime directory .*lets others write/);
      expect(await listRecords(dir, true)).toEqual([]);
    }
    await chmod(dir, 0o700);
    expect(await listRecords(dir, true)).toEqual([record]);
  });

  it("a symlink is refused, even to a private directory", async () => {
    const target = await ensureRuntimeDir(fresh(), true);
    const link = fresh();
    await symlink(target, link);
    expect((await rejection(ensureRuntimeDir(link, true))).message).toMatch(/not a directory/);
    expect(await listRecords(link, true)).toEqual([]);
  });

  it.skipIf(uid !== 0)("a directory owned by another user is refused", async () => {
    const dir = fresh();
    await mkdir(dir, { mode: 0o700 });
    await chown(dir, 65534, 65534);
    expect((await rejection(ensureRuntimeDir(dir, true))).message).toMatch(/owned by uid 65534/);
  });

  it("an explicit CRYPTMOUNT_RUNTIME_DIR is used as given", async () => {
    const dir = await ensureRuntimeDir(fresh(), false);
    await chmod(dir, 0o755);
    await withRecord(dir);
    expect(await ensureRuntimeDir(dir, false)).toBe(dir);
    expect(await listRecords(dir, false)).toEqual([record]);
  });
});
