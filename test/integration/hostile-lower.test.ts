// Targeted attacks by whoever can write the lower directory of a *mounted*
// volume (docs/format.md §18: a sync client, a cloud disk, a shared group
// directory): lower entries swapped for symlinks to things outside the lower
// or for FIFOs, forged and copied directory IDs, and names the format cannot
// represent (invalid UTF-8). The filesystem must refuse with an errno, never
// act outside the lower, never hang, and log each refusal without pairing a
// cleartext name with its lower name.
//
// Everything that goes through the mount goes through a child process (the
// python3 client of test/helpers/mount_client.py, or ls/cat/stat), each
// request with a deadline; the test process itself touches only the lower
// and the canaries.

import { randomBytes } from "node:crypto";
import { open, readdir, rename, rm, symlink, unlink, utimes, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import * as xattr from "fs-xattr";
import { afterEach, describe, expect, it } from "vitest";
import {
  MountClient,
  b64,
  mkfifo,
  outcome,
  releaseFifos,
  rescue,
  runGuarded,
  treeSnapshot,
  type ClientReply,
  type ClientRequest,
} from "../helpers/hostile.js";
import {
  Sandbox,
  haveFuse,
  isMounted,
  newLowerEntries,
  readLog,
  run,
  sandboxSuite,
  sleep,
  type LogRecord,
  type Mounted,
} from "../helpers/volume.js";
import { fsck } from "../helpers/volume-tools.js";

let sb: Sandbox;
const clients: MountClient[] = [];
/** Every log file this suite's mounts wrote, and the (cleartext name, lower name) pairs we know of. */
const logs = new Set<string>();
const pairs: { clear: string; lower: string }[] = [];

/** Longer than the kernel's 1 s entry and attribute timeouts: the next access asks the server again. */
const CACHE_EXPIRY_MS = 1_200;
const DEADLINE_MS = 5_000;

interface Volume {
  m: Mounted;
  c: MountClient;
  /** Path in the mount of a cleartext path. */
  at: (rel: string) => string;
}

async function volume(): Promise<Volume> {
  const lower = await sb.createVolume();
  const m = await sb.mount(lower);
  logs.add(m.logFile);
  const c = new MountClient();
  clients.push(c);
  return { m, c, at: (rel) => join(m.mountpoint, rel) };
}

async function must(c: MountClient, req: ClientRequest, what = req.op): Promise<ClientReply> {
  const r = await c.request(req, DEADLINE_MS);
  if (!r.ok) throw new Error(`${what} ${req.path ?? ""} failed: ${outcome(r)} ${r.error ?? ""}`);
  return r;
}

/**
 * Runs `action` (something through the mount) and returns the lower entries
 * it created, relative to the lower; records the cleartext/lower name pair
 * for the log hygiene check when it is one entry.
 */
async function lowerOf(v: Volume, clearName: string, action: () => Promise<unknown>) {
  const added = await newLowerEntries(v.m.lower, action);
  const main = added.filter((p) => !p.endsWith(".n") && !basename(p).startsWith("cm.d."));
  for (const p of main) pairs.push({ clear: clearName, lower: basename(p) });
  return { added, main: main[0]! };
}

async function createFile(v: Volume, rel: string, content: string | Buffer) {
  const { main } = await lowerOf(v, basename(rel), () =>
    must(v.c, { op: "create", path: v.at(rel), data: b64(content) }),
  );
  expect(main, `lower entry of ${rel}`).toBeDefined();
  return join(v.m.lower, main);
}

async function createDir(v: Volume, rel: string): Promise<string> {
  const { main } = await lowerOf(v, basename(rel), () =>
    must(v.c, { op: "mkdir", path: v.at(rel) }),
  );
  expect(main, `lower entry of ${rel}`).toBeDefined();
  return join(v.m.lower, main);
}

/** A fresh canary directory outside the lower: a file with a mode, an xattr and old times. */
async function canary(keepName: string): Promise<{ dir: string; file: string; before: string[] }> {
  const dir = await sb.mkdir("canary");
  const file = join(dir, "precious.txt");
  await writeFile(file, "canary content\n", { mode: 0o640 });
  // Under the lower name of user.keep (an attacker sees it on any lower file), so a
  // removexattr of user.keep that followed the symlink would remove it.
  await xattr.setAttribute(file, keepName, "precious");
  await xattr.setAttribute(file, "user.unrelated", "original");
  await utimes(file, 1_500_000_000, 1_500_000_000);
  await utimes(dir, 1_500_000_000, 1_500_000_000);
  return { dir, file, before: treeSnapshot(dir) };
}

/** The lower name of a cleartext xattr name: set it on a file through the mount and look. */
async function lowerXattrName(v: Volume, name: string): Promise<string> {
  const lowerPath = await createFile(v, "xattr-probe.txt", "probe");
  await must(v.c, { op: "setxattr", path: v.at("xattr-probe.txt"), name, data: b64("v") });
  const names = (await xattr.listAttributes(lowerPath)).filter((n) => n.startsWith("user.cm."));
  expect(names).toHaveLength(1);
  return names[0]!;
}

/** Records with level warn or above, written after the first `skip` records. */
async function warningsSince(logFile: string, skip: number): Promise<LogRecord[]> {
  return (await readLog(logFile)).slice(skip).filter((r) => r.level >= 40);
}

/** Replaces a lower entry (file or directory) by a symlink to `target`. */
async function swapForSymlink(lowerPath: string, target: string): Promise<void> {
  await rm(lowerPath, { recursive: true, force: true });
  await symlink(target, lowerPath);
}

const FILE_ATTACKS: [string, ClientRequest][] = [
  ["chmod", { op: "chmod", mode: 0o666 }],
  ["chown", { op: "chown", uid: 4321, gid: 4321 }],
  ["truncate", { op: "truncate", size: 0 }],
  ["open for write", { op: "open_write" }],
  ["open O_TRUNC", { op: "open_trunc" }],
  ["write", { op: "write", data: b64("overwritten through the mount") }],
  ["setxattr", { op: "setxattr", name: "user.x", data: b64("set through the mount") }],
  ["removexattr", { op: "removexattr", name: "user.keep" }],
  ["utime", { op: "utime", time: 123_456_789 }],
];

describe.skipIf(!haveFuse)("hostile lower directory of a mounted volume", () => {
  sandboxSuite("hostile", (s) => {
    sb = s;
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close();
  });

  it("a lower file swapped for a symlink to an outside canary: every modifying operation fails and the canary is untouched", async () => {
    const v = await volume();
    const keepName = await lowerXattrName(v, "user.keep");
    const logStart = (await readLog(v.m.logFile)).length;
    const table: Record<string, string> = {};
    const problems: string[] = [];
    const check = (label: string, r: ClientReply, before: string[], dir: string) => {
      table[label] = outcome(r);
      if (r.timeout) problems.push(`${label}: hung`);
      else if (r.ok) problems.push(`${label}: succeeded`);
      const after = treeSnapshot(dir);
      if (JSON.stringify(after) !== JSON.stringify(before))
        problems.push(
          `${label}: canary changed:\n  before ${before.join("\n  ")}\n  after  ${after.join("\n  ")}`,
        );
    };

    // Warm: the kernel still trusts its cached entry (a regular file) and sends the
    // operation straight to the server, which must not follow the new symlink.
    for (const [name, req] of FILE_ATTACKS) {
      const slug = name.replace(/\W+/g, "-");
      const lowerPath = await createFile(v, `warm-${slug}.txt`, "victim content");
      const target = await canary(keepName);
      await must(v.c, { op: "stat", path: v.at(`warm-${slug}.txt`) });
      await swapForSymlink(lowerPath, target.file);
      const r = await v.c.request({ ...req, path: v.at(`warm-${slug}.txt`) }, DEADLINE_MS);
      check(`${name} (cached entry)`, r, target.before, target.dir);
    }
    // Cold: the kernel looks the name up again and sees whatever the server says.
    const cold: { name: string; req: ClientRequest; target: Awaited<ReturnType<typeof canary>> }[] =
      [];
    for (const [name, req] of FILE_ATTACKS) {
      const slug = name.replace(/\W+/g, "-");
      const lowerPath = await createFile(v, `cold-${slug}.txt`, "victim content");
      const target = await canary(keepName);
      await swapForSymlink(lowerPath, target.file);
      cold.push({ name, req: { ...req, path: v.at(`cold-${slug}.txt`) }, target });
    }
    await sleep(CACHE_EXPIRY_MS);
    for (const { name, req, target } of cold) {
      const r = await v.c.request(req, DEADLINE_MS);
      check(`${name} (fresh lookup)`, r, target.before, target.dir);
    }
    console.log("file swapped for a symlink to a canary, outcome per operation:", table);
    expect.soft(problems).toEqual([]);
    // The server is still fine, and it said something about the refusals.
    await createFile(v, "after.txt", "still works");
    expect((await must(v.c, { op: "read", path: v.at("after.txt") })).size).toBe(11);
    expect(await warningsSince(v.m.logFile, logStart), "warn/error records").not.toEqual([]);
  });

  it("a lower directory swapped for a symlink to an outside directory: creating, renaming and removing in it touch nothing outside", async () => {
    const v = await volume();
    const logStart = (await readLog(v.m.logFile)).length;
    const table: Record<string, string> = {};
    const problems: string[] = [];

    for (const state of ["cached entry", "fresh lookup"] as const) {
      const d = state === "cached entry" ? "warmdir" : "colddir";
      const lowerDir = await createDir(v, d);
      await createFile(v, `${d}/a.txt`, "file a");
      await createFile(v, `${d}/b.txt`, "file b");
      await must(v.c, { op: "mkdir", path: v.at(`${d}/sub`) });
      // The outside directory looks exactly like the lower one (an attacker can copy
      // it), plus a canary of its own.
      const outside = await sb.mkdir("outside");
      const cp = await run("cp", ["-a", lowerDir + "/.", outside]);
      expect(cp.code, cp.stderr).toBe(0);
      await writeFile(join(outside, "canary.txt"), "outside\n");
      await utimes(outside, 1_500_000_000, 1_500_000_000);
      const before = treeSnapshot(outside);

      for (const name of ["a.txt", "b.txt", "sub"])
        await must(v.c, { op: "stat", path: v.at(`${d}/${name}`) });
      await swapForSymlink(lowerDir, outside);
      if (state === "fresh lookup") await sleep(CACHE_EXPIRY_MS);

      const attacks: [string, ClientRequest][] = [
        ["create", { op: "create_excl", path: v.at(`${d}/new.txt`), data: b64("new") }],
        ["rename", { op: "rename", path: v.at(`${d}/a.txt`), to: v.at(`${d}/renamed.txt`) }],
        ["rename out", { op: "rename", path: v.at(`${d}/a.txt`), to: v.at(`${d}-moved-out.txt`) }],
        ["unlink", { op: "unlink", path: v.at(`${d}/b.txt`) }],
        ["mkdir", { op: "mkdir", path: v.at(`${d}/newdir`) }],
        ["rmdir", { op: "rmdir", path: v.at(`${d}/sub`) }],
      ];
      for (const [name, req] of attacks) {
        const r = await v.c.request(req, DEADLINE_MS);
        const label = `${name} (${state})`;
        table[label] = outcome(r);
        if (r.timeout) problems.push(`${label}: hung`);
        else if (r.ok) problems.push(`${label}: succeeded`);
      }
      const after = treeSnapshot(outside);
      if (JSON.stringify(after) !== JSON.stringify(before))
        problems.push(
          `${state}: outside directory changed:\n  before ${before.join("\n  ")}\n  after  ${after.join("\n  ")}`,
        );
    }
    console.log("directory swapped for a symlink to an outside directory, outcomes:", table);
    expect.soft(problems).toEqual([]);
    expect(await warningsSince(v.m.logFile, logStart), "warn/error records").not.toEqual([]);
  });

  it("a long-name sidecar and a lower file replaced by FIFOs: ls -l, cat and stat return promptly, the server keeps answering, umount works", async () => {
    const v = await volume();
    const logStart = (await readLog(v.m.logFile)).length;
    const long = "L".repeat(120) + ".txt"; // > 111 bytes: a cm.L. entry with a sidecar
    await must(v.c, { op: "mkdir", path: v.at("dir") });
    const { added } = await lowerOf(v, long, () =>
      must(v.c, { op: "create", path: v.at(`dir/${long}`), data: b64("long") }),
    );
    const sidecar = added.find((p) => p.endsWith(".n"));
    expect(sidecar, `sidecar among ${added.join(", ")}`).toBeDefined();
    const plainLower = await createFile(v, "dir/plain.txt", "plain");
    await createFile(v, "other.txt", "bystander");
    const fifos = [join(v.m.lower, sidecar!), plainLower];
    for (const f of fifos) {
      await unlink(f);
      await mkfifo(f);
    }
    await sleep(CACHE_EXPIRY_MS);

    const table: Record<string, string> = {};
    const hung: string[] = [];
    let aborted = false;
    const attempt = async (label: string, cmd: string, args: string[]) => {
      if (aborted) {
        table[label] = "not tried: connection aborted";
        return;
      }
      const r = await runGuarded(
        cmd,
        args,
        DEADLINE_MS,
        async () => {
          hung.push(label);
          releaseFifos(fifos); // a server stuck opening a FIFO gets going again
        },
        async () => {
          aborted = true;
          await rescue(v.m.mountpoint, fifos);
        },
      );
      if (r.hung && !hung.includes(label)) hung.push(label);
      table[label] = r.hung
        ? `HUNG (then ${r.result ? "returned" : "aborted"})`
        : r.result!.code === 0
          ? "ok"
          : `exit ${r.result!.code}: ${r.result!.stderr.trim()}`;
    };
    await attempt("stat dir/plain.txt", "stat", [v.at("dir/plain.txt")]);
    await attempt("ls -l dir", "ls", ["-l", v.at("dir")]);
    await attempt("cat dir/plain.txt", "cat", [v.at("dir/plain.txt")]);
    await attempt("stat dir/<long>", "stat", [v.at(`dir/${long}`)]);
    await attempt("cat dir/<long>", "cat", [v.at(`dir/${long}`)]);
    await attempt("ls -l dir (again)", "ls", ["-l", v.at("dir")]);
    await attempt("find", "find", [v.m.mountpoint, "-ls"]);
    console.log("FIFOs in the lower, outcome per command:", table);

    // The server still answers other requests.
    const other = await v.c.request({ op: "read", path: v.at("other.txt") }, DEADLINE_MS);
    const alive = other.ok && other.size === 9;
    if (!alive) await rescue(v.m.mountpoint, fifos);
    expect.soft(hung, "commands that did not return within 5 s").toEqual([]);
    expect(alive, `read of another file afterwards: ${JSON.stringify(other)}`).toBe(true);
    expect.soft(await warningsSince(v.m.logFile, logStart), "warn/error records").not.toEqual([]);

    // And it unmounts normally.
    await v.c.close();
    const unmounted = await Promise.race([
      sb.unmount(v.m).then(
        () => "ok",
        (e: unknown) => String(e),
      ),
      sleep(20_000).then(() => "timed out"),
    ]);
    if (unmounted !== "ok") await rescue(v.m.mountpoint, fifos);
    expect(unmounted).toBe("ok");
    expect(isMounted(v.m.mountpoint)).toBe(false);
  }, 120_000);

  for (const form of ["v1 (16 bytes, 22 characters)", "32 bytes (43 characters)"] as const) {
    it(`a forged directory ID, ${form}, planted in two directories is never used for new names`, async () => {
      const v = await volume();
      const lowerA = await createDir(v, "A");
      const lowerB = await createDir(v, "B");
      await createFile(v, "A/kept.txt", "kept A");
      await createFile(v, "B/kept.txt", "kept B");
      /** Creates same.txt in `dir`, returns its lower name, deletes it. */
      const sameName = async (dir: "A" | "B") => {
        const { main } = await lowerOf(v, "same.txt", () =>
          must(v.c, { op: "create_excl", path: v.at(`${dir}/same.txt`), data: b64(dir) }),
        );
        await must(v.c, { op: "unlink", path: v.at(`${dir}/same.txt`) });
        return basename(main);
      };
      const genuine = { A: await sameName("A"), B: await sameName("B") };
      expect(genuine.A).not.toBe(genuine.B);

      // Random, but sorting before any genuine ID: v1 encodes new names under the smallest.
      const id = randomBytes(form.startsWith("v1") ? 16 : 32);
      id[0] = 0;
      const forged = "cm.d." + id.toString("base64url");
      expect(forged).toHaveLength(form.startsWith("v1") ? 27 : 48);
      for (const d of [lowerA, lowerB]) await writeFile(join(d, forged), "", { mode: 0o444 });

      const observed: Record<string, { A: string; B: string }> = {};
      observed["while mounted"] = { A: await sameName("A"), B: await sameName("B") };
      await v.c.close();
      v.m = await sb.remount(v.m);
      v.c = new MountClient();
      clients.push(v.c);
      observed["after a remount"] = { A: await sameName("A"), B: await sameName("B") };
      for (const [when, names] of Object.entries(observed)) {
        expect(names.A, `A/same.txt ${when}`).not.toBe(names.B);
        expect(names, `lower names ${when}: the planted ID changed nothing`).toEqual(genuine);
      }
      // Existing files are unaffected.
      for (const d of ["A", "B"]) {
        const r = await must(v.c, { op: "read", path: v.at(`${d}/kept.txt`) });
        expect(r.size).toBe(6);
      }
    });
  }

  it("a genuine directory ID copied into another directory: behaviour documented; fsck reports DUPLICATE_DIR_ID (exit 7)", async () => {
    const v = await volume();
    const lowerX = await createDir(v, "X");
    const lowerY = await createDir(v, "Y");
    await createFile(v, "X/x.txt", "in X");
    const yFile = await createFile(v, "Y/y.txt", "in Y");
    const idOf = async (d: string) => (await readdir(d)).filter((n) => n.startsWith("cm.d."));
    const [xId] = await idOf(lowerX);
    const [yId] = await idOf(lowerY);
    expect(xId).toBeDefined();
    await writeFile(join(lowerY, xId!), "", { mode: 0o444 });

    await v.c.close();
    v.m = await sb.remount(v.m);
    v.c = new MountClient();
    clients.push(v.c);
    // Observe: which ID do new names in Y get, and does an entry moved from X show up in Y?
    const yNew = basename(
      (await lowerOf(v, "new.txt", () => must(v.c, { op: "create_excl", path: v.at("Y/new.txt") })))
        .main,
    );
    const xNew = basename(
      (await lowerOf(v, "new.txt", () => must(v.c, { op: "create_excl", path: v.at("X/new.txt") })))
        .main,
    );
    const yListing = await must(v.c, { op: "listdir", path: v.at("Y") });
    const yOld = await v.c.request({ op: "read", path: v.at("Y/y.txt") }, DEADLINE_MS);
    console.log("genuine ID copied from X into Y:", {
      xIdSmaller: xId! < yId!,
      newNamesInYUseXsId: yNew === xNew,
      yListing: (yListing.names ?? []).map((n) => Buffer.from(n, "base64").toString()),
      existingFileInY: outcome(yOld),
      yFileStillThere: basename(yFile),
    });

    await v.c.close();
    await sb.unmount(v.m);
    const { code, report } = await fsck(sb, v.m.lower);
    const codes = report.problems.map((p) => p.code);
    console.log("fsck after copying a directory ID:", code, codes);
    expect.soft(codes).toContain("DUPLICATE_DIR_ID");
    expect(code).toBe(7);
  });

  it("invalid UTF-8 names: creating a\\xff fails with EILSEQ, a\\xfe never opens a\\xff, no name lists as U+FFFD", async () => {
    const v = await volume();
    await must(v.c, { op: "mkdir", path: v.at("u") });
    const raw = (name: Buffer) => b64(Buffer.concat([Buffer.from(v.at("u") + "/"), name]));
    const ff = await v.c.request(
      { op: "create_excl", pathb64: raw(Buffer.from([0x61, 0xff])), data: b64("first") },
      DEADLINE_MS,
    );
    const fe = await v.c.request(
      { op: "create_excl", pathb64: raw(Buffer.from([0x61, 0xfe])), data: b64("second") },
      DEADLINE_MS,
    );
    const readFf = await v.c.request(
      { op: "read", pathb64: raw(Buffer.from([0x61, 0xff])) },
      DEADLINE_MS,
    );
    const listing = await must(v.c, { op: "listdir", path: v.at("u") });
    const names = (listing.names ?? []).map((n) => Buffer.from(n, "base64"));
    console.log("invalid UTF-8 names:", {
      "create a\\xff": outcome(ff),
      "create a\\xfe": outcome(fe),
      "read a\\xff afterwards": readFf.ok ? `${readFf.size} bytes` : outcome(readFf),
      listing: names.map((n) => n.toString("hex")),
    });
    expect.soft(outcome(ff), "O_CREAT of a\\xff").toBe("EILSEQ");
    expect.soft(outcome(fe), "O_CREAT|O_EXCL of a\\xfe must not find a\\xff").not.toBe("EEXIST");
    if (readFf.ok) expect(readFf.size, "a\\xff was opened by the create of a\\xfe").toBe(5);
    const replacement = Buffer.from("\ufffd");
    expect(names.filter((n) => n.includes(replacement)).map((n) => n.toString("hex"))).toEqual([]);
  });

  it("log hygiene: refusals are logged, and no record pairs a cleartext name with its lower name", async () => {
    // Provoke the usual refusals with distinctive names: a moved entry (hidden), a
    // corrupt block, a corrupt header, a symlink swap.
    const v = await volume();
    await createDir(v, "hygiene-source-dir");
    const lowerTarget = await createDir(v, "hygiene-target-dir");
    const moved = await createFile(v, "hygiene-source-dir/hygiene-moved-file.txt", "moved");
    const corrupt = await createFile(v, "hygiene-corrupt-file.bin", Buffer.alloc(5000, 7));
    const swapped = await createFile(v, "hygiene-swapped-file.txt", "swapped");
    await rename(moved, join(lowerTarget, basename(moved)));
    const fh = await open(corrupt, "r+");
    await fh.write(Buffer.from([0xaa]), 0, 1, 200);
    await fh.close();
    await swapForSymlink(swapped, "/etc/hostname");
    await sleep(CACHE_EXPIRY_MS);
    await v.c.request({ op: "listdir", path: v.at("hygiene-target-dir") }, DEADLINE_MS);
    await v.c.request({ op: "read", path: v.at("hygiene-corrupt-file.bin") }, DEADLINE_MS);
    await v.c.request({ op: "readlink", path: v.at("hygiene-swapped-file.txt") }, DEADLINE_MS);
    await v.c.request(
      { op: "chmod", path: v.at("hygiene-swapped-file.txt"), mode: 0o600 },
      DEADLINE_MS,
    );
    await readLog(v.m.logFile, (r) => r.level >= 40);

    const offending: string[] = [];
    let records = 0;
    for (const file of logs) {
      for (const record of await readLog(file)) {
        records++;
        const text = JSON.stringify(record);
        for (const { clear, lower } of pairs) {
          if (clear.length >= 4 && text.includes(clear) && text.includes(lower))
            offending.push(`${clear} with ${lower}: ${text}`);
        }
      }
    }
    expect(pairs.length).toBeGreaterThan(5);
    expect(records).toBeGreaterThan(0);
    expect(offending).toEqual([]);
  });
});
