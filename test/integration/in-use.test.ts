// Commands that rewrite a volume (rekey, fsck --repair) refuse a mounted one
// (exit 6) however its lower directory is named: with a trailing slash, as a
// relative path, through a symlink, and when the path holds characters the
// mount table or libfuse escape (space, comma, backslash). A second mount of
// the same volume is refused the same way. A plain fsck runs, with a warning.
// The volume lock (an flock on the lower directory, held by flock(1) here in
// place of a rewrite) keeps mounts and rewrites apart.

import { readFile, symlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { EXIT, Sandbox, haveFuse, run, sandboxSuite, start, waitFor } from "../helpers/volume.js";
import {
  checksumTree,
  expectCliError,
  mountVolume,
  unmountVolume,
  writeNamed,
} from "../helpers/volume-tools.js";

let sb: Sandbox;

const FILES = { "a.txt": "written through the live mount\n" };

describe.skipIf(!haveFuse)("a mounted volume", () => {
  sandboxSuite("inuse", (s) => {
    sb = s;
  });

  it.each([
    ["a plain name", "lower"],
    ["a space, a comma and a backslash", "lo wer,x\\y"],
  ])("with %s: rekey and fsck --repair refuse it by any path (exit 6)", async (_what, name) => {
    const lower = await sb.createVolume(name, ["--no-recovery"]);
    const link = join(sb.dir, `link-to-${basename(lower)}`);
    await symlink(lower, link);
    const m = await mountVolume(sb, lower);
    await writeNamed(m.mountpoint, FILES);
    const before = await checksumTree(m.mountpoint);
    const config = await readFile(join(lower, "cryptmount.conf"), "utf8");

    const spellings: [string, string, string | undefined][] = [
      ["as given", lower, undefined],
      ["trailing slash", lower + "/", undefined],
      ["two trailing slashes", lower + "//", undefined],
      ["relative", basename(lower), dirname(lower)],
      ["relative with ./ and ..", `./../${basename(dirname(lower))}/${basename(lower)}/.`, sb.dir],
      ["symlink", link, undefined],
      ["symlink with a trailing slash", link + "/", undefined],
    ];
    for (const [how, path, cwd] of spellings) {
      for (const command of [
        ["rekey", "--passfile", sb.passfile, path],
        ["rekey", "--revoke-others", "--passfile", sb.passfile, path],
        ["fsck", "--repair", "--passfile", sb.passfile, path],
      ]) {
        const r = await sb.cli(command, cwd ? { cwd } : {});
        expectCliError(r, EXIT.alreadyMounted, /volume is mounted at .*; unmount it before/);
        expect(r.stdout, `${how}: ${command.join(" ")}`).toBe("");
      }
      // Mounting the same volume again, elsewhere, is refused too.
      const again = await sb.cli(
        ["mount", "--passfile", sb.passfile, path, await sb.mkdir("mnt")],
        cwd ? { cwd } : {},
      );
      expectCliError(again, EXIT.alreadyMounted, /already mounted at/);
    }
    // Nothing was rewritten: the config is the same and the mount still serves what was written.
    expect(await readFile(join(lower, "cryptmount.conf"), "utf8")).toBe(config);
    expect(await checksumTree(m.mountpoint)).toEqual(before);

    // A plain fsck runs on a mounted volume, with a warning, and finds it clean.
    const check = await sb.cli(["fsck", "--passfile", sb.passfile, link + "/"]);
    expect(check.code, check.stderr).toBe(EXIT.ok);
    expect(check.stderr).toMatch(/volume is mounted/);
    expect(check.stdout).toMatch(/clean/);

    // Unmounted, the same spellings are accepted.
    await unmountVolume(sb, m);
    const rekeyed = await sb.cli(["rekey", "--passfile", sb.passfile, link + "/"]);
    expect(rekeyed.code, rekeyed.stderr).toBe(EXIT.ok);
    const repaired = await sb.cli(["fsck", "--repair", "--passfile", sb.passfile, lower + "/"]);
    expect(repaired.code, repaired.stderr).toBe(EXIT.ok);
    const m2 = await mountVolume(sb, lower);
    expect(await checksumTree(m2.mountpoint)).toEqual(before);
    await unmountVolume(sb, m2);
  });

  it("the volume lock: no mount while a rewrite holds the volume, no rewrite while a mount starts or runs", async () => {
    const lower = await sb.createVolume("locked", ["--no-recovery"]);
    // flock(1) stands in for a rekey in progress: the exclusive lock on the lower directory.
    const holder = start("flock", ["--exclusive", "--no-fork", lower, "sleep", "60"]);
    try {
      await waitFor("flock to hold the lock", async () => {
        const r = await run("flock", ["--nonblock", "--shared", lower, "true"]);
        return r.code !== 0;
      });
      const refused = await sb.cli([
        "mount",
        "--passfile",
        sb.passfile,
        lower,
        await sb.mkdir("mnt"),
      ]);
      expectCliError(refused, EXIT.alreadyMounted, /fsck --repair of this volume is running/);
    } finally {
      holder.proc.kill("SIGKILL");
      await holder.done;
    }
    // Mounted: the server holds the lock shared, so no other exclusive holder gets it…
    const m = await mountVolume(sb, lower);
    const exclusive = await run("flock", ["--nonblock", "--exclusive", lower, "true"]);
    expect(exclusive.code).not.toBe(0);
    const shared = await run("flock", ["--nonblock", "--shared", lower, "true"]);
    expect(shared.code, shared.stderr).toBe(0);
    await unmountVolume(sb, m);
    // …and once the server is gone, the lock is free again.
    await waitFor("the lock to be free", async () => {
      const r = await run("flock", ["--nonblock", "--exclusive", lower, "true"]);
      return r.code === 0;
    });
    const rekeyed = await sb.cli(["rekey", "--passfile", sb.passfile, lower]);
    expect(rekeyed.code, rekeyed.stderr).toBe(EXIT.ok);
  });
});
