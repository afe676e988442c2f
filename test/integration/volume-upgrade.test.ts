// Format version 1 volumes through the CLI and FUSE: the checked-in v1
// fixture mounts read-only with a message pointing to `cryptmount upgrade`;
// upgrade refuses while it is mounted (exit 6), converts it when it is not,
// and the result mounts read-write, reads the same tree and fsck-checks
// clean (docs/format.md §5.1, §22).

import { mkdir, readFile, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { Sandbox, haveFuse, runOk, sandboxSuite } from "../helpers/volume.js";
import {
  checksumTree,
  cli,
  cliOk,
  expectCliError,
  info,
  mountVolume,
  realFixtureConflictCopy,
  secretFile,
  unmountVolume,
} from "../helpers/volume-tools.js";

const fixture = fileURLToPath(new URL("../fixtures/volume-v1", import.meta.url));
const expected = JSON.parse(
  readFileSync(new URL("../fixtures/volume-v1.expected.json", import.meta.url), "utf8"),
) as {
  passphrase: string;
  entries: { path: string; type: string; sha256?: string }[];
};
const files = Object.fromEntries(
  expected.entries.filter((e) => e.type === "file").map((e) => [e.path, e.sha256!]),
);

let sb: Sandbox;
let passfile: string;

describe.skipIf(!haveFuse)("format version 1 volumes", () => {
  sandboxSuite("vupgrade", async (s) => {
    sb = s;
    passfile = await secretFile(sb, "fixture.pass", expected.passphrase);
  });

  async function copy(name: string): Promise<string> {
    const dir = sb.path(name);
    await runOk("cp", ["-a", fixture, dir]);
    await realFixtureConflictCopy(dir);
    return dir;
  }

  it("mount read-only with a message; upgrade refuses while mounted, then converts; rw afterwards", async () => {
    const lower = await copy("v1");
    expect((await info(sb, lower)).formatVersion).toBe(1);
    const mountpoint = await sb.mkdir("mnt-v1");
    const r = await cli(sb, ["mount", "--passfile", passfile, lower, mountpoint], {
      timeoutMs: 60_000,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/format version 1: mounting read-only; run `cryptmount upgrade /);
    const m = { lower, mountpoint, pid: sb.serverPid(mountpoint)! };
    try {
      const sums = await checksumTree(mountpoint);
      for (const [path, sum] of Object.entries(files)) expect(sums[path], path).toBe(sum);
      await expect(writeFile(join(mountpoint, "new.txt"), "x")).rejects.toMatchObject({
        code: "EROFS",
      });
      await expect(mkdir(join(mountpoint, "newdir"))).rejects.toMatchObject({ code: "EROFS" });
      expectCliError(
        await cli(sb, ["upgrade", "--passfile", passfile, lower]),
        6,
        /mounted at .*; unmount it before upgrade/,
      );
      expect((await info(sb, lower)).formatVersion).toBe(1);
    } finally {
      await unmountVolume(sb, m);
    }

    expect(await cliOk(sb, ["upgrade", "--passfile", passfile, lower])).toMatch(
      /^Upgraded .* to format version 3 \(from version 1\): \d+ directories, \d+ directory IDs authenticated/,
    );
    expect(await cliOk(sb, ["upgrade", "--passfile", passfile, lower])).toMatch(
      /already at format version 3/,
    );
    expect((await info(sb, lower)).formatVersion).toBe(3);

    const rw = await mountVolume(sb, lower, { key: ["--passfile", passfile] });
    try {
      const sums = await checksumTree(rw.mountpoint);
      for (const [path, sum] of Object.entries(files)) expect(sums[path], path).toBe(sum);
      await mkdir(join(rw.mountpoint, "merged", "after-upgrade"));
      await writeFile(join(rw.mountpoint, "merged", "after-upgrade", "f.txt"), "new");
      expect(await readFile(join(rw.mountpoint, "merged", "after-upgrade", "f.txt"), "utf8")).toBe(
        "new",
      );
    } finally {
      await unmountVolume(sb, rw);
    }
    const r2 = await cli(sb, ["fsck", "--passfile", passfile, "--json", lower], {
      timeoutMs: 120_000,
    });
    expect(r2.code, r2.stdout + r2.stderr).toBe(0);
    const report = JSON.parse(r2.stdout) as { problems: { code: string }[] };
    expect(report.problems.map((p) => p.code).sort()).toEqual([
      "CONFLICT_COPY",
      "FOREIGN_ENTRY",
      "MERGED_DIR_IDS",
    ]);
  });
});
