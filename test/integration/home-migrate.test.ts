// `cryptmount home setup --migrate` and `home remove` (issue #11): a home
// with files, modes, symlinks and a git repository goes into the volume with
// a verified copy and a backup, comes out the same at login, and `home
// remove` puts it back in the clear. --no-pam: the PAM lines are the login
// suite's; here a PAM service file of our own serves pamtester.

import { existsSync, readdirSync, statSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  KDF,
  SystemGuard,
  asUser,
  cli,
  homeUnavailable,
  mountedAt,
  pamtester,
  serviceText,
} from "../helpers/home.js";
import { requireBuild, run } from "../helpers/volume.js";

const unavailable = homeUnavailable();
const PASSWORD = "Migrate-Tulip-3391";

/** Files of every kind a home holds, made as the user. */
const POPULATE = `
set -e
cd ~
mkdir -p projects/repo docs/empty "with space"
printf 'plain text\\n' > docs/notes.txt
head -c 300000 /dev/urandom > docs/blob.bin
printf 'secret' > docs/private.key && chmod 600 docs/private.key
printf '#!/bin/sh\\necho hi\\n' > projects/run.sh && chmod 755 projects/run.sh
chmod 700 docs/empty
ln -s docs/notes.txt link-to-notes
ln -s /nonexistent/target dangling-link
ln docs/notes.txt hard-link-notes
printf 'x' > "with space/file name ü.txt"
cd projects/repo
git init -q . && git config user.email t@example.com && git config user.name Test
printf 'one\\n' > a.txt && git add a.txt && git commit -qm first
printf 'two\\n' >> a.txt && git commit -qam second
`;

/** Contents, symlink targets, types and modes must agree. */
function sameTree(user: string, a: string, b: string) {
  return asUser(
    user,
    `diff -r --no-dereference ${a} ${b} && ` +
      `[ "$(cd ${a} && find . -mindepth 1 -printf '%y %m %P\\n' | LC_ALL=C sort)" = ` +
      `"$(cd ${b} && find . -mindepth 1 -printf '%y %m %P\\n' | LC_ALL=C sort)" ]`,
  );
}

