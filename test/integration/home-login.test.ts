// `cryptmount home` at login, end to end (issue #11, "Done when"): real test
// users, pamtester against a PAM service file of our own, passwd and su on a
// pty through Debian's common stacks as `home setup` edits them. Every system
// file, mode and account touched is put back in afterAll (SystemGuard).

import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  KDF,
  SystemGuard,
  asUser,
  cli,
  cryptmountMounts,
  homeUnavailable,
  mountedAt,
  onPty,
  pamtester,
  serviceText,
} from "../helpers/home.js";
import {
  HELPERS,
  alive,
  requireBuild,
  run,
  sleep,
  start,
  waitFor,
  waitForExit,
} from "../helpers/volume.js";

const unavailable = homeUnavailable();
const PAM_FILES = ["common-auth", "common-session", "common-password"].map(
  (f) => `/etc/pam.d/${f}`,
);
const MODULE_DIR = [
  "/lib/x86_64-linux-gnu/security",
  "/usr/lib/x86_64-linux-gnu/security",
  "/lib/security",
].find((d) => existsSync(join(d, "pam_unix.so")));

const PASSWORD = "Sl0w-Lantern-4821";
const NEW_PASSWORD = "Quartz-Meadow-7713";
const ROOT_SET_PASSWORD = "Copper-Harbor-2290";
const SECRET_NAME = "diary-of-a-test-user.txt";
const SECRET_TEXT = "the cleartext marker 5f3c9a that must never reach the lower directory";

