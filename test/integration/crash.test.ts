// kill -9 of the server in the middle of heavy writes. After cleaning up
// the dead mount and mounting again: files written and closed before are
// intact; everything acknowledged to a writer is there; every other byte
// either reads back as what was written (the files hold a known pattern,
// test/helpers/pattern.py) or fails with EIO, and only in the blocks that
// were being written. Never garbage.

import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  HELPERS,
  abortConnection,
  Sandbox,
  haveFuse,
  isMounted,
  mountEntry,
  run,
  runOk,
  start,
  waitFor,
  waitForExit,
  type Started,
  sandboxSuite,
} from "../helpers/volume.js";

const B = 32 * 1024;
const MiB = 1024 * 1024;
const pattern = join(HELPERS, "pattern.py");

let sb: Sandbox;

interface Verified {
  size: number;
  bad: number[];
  mismatch: number[];
  open_error: string | null;
  errors: string[];
}

/** Sizes of the files written and closed before the crash. */
const STABLE: Record<string, number> = {
  empty: 0,
  "one-byte": 1,
  "one-block": B,
  "block-edge": 3 * B - 1,
  middling: 200_000,
  big: 3 * MiB + 12_345,
};

/** The highest "acked N" a writer printed. */
function acked(stdout: string): number {
  let n = 0;
  for (const m of stdout.matchAll(/^acked (\d+)$/gm)) n = Math.max(n, Number(m[1]));
  return n;
}

