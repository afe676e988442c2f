// Two hosts, one volume (docs/lower-sync.md, the commands below are its
// recipe): host A makes the volume and `rclone bisync`s its lower with a
// shared copy (once a local directory, once a bucket on a real S3 server on
// loopback, s3rver);
// host B starts from that copy with its own bisync. Both change the volume
// while apart, exactly as sync-and-share users do: the same file edited on
// both (one with a long name), new files in the same new directory created
// on both (one name on both), a file deleted on A and edited on B, and files
// only one of them made. Then each syncs again, and the mounts on both hosts show every
// version: the two sides of each conflict under names that say which is
// which (docs/format.md §3.3), the merged directory with the files of both
// (§12) and the name made on both as a duplicate, the deleted-and-edited
// file kept; fsck lists the conflicts (CONFLICT_COPY, DUPLICATE_NAME,
// warnings: exit 0). Resolving them in the mount on one host
// is ordinary renames and deletes, which the next syncs carry to the other.

import { describe, expect, it } from "vitest";
import { join } from "node:path";
import {
  haveFuse,
  q,
  run,
  runOk,
  sandboxSuite,
  sha256,
  shOk,
  type Mounted,
  type Sandbox,
} from "../helpers/volume.js";
import { checksumTree, fsck, type FsckProblem } from "../helpers/volume-tools.js";
import { BUCKET, REMOTE, rcloneOk, startS3 } from "../helpers/s3.js";

const haveRclone = (await run("sh", ["-c", "command -v rclone"])).code === 0;

/** A file name whose encrypted name is longer than 171 characters: a `cm.L.` entry (§11). */
const LONG = "minutes of the meeting on the long-name layout, " + "x".repeat(100) + ".txt";
const longCopy = (side: string) => LONG.replace(/\.txt$/, ` (conflict ${side}).txt`);

const text = {
  report: "report, as both hosts last had it\n",
  reportA: "report, edited on host A\n",
  reportB: "report, edited on host B (longer, so the sizes differ)\n",
  plan: "plan, before\n",
  planB: "plan, edited on host B after host A deleted it\n",
  keep: "nobody touched this\n",
  long: "long name, before\n",
  longA: "long name, edited on host A\n",
  longB: "long name, edited on host B\n",
  fromA: "made on host A in the new directory\n",
  fromB: "made on host B in the new directory\n",
  onlyA: "made on host A\n",
  onlyB: "made on host B\n",
  notesA: "notes host A made in the new directory\n",
  notesB: "notes host B made in the new directory, same name\n",
};
const hash = Object.fromEntries(Object.entries(text).map(([k, v]) => [k, sha256(v)])) as Record<
  keyof typeof text,
  string
>;

/** Writes files (relative path -> content) below a mount point from a shell, making directories. */
function put(mountpoint: string, files: Record<string, string>): Promise<string> {
  const script = Object.entries(files)
    .map(([path, content]) => {
      const dir = path.includes("/")
        ? `mkdir -p ${q(path.slice(0, path.lastIndexOf("/")))} && `
        : "";
      return `${dir}printf '%s' ${q(content)} > ${q(path)}`;
    })
    .join(" && ");
  return shOk(`cd ${q(mountpoint)} && ${script}`);
}

/** What every host shows once all have synced: the conflicts unresolved. */
const merged: Record<string, string> = {
  "keep.txt": hash.keep,
  // Edited on both: host B ran the sync that found it, so path1 is B's version, path2 the shared copy's (A's).
  "report (conflict path1).txt": hash.reportB,
  "report (conflict path2).txt": hash.reportA,
  [longCopy("path1")]: hash.longB,
  [longCopy("path2")]: hash.longA,
  // Deleted on A, edited on B: the edit is kept.
  "plan.txt": hash.planB,
  "new/from-a.txt": hash.fromA,
  "new/from-b.txt": hash.fromB,
  "only-a.txt": hash.onlyA,
  "only-b.txt": hash.onlyB,
};