describe.skipIf(unavailable !== undefined)(
  "cryptmount home at login (pamtester, passwd, su)",
  () => {
    const guard = new SystemGuard();
    const service = `cryptmount-test-${process.pid}`;
    let alice = "";
    let bob = "";
    let home = "";
    let lower = "";
    let work = "";
    let originals: string[] = [];

    beforeAll(async () => {
      requireBuild();
      for (const f of PAM_FILES) guard.keepFile(f);
      guard.keepFile(`/etc/pam.d/${service}`);
      if (MODULE_DIR) guard.keepFile(join(MODULE_DIR, "pam_cryptmount.so"));
      for (const p of ["/etc/cryptmount", "/run/cryptmount-home", "/home/.cryptmount"])
        guard.removeLater(p);
      originals = PAM_FILES.map((f) => readFileSync(f, "utf8"));
      // Debian ships /dev/fuse 0666; this machine may not.
      await guard.setMode("/dev/fuse", 0o666);
      await writeFile(`/etc/pam.d/${service}`, serviceText());
      alice = await guard.createUser("cmha", PASSWORD);
      bob = await guard.createUser("cmhb", "Bob-Passw0rd-55");
      home = `/home/${alice}`;
      lower = `/home/.cryptmount/${alice}/lower`;
      work = (await run("mktemp", ["-d", "/tmp/cryptmount-home-XXXXXX"])).stdout.trim();
      guard.own(work);
      await run("sh", ["-c", `rm -rf ${home}/.[!.]* ${home}/*`]); // an empty home: no --migrate here
      await writeFile(`${work}/pw`, `${PASSWORD}\n`, { mode: 0o600 });
    });

    afterAll(async () => {
      await guard.restore();
    });

    test("setup creates the volume and adds the PAM lines, idempotently", async () => {
      const r = await cli([
        "home",
        "setup",
        ...KDF,
        "--passfile",
        `${work}/pw`,
        "--recovery-key-file",
        `${work}/rk`,
        alice,
      ]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/common-password: added the password line/);
      expect(r.stdout).toMatch(/changes passwords|uses common-password/);
      for (const f of PAM_FILES)
        expect(readFileSync(f, "utf8")).toMatch(/pam_cryptmount\.so node=/);
      const after = PAM_FILES.map((f) => readFileSync(f, "utf8"));
      const again = await cli(["home", "setup", alice]);
      expect(again.code).toBe(0);
      expect(again.stdout).toMatch(/already has an encrypted home/);
      expect(PAM_FILES.map((f) => readFileSync(f, "utf8"))).toEqual(after);
      // Ownership and isolation of the lower: the user's, 0700 / 0600.
      const st = statSync(lower);
      expect(st.uid).toBe(Number((await run("id", ["-u", alice])).stdout));
      expect(st.mode & 0o777).toBe(0o700);
      expect(statSync(join(lower, "cryptmount.conf")).mode & 0o777).toBe(0o600);
      const status = await cli(["home", "status", "--json", alice]);
      expect(JSON.parse(status.stdout)).toMatchObject({
        mounted: false,
        loginSlot: { label: "login password" },
      });
    });

    test("setup refuses a wrong login password", async () => {
      await writeFile(`${work}/bad`, "not-the-password\n");
      const other = await cli([
        "home",
        "setup",
        ...KDF,
        "--no-pam",
        "--private",
        "--passfile",
        `${work}/bad`,
        "--recovery-key-file",
        `${work}/rk-bob`,
        bob,
      ]);
      expect(other.code).toBe(3);
      expect(other.stderr).toMatch(/not .* login password/);
      expect(existsSync(`/etc/cryptmount/home/${bob}.json`)).toBe(false);
    });

    test("login mounts as the user; files are the user's; the ciphertext holds neither names nor content", async () => {
      const r = await pamtester(service, alice, ["authenticate", "open_session"], PASSWORD);
      expect(r.stderr + r.stdout).toMatch(/successfully opened a session/);
      expect(mountedAt(home)).toBe(true);
      const w = await asUser(
        alice,
        `printf '%s' '${SECRET_TEXT}' > ~/${SECRET_NAME} && stat -c %U ~/${SECRET_NAME}`,
      );
      expect(w.code).toBe(0);
      expect(w.stdout.trim()).toBe(alice);
      expect((await run("ps", ["-o", "args=", "-u", alice])).stdout).toMatch(/main\.js __serve/);
      // The server is the user's process, not root's, and mounted without allow_other.
      const info = readFileSync("/proc/self/mountinfo", "utf8")
        .split("\n")
        .find((l) => l.includes(` ${home} `))!;
      expect(info).not.toMatch(/allow_other/);
      expect(info).toMatch(/user_id=\d+/);
      expect(info).not.toMatch(/user_id=0,/);
      const names: string[] = [];
      const contents: Buffer[] = [];
      const walk = (dir: string) => {
        for (const e of readdirSync(dir, { withFileTypes: true })) {
          names.push(e.name);
          if (e.isDirectory()) walk(join(dir, e.name));
          else if (e.isFile()) contents.push(readFileSync(join(dir, e.name)));
        }
      };
      walk(lower);
      expect(names.some((n) => n.includes("diary"))).toBe(false);
      expect(Buffer.concat(contents).includes(Buffer.from("marker 5f3c9a"))).toBe(false);
    });

    test("another user (not root) can neither list nor read the mounted home or its lower", async () => {
      for (const script of [
        `ls ${home}`,
        `cat ${home}/${SECRET_NAME}`,
        `ls /home/.cryptmount/${alice}`,
        `ls ${lower}`,
      ]) {
        const r = await asUser(bob, script);
        expect(r.code, script).not.toBe(0);
        expect(r.stdout).not.toMatch(/diary|marker/);
      }
    });

    test("two sessions share one mount: the first logout leaves it, the last unmounts", async () => {
      // Session 1 is the one opened above (pamtester exits without closing it); 2 and 3 log in at once.
      const [second, third] = await Promise.all([
        pamtester(service, alice, ["authenticate", "open_session"], PASSWORD),
        pamtester(service, alice, ["authenticate", "open_session"], PASSWORD),
      ]);
      expect(second.code).toBe(0);
      expect(third.code).toBe(0);
      expect(cryptmountMounts().filter((m) => m.mountpoint === home)).toHaveLength(1);
      expect(JSON.parse((await cli(["home", "status", "--json", alice])).stdout).sessions).toBe(3);
      await pamtester(service, alice, ["close_session"]);
      await pamtester(service, alice, ["close_session"]);
      expect(mountedAt(home)).toBe(true);
      expect((await asUser(alice, `cat ~/${SECRET_NAME}`)).stdout).toBe(SECRET_TEXT);
      await pamtester(service, alice, ["close_session"]);
      expect(mountedAt(home)).toBe(false);
      expect(readdirSync(home)).toEqual([]);
    });

    test("the last logout with files still open detaches lazily, says so, and the server exits", async () => {
      await pamtester(service, alice, ["authenticate", "open_session"], PASSWORD);
      const server = (await run("pgrep", ["-u", alice, "-f", "main.js __serve"])).stdout.trim();
      expect(server).toMatch(/^\d+$/);
      // setpriv execs (no child left behind), and so does the shell: SIGKILL ends the holder itself.
      const holder = start("setpriv", [
        `--reuid=${alice}`,
        `--regid=${alice}`,
        "--clear-groups",
        "sh",
        "-c",
        `exec 3<${home}/${SECRET_NAME}; cd ${home}; exec sleep 30`,
      ]);
      try {
        await sleep(300);
        const r = await pamtester(service, alice, ["close_session"]);
        expect(r.stdout + r.stderr).toMatch(/still in use; the encrypted home was detached lazily/);
        expect(mountedAt(home)).toBe(false);
        expect(alive(Number(server))).toBe(true); // still serving the open file
      } finally {
        holder.proc.kill("SIGKILL");
        await holder.done;
      }
      expect(await waitForExit(Number(server))).toBe(true);
    });

    test("a wrong password mounts nothing; a user without an encrypted home logs in normally", async () => {
      const wrong = await pamtester(
        service,
        alice,
        ["authenticate", "open_session"],
        "wrong-password",
      );
      expect(wrong.code).not.toBe(0);
      expect(mountedAt(home)).toBe(false);
      const plain = await pamtester(
        service,
        bob,
        ["authenticate", "open_session", "close_session"],
        "Bob-Passw0rd-55",
      );
      expect(plain.code).toBe(0);
      expect(plain.stdout + plain.stderr).not.toMatch(/cryptmount: /);
    });

    test("a login without a password (an SSH key) leaves the home locked and says so", async () => {
      const r = await pamtester(service, alice, ["open_session", "close_session"]);
      expect(r.code).toBe(0);
      expect(r.stdout + r.stderr).toMatch(/stays locked: this login did not use a password/);
      expect(mountedAt(home)).toBe(false);
    });

    test("the password never appears in a process listing, environment or log; the module logs what it did", async () => {
      // No syslog daemon here: a stand-in on /dev/log for the test's duration.
      const sinkLog = `${work}/syslog`;
      const sink = existsSync("/dev/log")
        ? undefined
        : start("python3", [join(HELPERS, "syslog_sink.py"), "/dev/log", sinkLog]);
      if (sink) {
        guard.removeLater("/dev/log");
        await waitFor("the syslog stand-in", () => existsSync("/dev/log"));
      }
      // The stand-in stops however the test ends.
      try {
        const login = pamtester(service, alice, ["authenticate", "open_session"], PASSWORD);
        let seen = "";
        let samples = 0;
        let done = false;
        void login.then(() => (done = true));
        while (!done) {
          for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
            for (const file of ["cmdline", "environ"]) {
              try {
                if (readFileSync(`/proc/${pid}/${file}`).includes(PASSWORD))
                  seen = `${pid}/${file}`;
              } catch {
                /* gone */
              }
            }
          }
          samples++;
          await sleep(5);
        }
        const r = await login;
        expect(r.code).toBe(0);
        expect(samples).toBeGreaterThan(5);
        expect(seen).toBe("");
        expect(r.stdout + r.stderr).not.toContain(PASSWORD);
        const runtime = `/tmp/cryptmount-${(await run("id", ["-u", alice])).stdout.trim()}`;
        for (const f of existsSync(runtime) ? readdirSync(runtime) : [])
          expect(readFileSync(join(runtime, f), "utf8")).not.toContain(PASSWORD);
        await pamtester(service, alice, ["close_session"]);
        expect(mountedAt(home)).toBe(false);
        await sleep(200);
      } finally {
        sink?.proc.kill("SIGTERM");
        await sink?.done;
      }
      if (sink) {
        const logged = readFileSync(sinkLog, "utf8");
        expect(logged).toMatch(/pam_cryptmount.*encrypted home .* mounted at/);
        expect(logged).toMatch(/last session closed/);
        expect(logged).not.toContain(PASSWORD);
      }
    });

    test("su from another user unlocks, runs, and the logout unmounts", async () => {
      const r = await onPty(bob, ["su", "-", alice, "-c", `cat ~/${SECRET_NAME}`], [PASSWORD]);
      expect(r.stdout).toContain(SECRET_TEXT);
      expect(r.code).toBe(0);
      expect(mountedAt(home)).toBe(false);
    });

    test("passwd through PAM rewraps the login slot: the old password no longer unlocks, the new one does", async () => {
      const r = await onPty(alice, ["passwd"], [PASSWORD, NEW_PASSWORD, NEW_PASSWORD]);
      expect(r.stdout).toMatch(/login slot now opens with the new password/);
      expect(r.code).toBe(0);
      await writeFile(`${work}/new`, `${NEW_PASSWORD}\n`);
      expect((await cli(["info", lower])).code).toBe(0);
      expect((await cli(["fsck", "--passfile", `${work}/pw`, lower])).code).toBe(3);
      expect((await cli(["fsck", "--passfile", `${work}/new`, lower])).code).toBe(0);
      const login = await pamtester(service, alice, ["authenticate", "open_session"], NEW_PASSWORD);
      expect(login.code).toBe(0);
      expect((await asUser(alice, `cat ~/${SECRET_NAME}`)).stdout).toBe(SECRET_TEXT);
      await pamtester(service, alice, ["close_session"]);
    });

    test("root's passwd USER: a clear message, and home recover brings the data back", async () => {
      const r = await onPty(undefined, ["passwd", alice], [ROOT_SET_PASSWORD, ROOT_SET_PASSWORD]);
      expect(r.stdout).toMatch(/changed without the old one/);
      expect(r.stdout).toMatch(/cryptmount home recover/);
      const locked = await pamtester(
        service,
        alice,
        ["authenticate", "open_session"],
        ROOT_SET_PASSWORD,
      );
      expect(locked.code).toBe(0); // logs in, without mounting, and says why
      expect(locked.stdout + locked.stderr).toMatch(/does not open its login slot/);
      expect(mountedAt(home)).toBe(false);
      await pamtester(service, alice, ["close_session"]);
      await writeFile(`${work}/root-set`, `${ROOT_SET_PASSWORD}\n`);
      const wrongPw = await cli([
        "home",
        "recover",
        "--recovery-file",
        `${work}/rk`,
        "--passfile",
        `${work}/pw`,
        alice,
      ]);
      expect(wrongPw.code).toBe(3);
      const recovered = await cli([
        "home",
        "recover",
        "--recovery-file",
        `${work}/rk`,
        "--passfile",
        `${work}/root-set`,
        alice,
      ]);
      expect(recovered.stderr).toBe("");
      expect(recovered.code).toBe(0);
      const login = await pamtester(
        service,
        alice,
        ["authenticate", "open_session"],
        ROOT_SET_PASSWORD,
      );
      expect(login.code).toBe(0);
      expect(mountedAt(home)).toBe(true);
      expect((await asUser(alice, `cat ~/${SECRET_NAME}`)).stdout).toBe(SECRET_TEXT);
      await pamtester(service, alice, ["close_session"]);
      expect(mountedAt(home)).toBe(false);
    });

    test("home remove puts the files back in the clear and the PAM files back as they were", async () => {
      const r = await cli(["home", "remove", "--passfile", `${work}/root-set`, alice]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(await readFile(join(home, SECRET_NAME), "utf8")).toBe(SECRET_TEXT);
      expect(statSync(home).uid).toBe(Number((await run("id", ["-u", alice])).stdout));
      expect(existsSync(`/home/.cryptmount/${alice}`)).toBe(false);
      expect(existsSync(`/etc/cryptmount/home/${alice}.json`)).toBe(false);
      expect(PAM_FILES.map((f) => readFileSync(f, "utf8"))).toEqual(originals);
      if (MODULE_DIR) expect(existsSync(join(MODULE_DIR, "pam_cryptmount.so"))).toBe(false);
    });
  },
);
