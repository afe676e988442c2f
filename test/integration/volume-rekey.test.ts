// cryptmount rekey on 10,000 files, killed with SIGKILL at seeded points and
// resumed: the volume stays mountable and readable in between, the final
// state has the new epoch and no rekey in progress, fsck is clean, every file
// reads as written, and no content byte beyond a header was rewritten.

import { rm } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  CLI,
  Sandbox,
  haveFuse,
  listTree,
  seededBytes,
  waitFor,
  sandboxSuite,
} from "../helpers/volume.js";
import {
  checksumTree,
  cli,
  countWrappedUnder,
  expectCliError,
  flipBit,
  fsck,
  headerEpochs,
  info,
  initVolume,
  lowerContentFiles,
  lowerSplit,
  mountVolume,
  prng,
  randInt,
  readConfig,
  sha256Hex,
  startToExit,
  unmountVolume,
  writeFiles,
  writeNamed,
} from "../helpers/volume-tools.js";

const SEED = 0x5eed_2024;
const DIRS = 100;
const PER_DIR = 100;
const FILES = DIRS * PER_DIR;

let sb: Sandbox;

/** Lower tree without the config copies (and their temp files). */
async function treeWithoutConfig(lower: string): Promise<string[]> {
  return (await listTree(lower)).filter((p) => !p.startsWith("cryptmount.conf"));
}