describe.skipIf(!haveFuse || !haveRclone)("two hosts syncing one volume with rclone bisync", () => {
  let sb: Sandbox;
  sandboxSuite("bisync", (s) => {
    sb = s;
  });

  /** Mounts `lower`, runs `body` on the mount point, and unmounts whatever happens. */
  async function mounted<T>(lower: string, body: (mountpoint: string) => Promise<T>): Promise<T> {
    const m: Mounted = await sb.mount(lower);
    try {
      return await body(m.mountpoint);
    } finally {
      await sb.unmount(m);
    }
  }

  const conflictsOf = (problems: FsckProblem[]) =>
    problems
      .filter((p) => p.code === "CONFLICT_COPY")
      .map((p) => [p.path, p.original])
      .sort();

  /** The shared copy: a local directory, or a bucket on a real S3 server on loopback (s3rver). */
  const sharedCopies = [
    {
      kind: "a directory",
      open: async () => ({
        shared: await sb.mkdir("shared"),
        rclone: (args: string[]) => runOk("rclone", args),
        close: async () => undefined,
      }),
    },
    {
      kind: "an S3 bucket",
      open: async () => {
        const s3 = await startS3(sb.path("s3"));
        return {
          shared: `${REMOTE}:${BUCKET}/vault`,
          rclone: (args: string[]) => rcloneOk(s3, args),
          close: () => s3.stop(),
        };
      },
    },
  ];

  it.each(sharedCopies)(
    "through $kind: every version shows with a readable name, the new directory merges, fsck lists the conflicts; renames resolve them",
    async ({ open }) => {
      const copy = await open();
      try {
        await twoHosts(copy.shared, copy.rclone);
      } finally {
        await copy.close();
      }
    },
  );

  async function twoHosts(
    shared: string,
    rclone: (args: string[]) => Promise<string>,
  ): Promise<void> {
    // Host A: the volume (cryptmount init), its first files, and the baseline with the (empty) shared copy.
    const hostA = await sb.createVolume("hostA", ["--no-recovery"]);
    const hostB = await sb.mkdir("hostB");
    const workA = sb.path("bisync-state-A");
    const workB = sb.path("bisync-state-B");
    const bisyncA = (...extra: string[]) =>
      rclone(["bisync", hostA, shared, "--workdir", workA, ...extra]);
    const bisyncB = (...extra: string[]) =>
      rclone(["bisync", hostB, shared, "--workdir", workB, ...extra]);

    await mounted(hostA, (c) =>
      put(c, {
        "report.txt": text.report,
        "plan.txt": text.plan,
        "keep.txt": text.keep,
        [LONG]: text.long,
      }),
    );
    await bisyncA("--resync");
    // Host B: starts from the shared copy.
    await bisyncB("--resync");
    expect(await shOk(`cd ${q(hostA)} && find . | sort`)).toBe(
      await shOk(`cd ${q(hostB)} && find . | sort`),
    );

    // Apart: both change the volume.
    await mounted(hostA, async (c) => {
      await put(c, {
        "report.txt": text.reportA,
        [LONG]: text.longA,
        "new/from-a.txt": text.fromA,
        "new/notes.txt": text.notesA,
        "only-a.txt": text.onlyA,
      });
      await shOk(`rm ${q(join(c, "plan.txt"))}`);
    });
    await mounted(hostB, (c) =>
      put(c, {
        "report.txt": text.reportB,
        [LONG]: text.longB,
        "plan.txt": text.planB,
        "new/from-b.txt": text.fromB,
        "new/notes.txt": text.notesB,
        "only-b.txt": text.onlyB,
      }),
    );

    // Each syncs: A first (no conflict yet), then B (finds them), then A again (gets everything).
    await bisyncA();
    await bisyncB();
    await bisyncA();

    // The same new name on both: two entries under the directory's two IDs. Which keeps the
    // name depends on which ID is smaller (random); the other shows as a duplicate.
    const notes = ["new/notes.txt", "new/notes (duplicate).txt"];
    let notesSeen: string[] | undefined;
    for (const host of [hostA, hostB]) {
      await mounted(host, async (c) => {
        const tree = await checksumTree(c);
        const both = notes.map((n) => tree[n]!);
        expect([...both].sort()).toEqual([hash.notesA, hash.notesB].sort());
        notesSeen ??= both;
        expect(both).toEqual(notesSeen); // the same on both hosts
        for (const n of notes) delete tree[n];
        expect(tree).toEqual(merged);
        // No original left for either conflict: both sides were renamed away, both show.
        expect(await shOk(`ls ${q(c)}`)).not.toMatch(/^report\.txt$/m);
      });
      const { code, report } = await fsck(sb, host);
      expect(code).toBe(0);
      expect(report.problems.filter((p) => p.severity === "error")).toEqual([]);
      // The long name's sidecar stays: both copies read their name from it.
      expect(report.problems.map((p) => p.code)).not.toContain("ORPHAN_SIDECAR");
      expect(conflictsOf(report.problems)).toEqual(
        [
          ["/report (conflict path1).txt", "/report.txt"],
          ["/report (conflict path2).txt", "/report.txt"],
          [`/${longCopy("path1")}`, `/${LONG}`],
          [`/${longCopy("path2")}`, `/${LONG}`],
        ].sort(),
      );
      expect(report.problems).toContainEqual(
        expect.objectContaining({ code: "MERGED_DIR_IDS", path: "/new" }),
      );
      expect(report.problems).toContainEqual(
        expect.objectContaining({
          code: "DUPLICATE_NAME",
          path: "/new/notes (duplicate).txt",
          original: "/new/notes.txt",
        }),
      );
      const plain = await sb.cli(["fsck", "--passfile", sb.passfile, host]);
      expect(plain.code).toBe(0);
      expect(plain.stdout).toContain(
        "warning: /report (conflict path2).txt: conflict copy of /report.txt (rclone bisync), which is gone",
      );
    }

    // A rekey on host A keeps every version readable: it rewraps the conflict copies too.
    expect(await sb.cliOk(["rekey", "--passfile", sb.passfile, hostA])).toMatch(/rekey|epoch/i);
    await mounted(hostA, async (c) => {
      const tree = await checksumTree(c);
      for (const n of notes) delete tree[n];
      expect(tree).toEqual(merged);
    });
    expect((await fsck(sb, hostA)).report.problems.filter((p) => p.severity === "error")).toEqual(
      [],
    );

    // Host A resolves: keeps B's report and A's long-named file, deletes the other versions,
    // and gives the duplicate a name of its own.
    await mounted(hostA, (c) =>
      shOk(
        `cd ${q(c)} && mv 'report (conflict path1).txt' report.txt && rm 'report (conflict path2).txt' && ` +
          `mv ${q(longCopy("path2"))} ${q(LONG)} && rm ${q(longCopy("path1"))} && ` +
          `mv 'new/notes (duplicate).txt' 'new/more notes.txt'`,
      ),
    );
    await bisyncA();
    await bisyncB();
    const resolved: Record<string, string> = { ...merged };
    for (const name of Object.keys(resolved))
      if (name.includes("(conflict ")) delete resolved[name];
    resolved["report.txt"] = hash.reportB;
    resolved[LONG] = hash.longA;
    resolved["new/notes.txt"] = notesSeen![0]!;
    resolved["new/more notes.txt"] = notesSeen![1]!;
    for (const host of [hostA, hostB]) {
      await mounted(host, async (c) => expect(await checksumTree(c)).toEqual(resolved));
      const { code, report } = await fsck(sb, host);
      expect(code).toBe(0);
      expect(conflictsOf(report.problems)).toEqual([]);
      expect(report.problems.map((p) => p.code).sort()).toEqual(["MERGED_DIR_IDS"]);
    }
  }
});