describe.skipIf(!haveFuse)("crash: kill -9 of the server during writes", () => {
  sandboxSuite("crash", (s) => {
    sb = s;
  });

  it("closed files are intact; acknowledged appends survive; the rest is the pattern or EIO", async () => {
    const lower = await sb.createVolume();
    const m = await sb.mount(lower);
    const mnt = m.mountpoint;
    await runOk("mkdir", [join(mnt, "stable"), join(mnt, "heavy")]);
    for (const [name, size] of Object.entries(STABLE)) {
      await runOk("python3", [pattern, "create", join(mnt, "stable", name), String(size)]);
    }
    const rewritten = join(mnt, "heavy", "rewritten");
    await runOk("python3", [pattern, "create", rewritten, String(2 * MiB + 77)]);
    const before = await runOk("sh", ["-c", `cd '${mnt}/stable' && sha256sum *`]);

    // Heavy writes: three appenders with unaligned 100000-byte writes, one
    // in-place rewriter. None of them would finish before the kill.
    const appenders: Started[] = [0, 1, 2].map((i) =>
      start(
        "python3",
        [pattern, "append", join(mnt, "heavy", `append-${i}`), "100000", String(512 * MiB)],
        {
          timeoutMs: 120_000,
        },
      ),
    );
    const rewriter = start("python3", [pattern, "rewrite", rewritten, "1", "1000000"], {
      timeoutMs: 120_000,
    });
    const out = appenders.map(() => "");
    appenders.forEach((a, i) => a.proc.stdout!.on("data", (c: Buffer) => (out[i] += c.toString())));

    // Kill once every appender has had 3 MiB acknowledged.
    await waitFor(
      "the appenders to get going",
      () => out.every((o) => acked(o) >= 3 * MiB),
      60_000,
    );
    process.kill(m.pid, "SIGKILL");
    expect(await waitForExit(m.pid)).toBe(true);

    const results = await Promise.all([...appenders.map((a) => a.done), rewriter.done]);
    for (const r of results) {
      // Killed mid-write: every writer sees its file system go away.
      expect(r.stdout, r.stderr).toMatch(/^error (ENOTCONN|EIO|ECONNABORTED)$/m);
    }
    const ackedBytes = results.slice(0, 3).map((r) => acked(r.stdout));

    // The dead mount is still in the table; detach it and mount again.
    expect(isMounted(mnt)).toBe(true);
    const stat = await run("stat", [mnt]);
    expect(stat.stderr).toMatch(/Transport endpoint is not connected/);
    await runOk("fusermount", ["-uz", mnt]);
    expect(mountEntry(mnt)).toBeUndefined();
    sb.forget(mnt);
    const again = await sb.mount(lower, { mountpoint: mnt });

    // Closed before the heavy writes began: intact.
    expect(await runOk("sh", ["-c", `cd '${mnt}/stable' && sha256sum *`])).toBe(before);

    const verified = JSON.parse(
      await runOk("python3", [pattern, "verify", mnt], { timeoutMs: 120_000 }),
    ) as Record<string, Verified>;
    expect(Object.keys(verified).sort()).toEqual(
      [
        ...Object.keys(STABLE).map((n) => `stable/${n}`),
        "heavy/append-0",
        "heavy/append-1",
        "heavy/append-2",
        "heavy/rewritten",
      ].sort(),
    );
    for (const [path, v] of Object.entries(verified)) {
      // Never garbage, and no error but EIO.
      expect(v.mismatch, path).toEqual([]);
      expect(v.errors, path).toEqual([]);
      if (path.startsWith("stable/")) {
        expect(v, path).toMatchObject({ size: STABLE[path.slice(7)], bad: [], open_error: null });
      }
    }
    ackedBytes.forEach((n, i) => {
      const v = verified[`heavy/append-${i}`]!;
      // A torn lower write can leave a length no valid file has: then the
      // whole file refuses to open (EIO), as it must rather than guess.
      if (v.open_error !== null) {
        expect(v.open_error).toBe("EIO");
        return;
      }
      // Acknowledged writes were on the lower file before the reply.
      expect(v.size, `append-${i}`).toBeGreaterThanOrEqual(n);
      // Only the blocks of the last write can be damaged: at most one
      // 100000-byte write plus the partial block before it.
      const firstBad = Math.min(...v.bad);
      if (v.bad.length > 0)
        expect(firstBad, `append-${i}`).toBeGreaterThanOrEqual(Math.floor(n / B) - 1);
    });
    const rw = verified["heavy/rewritten"]!;
    expect(rw.open_error).toBeNull();
    expect(rw.size).toBe(2 * MiB + 77);
    // One torn write covers at most 3 blocks of data plus its edges.
    if (rw.bad.length > 0) expect(Math.max(...rw.bad) - Math.min(...rw.bad)).toBeLessThanOrEqual(4);

    // The volume works normally afterwards.
    await runOk("python3", [pattern, "create", join(mnt, "stable", "after-crash"), String(B + 1)]);
    const after = JSON.parse(
      await runOk("python3", [pattern, "verify", join(mnt, "stable")]),
    ) as Record<string, Verified>;
    expect(after["after-crash"]).toMatchObject({
      size: B + 1,
      bad: [],
      mismatch: [],
      open_error: null,
    });
    await sb.unmount(again);
  }, 180_000);

  it("a hung (stopped) server: its connection is aborted, waiting programs get ENOTCONN, cleanup works", async () => {
    const lower = await sb.createVolume();
    const m = await sb.mount(lower);
    await runOk("sh", ["-c", `printf data > '${m.mountpoint}/file'`]);
    process.kill(m.pid, "SIGSTOP");
    try {
      // A program that touches the mount now waits for the server...
      const stuck = start("cat", [join(m.mountpoint, "file")], { timeoutMs: 60_000 });
      let exited = false;
      void stuck.done.then(() => (exited = true));
      await new Promise((r) => setTimeout(r, 300));
      expect(exited).toBe(false);
      // ...until the connection is aborted.
      expect(await abortConnection(m.mountpoint)).toBe(true);
      const r = await stuck.done;
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(
        /Transport endpoint is not connected|Software caused connection abort/,
      );
    } finally {
      // unmountAll (afterEach) must cope with the stopped server: lazy unmount, SIGKILL.
      await sb.unmountAll();
    }
    expect(isMounted(m.mountpoint)).toBe(false);
    expect(await waitForExit(m.pid)).toBe(true);
  });
});