describe.skipIf(unavailable !== undefined)(
  "cryptmount home setup --migrate and home remove",
  () => {
    const guard = new SystemGuard();
    const service = `cryptmount-test-m${process.pid}`;
    let carol = "";
    let home = "";
    let backup = "";
    let work = "";

    beforeAll(async () => {
      requireBuild();
      guard.keepFile(`/etc/pam.d/${service}`);
      for (const p of ["/etc/cryptmount", "/run/cryptmount-home", "/home/.cryptmount"])
        guard.removeLater(p);
      await guard.setMode("/dev/fuse", 0o666);
      await writeFile(`/etc/pam.d/${service}`, serviceText());
      carol = await guard.createUser("cmhm", PASSWORD);
      home = `/home/${carol}`;
      backup = `${home}.cryptmount-backup`;
      work = (await run("mktemp", ["-d", "/tmp/cryptmount-home-XXXXXX"])).stdout.trim();
      guard.own(work);
      await writeFile(`${work}/pw`, `${PASSWORD}\n`, { mode: 0o600 });
      const made = await asUser(carol, POPULATE);
      expect(made.stderr).toBe("");
    });

    afterAll(async () => {
      await guard.restore();
    });

    test("setup without --migrate refuses a home with files and changes nothing", async () => {
      const r = await cli([
        "home",
        "setup",
        ...KDF,
        "--no-pam",
        "--passfile",
        `${work}/pw`,
        "--recovery-key-file",
        `${work}/rk0`,
        carol,
      ]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/--migrate/);
      expect(existsSync(`/home/.cryptmount/${carol}`)).toBe(false);
      expect(existsSync(`${work}/rk0`)).toBe(false);
    });

    test("--migrate with a file the user cannot read fails and changes nothing", async () => {
      await writeFile(`${home}/root-only`, "x", { mode: 0o600 });
      try {
        const r = await cli([
          "home",
          "setup",
          ...KDF,
          "--no-pam",
          "--migrate",
          "--passfile",
          `${work}/pw`,
          "--recovery-key-file",
          `${work}/rk1`,
          carol,
        ]);
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/copying .* failed/);
        expect(existsSync(`/home/.cryptmount/${carol}`)).toBe(false);
        expect(existsSync(`/etc/cryptmount/home/${carol}.json`)).toBe(false);
        expect(existsSync(backup)).toBe(false);
        expect(existsSync(`${home}/docs/notes.txt`)).toBe(true);
        expect(existsSync(`${work}/rk1`)).toBe(false);
      } finally {
        await rm(`${home}/root-only`, { force: true });
      }
    });

    test("--migrate keeps every byte and mode; the backup stays until confirmed", async () => {
      const r = await cli([
        "home",
        "setup",
        ...KDF,
        "--no-pam",
        "--migrate",
        "--passfile",
        `${work}/pw`,
        "--recovery-key-file",
        `${work}/rk`,
        carol,
      ]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/verified copy/);
      expect(existsSync(backup)).toBe(true);
      expect(readdirSync(home)).toEqual([]);
      const login = await pamtester(service, carol, ["authenticate", "open_session"], PASSWORD);
      expect(login.code).toBe(0);
      expect(mountedAt(home)).toBe(true);
      const same = await sameTree(carol, backup, home);
      expect(same.stdout + same.stderr).toBe("");
      expect(same.code).toBe(0);
      const git = await asUser(
        carol,
        `cd ~/projects/repo && git fsck --strict --no-progress && git log --oneline | wc -l && git --no-optional-locks status --porcelain`,
      );
      expect(git.stderr).toBe("");
      expect(git.stdout.trim()).toBe("2");
      expect(statSync(`/home/.cryptmount/${carol}/lower`).mode & 0o777).toBe(0o700);
      const status = await cli(["home", "status", carol]);
      expect(status.stdout).toMatch(/cryptmount-backup \(kept until/);
      await pamtester(service, carol, ["close_session"]);
      expect(mountedAt(home)).toBe(false);
    });

    test("home remove puts the home back as it was", async () => {
      // The previous test's session, if it failed before its logout.
      for (let i = 0; i < 3 && mountedAt(home); i++)
        await pamtester(service, carol, ["close_session"]);
      const r = await cli(["home", "remove", "--recovery", "--passfile", `${work}/rk`, carol]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const same = await sameTree(carol, backup, home);
      expect(same.stdout + same.stderr).toBe("");
      expect(same.code).toBe(0);
      expect(existsSync(`/home/.cryptmount/${carol}`)).toBe(false);
      expect(existsSync(`/etc/cryptmount/home/${carol}.json`)).toBe(false);
      const plain = await pamtester(
        service,
        carol,
        ["authenticate", "open_session", "close_session"],
        PASSWORD,
      );
      expect(plain.code).toBe(0);
      expect(mountedAt(home)).toBe(false);
    });

    test("--private encrypts ~/Private only; the rest of the home stays as it is", async () => {
      const dave = await guard.createUser("cmhp", PASSWORD);
      const r = await cli([
        "home",
        "setup",
        ...KDF,
        "--no-pam",
        "--private",
        "--passfile",
        `${work}/pw`,
        "--recovery-key-file",
        `${work}/rk-p`,
        dave,
      ]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const login = await pamtester(service, dave, ["authenticate", "open_session"], PASSWORD);
      expect(login.code).toBe(0);
      expect(mountedAt(`/home/${dave}/Private`)).toBe(true);
      expect(mountedAt(`/home/${dave}`)).toBe(false);
      const w = await asUser(
        dave,
        "echo private > ~/Private/p.txt && cat ~/Private/p.txt && ls -a ~ | grep -c profile",
      );
      expect(w.stdout).toBe("private\n1\n");
      await pamtester(service, dave, ["close_session"]);
      expect(mountedAt(`/home/${dave}/Private`)).toBe(false);
      expect(readdirSync(`/home/${dave}/Private`)).toEqual([]);
    });
  },
);