describe.skipIf(!haveFuse)("rekey", () => {
  sandboxSuite("vrekey", (s) => {
    sb = s;
  });

  it(
    "10,000 files: killed at seeded points, resumed, nothing but headers rewritten",
    { timeout: 600_000 },
    async () => {
      const timings: Record<string, number> = {};
      let t0 = Date.now();
      const lap = (what: string) => {
        timings[what] = Date.now() - t0;
        t0 = Date.now();
      };

      // --- a volume of 10,000 small files in 100 directories, written by a bulk writer through a mount
      const { lower } = await initVolume(sb, ["--no-recovery"]);
      let m = await mountVolume(sb, lower);
      const manifest = await writeFiles(m.mountpoint, `rekey-${SEED}`, DIRS, PER_DIR, 400);
      await unmountVolume(sb, m);
      expect(Object.keys(manifest)).toHaveLength(FILES);
      lap("write 10,000 files through a mount");

      const files = lowerContentFiles(lower);
      expect(files).toHaveLength(FILES);
      const absolute = files.map((f) => join(lower, f));
      const before = lowerSplit(lower, files);
      const treeBefore = await treeWithoutConfig(lower);
      for (const { header } of before.values())
        expect(headerEpochs(header)).toEqual([1, undefined]);
      expect((await info(sb, lower)).keyEpoch).toBe(1);
      lap("snapshot the lower tree");

      // --- interrupted runs: SIGKILL once the config records the rekey and N headers carry the new epoch
      const rand = prng(SEED);
      const targets = [0, randInt(rand, 300, 2500), randInt(rand, 3000, 6500)];
      const reached: number[] = [];
      for (const target of targets) {
        const run = startToExit(
          sb,
          process.execPath,
          [CLI, "rekey", "--passfile", sb.passfile, lower],
          { timeoutMs: 300_000 },
        );
        let exited = false;
        void run.done.then(() => (exited = true));
        await waitFor(
          `rekey to rewrap ${target} headers`,
          async () => {
            if (exited)
              throw new Error(`rekey ended before it was killed: ${(await run.done).stderr}`);
            const config = await readConfig(lower).catch(() => undefined);
            if (!config?.rekey) return false;
            return target === 0 || countWrappedUnder(absolute, 2) >= target;
          },
          240_000,
        );
        run.proc.kill("SIGKILL");
        const r = await run.done;
        expect(r.signal, `rekey was killed, not finished: exit ${r.code} ${r.stderr}`).toBe(
          "SIGKILL",
        );
        reached.push(countWrappedUnder(absolute, 2));
      }
      lap("three interrupted rekey runs");
      // Progress is kept across runs (a resumed run does not start over with another epoch).
      expect(reached[1]!).toBeGreaterThanOrEqual(targets[1]!);
      expect(reached[2]!).toBeGreaterThanOrEqual(targets[2]!);
      expect(reached[2]!).toBeLessThan(FILES);

      // --- in the middle of the interrupted rekey
      const middle = await info(sb, lower);
      expect(middle.keyEpoch).toBe(2);
      expect(middle.rekeyInProgress).toEqual({ from: 1, to: 2 });
      // Headers are in every state a kill can leave: old only, new only, or both.
      const states = new Set(
        [...lowerSplit(lower, files).values()].map(({ header }) =>
          JSON.stringify(
            headerEpochs(header)
              .filter((e) => e !== undefined)
              .sort(),
          ),
        ),
      );
      expect(states).toContain("[1]");
      expect(states).toContain("[2]");
      for (const s of states) expect(["[1]", "[2]", "[1,2]"]).toContain(s);

      // fsck: only warnings (file keys still under the old epoch), no errors.
      const mid = await fsck(sb, lower);
      expect(mid.code, JSON.stringify(mid.report.problems.slice(0, 5))).toBe(0);
      // A kill can also land inside an atomic config write and leave its temporary file.
      const kinds = new Set(mid.report.problems.map((p) => `${p.severity}:${p.code}`));
      expect(kinds).toContain("warning:STALE_EPOCH");
      for (const k of kinds) expect(["warning:STALE_EPOCH", "warning:STALE_TEMP"]).toContain(k);
      expect(mid.report.files).toBe(FILES);
      lap("fsck in the middle");

      // Mountable and readable: every file, whatever state its header is in; new files can be written.
      m = await mountVolume(sb, lower);
      expect(await checksumTree(m.mountpoint)).toEqual(manifest);
      const added = seededBytes("written during an interrupted rekey", 5000);
      await writeNamed(m.mountpoint, { "new/added.bin": added });
      // rekey refuses a mounted volume.
      expectCliError(await cli(sb, ["rekey", "--passfile", sb.passfile, lower]), 6, /mounted/);
      await unmountVolume(sb, m);
      lap("mount and read all files in the middle");

      // --- resume to the end
      const resumed = await cli(sb, ["rekey", "--passfile", sb.passfile, lower], {
        timeoutMs: 300_000,
      });
      expect(resumed.code, resumed.stderr).toBe(0);
      const summary = /epoch 1 -> 2, (\d+) of (\d+) file headers rewrapped/.exec(resumed.stdout);
      expect(summary, resumed.stdout).not.toBeNull();
      expect(Number(summary![2])).toBe(FILES + 1);
      // Resumed, not restarted: the files finished before the kills needed nothing.
      expect(Number(summary![1])).toBeLessThan(FILES);
      lap("resumed rekey");

      // --- final state
      const after = await info(sb, lower);
      expect(after.keyEpoch).toBe(2);
      expect(after.rekeyInProgress).toBeUndefined();
      const config = await readConfig(lower);
      expect(config.rekey).toBeUndefined();
      expect(await readConfig(lower, true)).toEqual(config);

      const final = await fsck(sb, lower);
      expect(final.code, JSON.stringify(final.report.problems.slice(0, 5))).toBe(0);
      expect(final.report.problems).toEqual([]);
      expect(final.report.files).toBe(FILES + 1);
      lap("fsck at the end");

      // No data rewrite: same lower names, same sizes, same bytes after each header;
      // each header keeps its file ID and holds one wrap, under epoch 2.
      const treeAfter = await treeWithoutConfig(lower);
      const newEntries = treeAfter.filter((p) => !treeBefore.includes(p));
      expect(treeAfter.filter((p) => treeBefore.includes(p))).toEqual(treeBefore);
      expect(newEntries.length).toBeGreaterThan(0); // the directory and file written in the middle
      const split = lowerSplit(lower, files);
      let headersChanged = 0;
      for (const [path, old] of before) {
        const now = split.get(path)!;
        expect(now.size, path).toBe(old.size);
        expect(now.body, path).toBe(old.body);
        expect(now.header.subarray(0, 24).equals(old.header.subarray(0, 24)), path).toBe(true);
        expect(
          headerEpochs(now.header).filter((e) => e !== undefined),
          path,
        ).toEqual([2]);
        if (!now.header.equals(old.header)) headersChanged++;
      }
      expect(headersChanged).toBe(FILES);
      lap("compare the lower tree");

      m = await mountVolume(sb, lower);
      expect(await checksumTree(m.mountpoint)).toEqual({
        ...manifest,
        "new/added.bin": sha256Hex(added),
      });
      await unmountVolume(sb, m);
      lap("mount and read all files at the end");
      console.log(
        "rekey test timings (ms):",
        JSON.stringify(timings),
        "kill points:",
        JSON.stringify({ targets, reached }),
      );
    },
  );

  it("a file whose header cannot be opened: rekey exits 7, keeps the old key; rerun after removing it finishes", async () => {
    const { lower } = await initVolume(sb, ["--no-recovery", "--block-size", "4096"]);
    let m = await mountVolume(sb, lower);
    const manifest = await writeFiles(m.mountpoint, "rekey-bad", 2, 5, 3000);
    await unmountVolume(sb, m);
    const files = lowerContentFiles(lower);
    const bad = files[3]!;
    await flipBit(join(lower, bad), 24 + 4 + 20);

    const r = await cli(sb, ["rekey", "--passfile", sb.passfile, lower]);
    expect(r.code).toBe(7);
    const lines = r.stderr.trimEnd().split("\n");
    for (const line of lines) expect(line).toMatch(/^cryptmount: /);
    expect(r.stderr).toContain(join(lower, bad));
    expect(lines.at(-1)).toMatch(/unfinished: 1 files could not be rewrapped/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect((await info(sb, lower)).rekeyInProgress).toEqual({ from: 1, to: 2 });

    // The old key is still there: every other file reads (the bad one is EIO).
    m = await mountVolume(sb, lower);
    const sums = await checksumTree(m.mountpoint, undefined, true);
    await unmountVolume(sb, m);
    const failed = Object.entries(sums).filter(([, sum]) => sum.startsWith("error:"));
    expect(failed.map(([, sum]) => sum)).toEqual(["error:EIO"]);
    for (const [path, sum] of Object.entries(sums))
      if (!sum.startsWith("error:")) expect(sum, path).toBe(manifest[path]);
    expect(Object.keys(sums).sort()).toEqual(Object.keys(manifest).sort());
    const { report } = await fsck(sb, lower);
    expect(
      report.problems.filter((p) => p.severity === "error").map((p) => [p.code, p.lower]),
    ).toEqual([["HEADER_AUTH", bad]]);

    await rm(join(lower, bad));
    const again = await cli(sb, ["rekey", "--passfile", sb.passfile, lower]);
    expect(again.code, again.stderr).toBe(0);
    expect((await info(sb, lower)).rekeyInProgress).toBeUndefined();
    const { code, report: clean } = await fsck(sb, lower);
    expect(code).toBe(0);
    expect(clean.problems).toEqual([]);
    m = await mountVolume(sb, lower);
    const remaining = await checksumTree(m.mountpoint);
    await unmountVolume(sb, m);
    expect(Object.keys(remaining)).toHaveLength(Object.keys(manifest).length - 1);
    for (const [path, sum] of Object.entries(remaining)) expect(sum).toBe(manifest[path]);
  });
});
