// The volume tools against a hostile lower directory (docs/format.md §18.3,
// "The lower directory as an attack surface"): fsck, fsck --repair, rekey and
// upgrade on a volume where a long name's sidecar, a file or a directory ID
// entry was replaced by a FIFO, or a subdirectory by a symlink to a directory
// outside the volume. Each command must return (a deadline per run: a hang is
// a failure, not a stuck suite), report the entry, and leave everything
// outside the lower as it was.
//
// No mount: the commands run as child processes on copies of the checked-in
// fixtures (version 2 for fsck and rekey, version 1 for upgrade).

import { readFileSync } from "node:fs";
import { lstat, readdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { readDirIds } from "../../src/format/dir-ids.js";
import { classifyLowerEntry, encryptName, lowerEntryFor } from "../../src/format/names.js";
import { unlockVolume } from "../../src/volume/volume.js";
import { mkfifo, treeSnapshot } from "../helpers/hostile.js";
import { Sandbox, runOk, sandboxSuite } from "../helpers/volume.js";
import {
  cli,
  realFixtureConflictCopy,
  secretFile,
  type FsckJson,
  type FsckProblem,
} from "../helpers/volume-tools.js";

/** Far more than any of these runs takes; an old build stuck opening a FIFO is killed after it. */
const DEADLINE_MS = 30_000;

const fixturePath = (v: number) =>
  fileURLToPath(new URL(`../fixtures/volume-v${v}`, import.meta.url));
const passphrase = (v: number) =>
  (
    JSON.parse(
      readFileSync(new URL(`../fixtures/volume-v${v}.expected.json`, import.meta.url), "utf8"),
    ) as { passphrase: string }
  ).passphrase;

let sb: Sandbox;
const passfiles = new Map<number, string>();

/** What a fault did to a copy: the entry the tools must report (lower path relative to the root). */
interface Fault {
  readonly lower: string;
  /** The cleartext path fsck gives it, when it has one. */
  readonly path?: string;
}

interface Scenario {
  readonly what: string;
  /** Damages the copy `lower` of the fixture of `version`; `outside` is a directory outside it. */
  inject(lower: string, version: number, outside: string): Promise<Fault>;
}

/** The lower name of a cleartext name in the root. */
async function rootEntry(lower: string, version: number, name: string): Promise<string> {
  const unlocked = await unlockVolume(lower, {
    kind: "passphrase",
    bytes: Buffer.from(passphrase(version)),
  });
  try {
    const { names, rootDirId } = unlocked.keyring.volume;
    return lowerEntryFor(encryptName(names, rootDirId, name)).entry;
  } finally {
    unlocked.close();
  }
}

/** An ID entry of `dir` (relative) that counts under the volume's version. */
async function countingIdEntry(lower: string, version: number, dir: string): Promise<string> {
  const unlocked = await unlockVolume(lower, {
    kind: "passphrase",
    bytes: Buffer.from(passphrase(version)),
  });
  try {
    const key = unlocked.keyring.volume.dirIds;
    const names = await readdir(join(lower, dir));
    const entry = names.find(
      (n) =>
        classifyLowerEntry(n).kind === "dir-id" && readDirIds(key, version, [n]).ids.length === 1,
    );
    if (!entry) throw new Error(`no counting ID entry in ${dir}`);
    return entry;
  } finally {
    unlocked.close();
  }
}

/**
 * The outside tree, after a first look: the first readlink of a copied
 * symlink moves its atime (relatime), later reads do not, so only what the
 * tools do shows as a difference.
 */
function snapshot(dir: string): string[] {
  treeSnapshot(dir);
  return treeSnapshot(dir);
}

async function replaceByFifo(path: string): Promise<void> {
  await rm(path);
  await mkfifo(path);
}

const scenarios: Scenario[] = [
  {
    what: "a FIFO in place of a long name's sidecar",
    async inject(lower) {
      const entry = (await readdir(lower)).find((n) => classifyLowerEntry(n).kind === "long-name");
      if (!entry) throw new Error("the fixture has no long name in its root");
      await replaceByFifo(join(lower, entry + ".n"));
      return { lower: entry + ".n" };
    },
  },
  {
    what: "a FIFO in place of a file",
    async inject(lower, version) {
      const entry = await rootEntry(lower, version, "hello.txt");
      await replaceByFifo(join(lower, entry));
      return { lower: entry, path: "/hello.txt" };
    },
  },
  {
    what: "a FIFO in place of a directory ID entry",
    async inject(lower, version) {
      const docs = await rootEntry(lower, version, "docs");
      const id = await countingIdEntry(lower, version, docs);
      await replaceByFifo(join(lower, docs, id));
      return { lower: `${docs}/${id}`, path: "/docs" };
    },
  },
  {
    what: "a symlink to a directory outside the volume in place of a subdirectory",
    async inject(lower, version, outside) {
      // The outside directory is the real one, IDs, files and all: whatever
      // follows the symlink finds a directory it would check, rewrap or upgrade.
      const docs = await rootEntry(lower, version, "docs");
      await rename(join(lower, docs), join(outside, "docs"));
      await symlink(join(outside, "docs"), join(lower, docs));
      return { lower: docs, path: "/docs" };
    },
  },
];

/** A copy of the fixture of `version` with the scenario's fault, and a directory outside it with a sentinel. */
async function damagedCopy(version: number, scenario: Scenario) {
  const volume = sb.path(`v${version}`);
  await runOk("cp", ["-a", fixturePath(version), volume]);
  await realFixtureConflictCopy(volume);
  const outside = await sb.mkdir("outside");
  await writeFile(join(outside, "sentinel.txt"), "outside the volume\n");
  const fault = await scenario.inject(volume, version, outside);
  return { volume, outside, fault, outsideBefore: snapshot(outside) };
}

async function run(
  version: number,
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const r = await cli(sb, [args[0]!, "--passfile", passfiles.get(version)!, ...args.slice(1)], {
    timeoutMs: DEADLINE_MS,
  });
  expect(r.stderr, "the command returned before its deadline").not.toMatch(/killed after/);
  expect(r.stderr).not.toMatch(/\n\s+at |internal error/);
  return r;
}

async function fsckJson(
  lower: string,
  extra: string[] = [],
): Promise<{ code: number | null; report: FsckJson }> {
  const r = await run(2, ["fsck", "--json", ...extra, lower]);
  let report: FsckJson;
  try {
    report = JSON.parse(r.stdout) as FsckJson;
  } catch {
    throw new Error(`fsck printed no JSON (exit ${r.code}): ${r.stderr}`);
  }
  return { code: r.code, report };
}

/** The v2 fixture's own findings, which every copy shares (foreign entries, its conflict copy, the merge, the planted IDs). */
const baseline = (problems: FsckProblem[]) =>
  problems.filter((p) =>
    ["FOREIGN_ENTRY", "CONFLICT_COPY", "FORGED_DIR_ID", "MERGED_DIR_IDS"].includes(p.code),
  );

describe("volume tools on a hostile lower", () => {
  sandboxSuite("vhostile", async (s) => {
    sb = s;
    for (const v of [1, 2]) passfiles.set(v, await secretFile(sb, `v${v}.pass`, passphrase(v)));
  });

  for (const scenario of scenarios) {
    it(`${scenario.what}: fsck, fsck --repair, rekey and upgrade finish, report it, touch nothing outside`, async () => {
      // --- version 2: fsck, fsck --repair, rekey
      const { volume, outside, fault, outsideBefore } = await damagedCopy(2, scenario);

      const check = await fsckJson(volume);
      expect(check.code).toBe(7);
      const own = check.report.problems.filter((p) => !baseline([p]).length);
      if (scenario.what.startsWith("a symlink")) {
        // To fsck a symlink whose target is not ours: a damaged symlink, never a directory to enter.
        expect(own).toEqual([
          expect.objectContaining({ severity: "error", path: fault.path, lower: fault.lower }),
        ]);
        expect(["NAME_ENCODING", "SYMLINK_AUTH"]).toContain(own[0]!.code);
        expect(check.report.problems.some((p) => p.lower.startsWith(fault.lower + "/"))).toBe(
          false,
        );
      } else {
        expect(own).toEqual([
          expect.objectContaining({
            severity: "error",
            code: "UNEXPECTED_TYPE",
            lower: fault.lower,
            ...(fault.path ? { path: fault.path } : {}),
          }),
        ]);
        expect(own[0]!.message).toMatch(/FIFO/);
      }

      const repair = await fsckJson(volume, ["--repair"]);
      const unrepaired = repair.report.problems.filter(
        (p) => p.severity === "error" && !p.repaired,
      );
      if (scenario.what.includes("directory ID")) {
        // The ID still counts by its name: an empty file takes the FIFO's place.
        expect(repair.code).toBe(0);
        expect(repair.report.problems).toContainEqual(
          expect.objectContaining({ code: "UNEXPECTED_TYPE", lower: fault.lower, repaired: true }),
        );
        const st = await lstat(join(volume, fault.lower));
        expect(st.isFile() && st.size === 0).toBe(true);
        expect((await fsckJson(volume)).report.problems.map((p) => p.code)).not.toContain(
          "UNEXPECTED_TYPE",
        );
      } else {
        expect(repair.code).toBe(7);
        expect(unrepaired.map((p) => p.lower)).toEqual([fault.lower]);
        // Never deleted: it is not the format's to remove.
        await lstat(join(volume, fault.lower));
      }

      const rekey = await run(2, ["rekey", volume]);
      if (scenario.what === "a FIFO in place of a file") {
        // Nothing to rewrap: the old key stays, as for a damaged header.
        expect(rekey.code).toBe(7);
        expect(rekey.stderr).toContain(`${join(volume, fault.lower)}: a FIFO, not a file`);
        expect(rekey.stderr).toMatch(/unfinished: 1 files could not be rewrapped/);
      } else {
        expect(rekey.code, rekey.stderr).toBe(0);
      }
      expect(treeSnapshot(outside)).toEqual(outsideBefore);

      // --- version 1: upgrade
      const v1 = await damagedCopy(1, scenario);
      const old = v1.volume;
      const upgraded = await run(1, ["upgrade", old]);
      if (scenario.what.startsWith("a symlink")) {
        // Not one of ours (its target does not decrypt): left in place, reported, exit 7.
        expect(upgraded.code, upgraded.stderr).toBe(7);
        expect(upgraded.stderr).toMatch(/symlink target does not decrypt; left as it was/);
      } else {
        expect(upgraded.code, upgraded.stderr).toBe(0);
        expect(upgraded.stdout).toMatch(/^Upgraded .* to format version 3/);
      }
      expect(treeSnapshot(v1.outside)).toEqual(v1.outsideBefore);
      if (scenario.what.includes("directory ID")) {
        // The v1 FIFO is gone, its v2 entry (an empty file) in its place.
        await expect(lstat(join(old, v1.fault.lower))).rejects.toMatchObject({ code: "ENOENT" });
      }
    });
  }
});

describe("a FIFO in place of the volume config", () => {
  sandboxSuite("vhostile-config", async (s) => {
    sb = s;
    passfiles.set(2, await secretFile(sb, "v2c.pass", passphrase(2)));
  });

  it("info and fsck answer at once (the backup copy unlocks), never hang in open()", async () => {
    const volume = sb.path("v2c");
    await runOk("cp", ["-a", fixturePath(2), volume]);
    await rm(join(volume, "cryptmount.conf"));
    await mkfifo(join(volume, "cryptmount.conf"));
    const info = await cli(sb, ["info", volume], { timeoutMs: DEADLINE_MS });
    expect(info.code, info.stderr).toBe(0);
    const check = await run(2, ["fsck", volume]);
    expect(check.stderr).toMatch(/using the backup|backup/i);
    await rm(join(volume, "cryptmount.conf.bak"));
    await mkfifo(join(volume, "cryptmount.conf.bak"));
    const refused = await cli(sb, ["info", volume], { timeoutMs: DEADLINE_MS });
    expect(refused.code).toBe(8);
    expect(refused.stderr).toMatch(/cannot read the volume config/);
  });

  it.runIf(process.getuid?.() === 0)(
    "a bind mount that makes a directory contain itself: fsck and rekey stop there, and report it",
    async () => {
      const volume = sb.path("cycle");
      await runOk("cp", ["-a", fixturePath(2), volume]);
      const docs = await rootEntry(volume, 2, "docs");
      const unlocked = await unlockVolume(volume, {
        kind: "passphrase",
        bytes: Buffer.from(passphrase(2)),
      });
      let deeper: string;
      try {
        const docsId = await countingIdEntry(volume, 2, docs);
        const id = readDirIds(unlocked.keyring.volume.dirIds, 2, [docsId]).ids[0]!;
        deeper = lowerEntryFor(encryptName(unlocked.keyring.volume.names, id, "deeper")).entry;
      } finally {
        unlocked.close();
      }
      // docs/deeper now shows docs itself: docs/deeper/deeper/... without end.
      const target = join(volume, docs, deeper);
      await runOk("mount", ["--bind", join(volume, docs), target]);
      try {
        const check = await fsckJson(volume);
        expect(check.code).toBe(7);
        expect(check.report.problems).toContainEqual(
          expect.objectContaining({
            code: "DIRECTORY_CYCLE",
            lower: `${docs}/${deeper}`,
            path: "/docs/deeper",
          }),
        );
        const rekey = await run(2, ["rekey", volume]);
        // Not entered, said, and the old key kept: rekey's answer to any directory it cannot open.
        expect(rekey.code).toBe(7);
        expect(rekey.stderr).toMatch(/could not be opened \(ELOOP\); its files were not rewrapped/);
      } finally {
        await runOk("umount", [target]);
      }
    },
  );
});
