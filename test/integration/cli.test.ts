// The CLI end to end: init, mount (background server), umount, status,
// info, error exit codes, signals, external unmounts, read-only mounts, and
// what an observer of the lower directory can see.

import { existsSync } from "node:fs";
import { readFile, readdir, readlink, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  CLI,
  EXIT,
  Sandbox,
  alive,
  haveFuse,
  isMounted,
  listTree,
  q,
  run,
  runOk,
  sh,
  shOk,
  start,
  waitFor,
  waitForExit,
  sandboxSuite,
} from "../helpers/volume.js";

let sb: Sandbox;
let lower: string;

describe.skipIf(!haveFuse)("cryptmount CLI", () => {
  sandboxSuite("cli", async (s) => {
    sb = s;
    lower = await sb.createVolume();
  });

  /** One line on stderr, prefixed, without a stack trace. */
  function expectOneLineError(stderr: string, pattern: RegExp): void {
    const lines = stderr.trimEnd().split("\n");
    expect(lines, stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^cryptmount: /);
    expect(lines[0]).toMatch(pattern);
    expect(stderr).not.toMatch(/\n\s+at /);
  }

  it("init writes the recovery key to --recovery-key-file and creates a volume that info describes", async () => {
    const dir = sb.path("fresh");
    const keyFile = sb.path("fresh-recovery-key");
    const initArgs = [
      "init",
      "--passfile",
      sb.passfile,
      "--kdf-memory",
      "65536",
      "--kdf-iterations",
      "3",
      "--recovery-key-file",
      keyFile,
      dir,
    ];
    const r = await sb.cli(initArgs);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Created cryptmount volume \S+ in /);
    expect(r.stdout).toMatch(/Recovery key written to /);
    // The key itself never reaches the (piped) standard output or standard error.
    const key = (await readFile(keyFile, "utf8")).trim();
    expect(key).toMatch(/^[0-9A-Z]{5}(-[0-9A-Z]{5})+$/);
    expect(r.stdout + r.stderr).not.toContain(key);
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    const names = (await readdir(dir)).sort();
    expect(names).toEqual(["cryptmount.conf", "cryptmount.conf.bak"]);
    // The file is usable as it is: --recovery --passfile FILE.
    const check = await sb.cli(["fsck", "--recovery", "--passfile", keyFile, dir]);
    expect(check.code, check.stderr).toBe(EXIT.ok);

    const info = await sb.cliOk(["info", "--json", dir]);
    const parsed = JSON.parse(info) as { blockSize: number; slots: { kind: string }[] };
    expect(parsed.blockSize).toBe(32768);
    expect(parsed.slots.map((s) => s.kind)).toEqual(["passphrase", "recovery"]);
    expect(info).not.toContain("correct horse");

    // init refuses a directory that already is a volume (with a new key file: the old one exists).
    const again = await sb.cli([...initArgs.slice(0, -2), sb.path("unused-key"), dir]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).not.toMatch(/\n\s+at /);
  });

  it("init shows the recovery key only on a terminal: piped, it needs --recovery-key-file or --no-recovery (exit 2)", async () => {
    const base = [
      "init",
      "--passfile",
      sb.passfile,
      "--kdf-memory",
      "65536",
      "--kdf-iterations",
      "3",
    ];
    const dir = sb.path("never");
    const piped = await sb.cli([...base, dir]);
    expect(piped.code).toBe(EXIT.usage);
    expectOneLineError(
      piped.stderr,
      /printed only to a terminal.*--recovery-key-file.*--no-recovery/,
    );
    expect(piped.stdout).toBe("");
    expect(existsSync(dir)).toBe(false);

    // An existing key file is never overwritten (nor followed if a symlink); nothing is created.
    const taken = sb.path("taken");
    await writeFile(taken, "keep me\n");
    const link = sb.path("link");
    await symlink(sb.path("nowhere"), link);
    for (const file of [taken, link]) {
      const r = await sb.cli([...base, "--recovery-key-file", file, dir]);
      expect(r.code).toBe(EXIT.usage);
      expectOneLineError(r.stderr, /cannot create the recovery key file/);
      expect(existsSync(dir)).toBe(false);
    }
    expect(await readFile(taken, "utf8")).toBe("keep me\n");
    const both = await sb.cli([...base, "--no-recovery", "--recovery-key-file", sb.path("k"), dir]);
    expect(both.code).toBe(EXIT.usage);

    // A failed init leaves no key file behind.
    const keyFile = sb.path("failed-key");
    const full = await sb.mkdir("full");
    await writeFile(join(full, "x"), "x");
    const failed = await sb.cli([...base, "--recovery-key-file", keyFile, full]);
    expect(failed.code).toBe(EXIT.failure);
    expect(existsSync(keyFile)).toBe(false);

    // On a terminal (script(1) gives it a pseudo-terminal) the key is shown.
    const tty = sb.path("tty");
    const shown = await run(
      "script",
      ["-qec", [process.execPath, CLI, ...base, tty].map(q).join(" "), "/dev/null"],
      {
        env: sb.env,
        input: "",
      },
    );
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(
      /Recovery key \(shown only now[^\n]*\s+[0-9A-Z]{5}(-[0-9A-Z]{5}){10}\s/,
    );
    expect(existsSync(join(tty, "cryptmount.conf"))).toBe(true);

    // --no-recovery needs neither.
    const none = await sb.cli([...base, "--no-recovery", sb.path("none")]);
    expect(none.code, none.stderr).toBe(0);
    expect(none.stdout).not.toMatch(/Recovery key/);
  });

  it("rekey --revoke-others and passwd --new-recovery-key give the new recovery key only to a terminal or a file", async () => {
    const vol = await sb.createVolume("revoke");
    const config = () => readFile(join(vol, "cryptmount.conf"), "utf8");
    const before = await config();
    const piped = await sb.cli(["rekey", "--revoke-others", "--passfile", sb.passfile, vol]);
    expect(piped.code).toBe(EXIT.usage);
    expectOneLineError(piped.stderr, /printed only to a terminal.*--recovery-key-file/);
    expect(await config()).toBe(before);
    // The option only goes with the commands that make a key.
    for (const args of [
      ["rekey", "--recovery-key-file", sb.path("k"), "--passfile", sb.passfile, vol],
      [
        "passwd",
        "--recovery-key-file",
        sb.path("k"),
        "--passfile",
        sb.passfile,
        "--remove-slot",
        "2",
        vol,
      ],
    ]) {
      const r = await sb.cli(args);
      expect(r.code, args.join(" ")).toBe(EXIT.usage);
      expectOneLineError(r.stderr, /--recovery-key-file goes with/);
    }
    expect(await config()).toBe(before);

    const keyFile = sb.path("revoked-recovery-key");
    const r = await sb.cli([
      "rekey",
      "--revoke-others",
      "--recovery-key-file",
      keyFile,
      "--passfile",
      sb.passfile,
      vol,
    ]);
    expect(r.code, r.stderr).toBe(EXIT.ok);
    expect(r.stdout).toMatch(/Recovery key written to /);
    const key = (await readFile(keyFile, "utf8")).trim();
    expect(r.stdout).not.toContain(key);
    // The new key opens the volume; the old one (from init) does not.
    expect((await sb.cli(["fsck", "--recovery", "--passfile", keyFile, vol])).code).toBe(EXIT.ok);
    const old = await sb.cli(["fsck", "--recovery", "--passfile", `${vol}.recovery-key`, vol]);
    expect(old.code).toBe(EXIT.wrongKey);
  });

  it("init refuses KDF parameters below the minimum (usage error)", async () => {
    const r = await sb.cli([
      "init",
      "--passfile",
      sb.passfile,
      "--kdf-memory",
      "1024",
      sb.path("weak"),
    ]);
    expect(r.code).toBe(EXIT.usage);
    expectOneLineError(r.stderr, /minimum/);
  });

  it("mount, write, umount, mount again: data survives; status lists the mount", async () => {
    const m = await sb.mount(lower);
    expect(alive(m.pid)).toBe(true);
    await shOk(
      `mkdir ${q(m.mountpoint + "/dir")} && printf 'hello world\\n' > ${q(m.mountpoint + "/dir/file.txt")}`,
    );

    const status = await sb.cliOk(["status", "--json"]);
    const records = JSON.parse(status) as {
      mountpoint: string;
      lower: string;
      pid: number;
      readOnly: boolean;
    }[];
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      mountpoint: m.mountpoint,
      lower,
      pid: m.pid,
      readOnly: false,
    });
    expect(await sb.cliOk(["status"])).toContain(m.mountpoint);

    await sb.unmount(m);
    expect(alive(m.pid)).toBe(false);
    expect(isMounted(m.mountpoint)).toBe(false);
    expect(await readdir(m.mountpoint)).toEqual([]);
    expect(await sb.cliOk(["status"])).toMatch(/no cryptmount volumes mounted/);

    const again = await sb.mount(lower, { mountpoint: m.mountpoint });
    expect(await runOk("cat", [join(again.mountpoint, "dir/file.txt")])).toBe("hello world");
    await sb.unmount(again);
  });

  it("the 'cryptmount LOWER MOUNTPOINT -o passfile=F' form mounts too", async () => {
    const mnt = await sb.mkdir("mnt");
    const r = await sb.cli([lower, mnt, "-o", `passfile=${sb.passfile}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(isMounted(mnt)).toBe(true);
    await sb.unmount(mnt);
  });

  it("a wrong passphrase exits 3 with a one-line error and mounts nothing", async () => {
    const wrong = join(sb.dir, "wrong-pass");
    await writeFile(wrong, "not the passphrase\n");
    const mnt = await sb.mkdir("mnt");
    const r = await sb.mountRaw(lower, mnt, { passfile: wrong });
    expect(r.code).toBe(EXIT.wrongKey);
    expectOneLineError(r.stderr, /./);
    expect(r.stderr).not.toContain("not the passphrase");
    expect(isMounted(mnt)).toBe(false);
  });

  it("a missing mount point exits 5", async () => {
    const r = await sb.mountRaw(lower, join(sb.dir, "does-not-exist"));
    expect(r.code).toBe(EXIT.mountPoint);
    expectOneLineError(r.stderr, /does-not-exist/);
  });

  it("a non-empty mount point exits 5", async () => {
    const mnt = await sb.mkdir("mnt");
    await writeFile(join(mnt, "occupied"), "x");
    const r = await sb.mountRaw(lower, mnt);
    expect(r.code).toBe(EXIT.mountPoint);
    expectOneLineError(r.stderr, /not empty/);
    expect(isMounted(mnt)).toBe(false);
  });

  it("a lower directory that is not a volume exits 4", async () => {
    const plain = await sb.mkdir("plain");
    await writeFile(join(plain, "some-file"), "data");
    const mnt = await sb.mkdir("mnt");
    const r = await sb.mountRaw(plain, mnt);
    expect(r.code).toBe(EXIT.notAVolume);
    expectOneLineError(r.stderr, /not a cryptmount volume/);

    const missing = await sb.mountRaw(join(sb.dir, "no-such-lower"), mnt);
    expect(missing.code).toBe(EXIT.notAVolume);
    expectOneLineError(missing.stderr, /no-such-lower/);

    const info = await sb.cli(["info", plain]);
    expect(info.code).toBe(EXIT.notAVolume);
    expectOneLineError(info.stderr, /not a cryptmount volume/);
  });

  it("a volume that is already mounted exits 6 (elsewhere, or at the same place)", async () => {
    const m = await sb.mount(lower);
    const other = await sb.mkdir("mnt");
    const r = await sb.mountRaw(lower, other);
    expect(r.code).toBe(EXIT.alreadyMounted);
    expectOneLineError(r.stderr, /already mounted/);
    expect(isMounted(other)).toBe(false);

    const second = await sb.createVolume();
    const same = await sb.mountRaw(second, m.mountpoint);
    expect(same.code).toBe(EXIT.alreadyMounted);
    expectOneLineError(same.stderr, /already mounted/);
    expect(alive(m.pid)).toBe(true);
  });

  it("umount of something that is not mounted fails with a one-line error", async () => {
    const mnt = await sb.mkdir("mnt");
    const r = await sb.cli(["umount", mnt]);
    expect(r.code).not.toBe(0);
    expectOneLineError(r.stderr, /not a mounted/);
  });

  it("umount of a busy mount fails with a one-line error; umount --lazy detaches it", async () => {
    const m = await sb.mount(lower);
    const busy = start("sleep", ["60"], { cwd: m.mountpoint, timeoutMs: 90_000 });
    try {
      await waitFor("sleep to sit in the mount", () =>
        readlink(`/proc/${busy.proc.pid}/cwd`).then(
          (cwd) => cwd === m.mountpoint,
          () => false,
        ),
      );
      const r = await sb.cli(["umount", m.mountpoint]);
      expect(r.code).not.toBe(0);
      expectOneLineError(r.stderr, /busy/);
      expect(isMounted(m.mountpoint)).toBe(true);

      const lazy = await sb.cli(["umount", "--lazy", m.mountpoint]);
      expect(lazy.code, lazy.stderr).toBe(0);
      expect(isMounted(m.mountpoint)).toBe(false);
    } finally {
      busy.proc.kill("SIGKILL");
      await busy.done;
    }
    // The server goes once the last user of the detached mount is gone.
    expect(await waitForExit(m.pid)).toBe(true);
    sb.forget(m.mountpoint);
  });

  it("SIGTERM to the server unmounts cleanly and removes its record", async () => {
    const m = await sb.mount(lower);
    await shOk(`printf 'before sigterm' > ${q(m.mountpoint + "/sigterm.txt")}`);
    process.kill(m.pid, "SIGTERM");
    expect(await waitForExit(m.pid)).toBe(true);
    expect(isMounted(m.mountpoint)).toBe(false);
    expect(sb.serverPid(m.mountpoint)).toBeUndefined();
    sb.forget(m.mountpoint);

    const again = await sb.mount(lower, { mountpoint: m.mountpoint });
    expect(await runOk("cat", [join(again.mountpoint, "sigterm.txt")])).toBe("before sigterm");
  });

  it("an external fusermount -u makes the server exit by itself", async () => {
    const m = await sb.mount(lower);
    await runOk("fusermount", ["-u", m.mountpoint]);
    expect(await waitForExit(m.pid)).toBe(true);
    expect(isMounted(m.mountpoint)).toBe(false);
    await waitFor("the runtime record to go", () => sb.serverPid(m.mountpoint) === undefined);
    sb.forget(m.mountpoint);
  });

  for (const [label, args] of [
    ["-o ro", ["-o", "ro"]],
    ["--ro", ["--ro"]],
  ] as const) {
    it(`a read-only mount (${label}) reads but refuses writes with EROFS`, async () => {
      const rw = await sb.mount(lower);
      await shOk(`printf 'read me' > ${q(rw.mountpoint + "/ro-check.txt")}`);
      await sb.unmount(rw);

      const m = await sb.mount(lower, { args: [...args] });
      const file = join(m.mountpoint, "ro-check.txt");
      expect(await runOk("cat", [file])).toBe("read me");
      for (const script of [
        `touch ${q(m.mountpoint + "/new-file")}`,
        `printf more >> ${q(file)}`,
        `mkdir ${q(m.mountpoint + "/new-dir")}`,
        `rm ${q(file)}`,
        `chmod 600 ${q(file)}`,
        `mv ${q(file)} ${q(m.mountpoint + "/renamed")}`,
      ]) {
        const r = await sh(script);
        expect(r.code, script).not.toBe(0);
        expect(r.stderr, script).toMatch(/Read-only file system/);
      }
      const open = await run("python3", ["-c", "import sys; open(sys.argv[1], 'r+b')", file]);
      expect(open.stderr).toMatch(/OSError: \[Errno 30\]|Read-only file system/);
      expect(await runOk("cat", [file])).toBe("read me");
      const status = JSON.parse(await sb.cliOk(["status", "--json"])) as { readOnly: boolean }[];
      expect(status[0]?.readOnly).toBe(true);
    });
  }

  it("the lower directory shows no cleartext names, contents or link targets", async () => {
    const vol = await sb.createVolume();
    const m = await sb.mount(vol);
    const marker = "ZebraMarker7431";
    const mnt = m.mountpoint;
    await shOk(
      [
        `mkdir -p ${q(`${mnt}/${marker}-dir/sub-${marker}`)}`,
        `printf '%s\\n' ${marker} > ${q(`${mnt}/${marker}.txt`)}`,
        `printf 'x%.0s' $(seq 1 40000) > ${q(`${mnt}/${marker}-dir/big`)}`,
        `printf '%s %s\\n' ${marker} ${marker} >> ${q(`${mnt}/${marker}-dir/big`)}`,
        `printf '%s' ${marker} > ${q(`${mnt}/${marker}-dir/sub-${marker}/deep`)}`,
        `ln -s ${q(`target-${marker}`)} ${q(`${mnt}/link-${marker}`)}`,
        `touch ${q(`${mnt}/${"L".repeat(200)}-${marker}`)}`,
      ].join(" && "),
    );
    await sb.unmount(m);

    // Contents and symlink targets (grep -r does not follow symlinks; readlink does).
    const grep = await run("grep", ["-r", "-a", "-l", marker, vol]);
    expect(grep.code, grep.stdout).toBe(1);
    const grepLower = await run("grep", ["-r", "-a", "-l", "-i", "zebramarker", vol]);
    expect(grepLower.code).toBe(1);
    // Format version 3: a symlink is an object (a sealed regular file), never a lower symlink.
    expect(await shOk(`find ${q(vol)} -type l | wc -l`)).toBe("0");

    // Names: no marker, and every entry is an encrypted name, a long-name
    // entry or sidecar, a directory ID, or the config.
    const entries = await listTree(vol);
    expect(entries.join("\n")).not.toContain(marker);
    const base64url = /^[A-Za-z0-9_-]+$/;
    const kinds = { name: 0, longName: 0, sidecar: 0, dirId: 0, config: 0 };
    for (const path of entries) {
      const name = path.split("/").pop()!;
      if (base64url.test(name)) kinds.name++;
      else if (/^cm\.L\.[A-Za-z0-9_-]{43}$/.test(name)) kinds.longName++;
      else if (/^cm\.L\.[A-Za-z0-9_-]{43}\.n$/.test(name)) kinds.sidecar++;
      else if (/^cm\.d\.[A-Za-z0-9_-]{43}$/.test(name))
        kinds.dirId++; // id and tag, format v2
      else if (/^cryptmount\.conf(\.bak)?$/.test(name) && !path.includes("/")) kinds.config++;
      else throw new Error(`unexpected lower entry ${path}`);
    }
    // dir, dir/sub, .txt, big, deep, link = 6 short names; one long name.
    expect(kinds).toEqual({ name: 6, longName: 1, sidecar: 1, dirId: 2, config: 2 });
  });
});
