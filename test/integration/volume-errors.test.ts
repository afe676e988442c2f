// Bad input on every command: missing arguments and paths, a lower that is
// not a volume, wrong keys, damaged or unknown configs, unreadable or empty
// passphrases, mount point mistakes, and a full disk. Every error is one
// stderr line starting "cryptmount: ", without a stack trace, with the exit
// code of docs/cryptmount.1.md.

import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  CLI,
  Sandbox,
  haveFuse,
  isMounted,
  pyOk,
  runOk,
  seededBytes,
  sandboxSuite,
} from "../helpers/volume.js";
import {
  CONFIG,
  CONFIG_BAK,
  MIN_KDF,
  checksumTree,
  cli,
  configCopies,
  editConfig,
  expectCliError,
  fsck,
  info,
  initVolume,
  loopUnavailable,
  lowerSnapshot,
  makeLoopFs,
  mountVolume,
  secretFile,
  unmountVolume,
  writeNamed,
  type LoopFs,
  type Manifest,
} from "../helpers/volume-tools.js";

let sb: Sandbox;
let good: string;
let manifest: Manifest;
let newPass: string;

const FILES = { "a.txt": "alpha\n", "dir/b.bin": seededBytes("errors-b", 9000) };

type Command = "mount" | "passwd" | "rekey" | "fsck" | "info";
const COMMANDS: Command[] = ["mount", "passwd", "rekey", "fsck", "info"];
const KEYED: Command[] = ["mount", "passwd", "rekey", "fsck"];

describe.skipIf(!haveFuse)("bad input", () => {
  sandboxSuite("verrors", async (s) => {
    sb = s;
    good = (await initVolume(sb, ["--block-size", "4096"])).lower;
    const m = await mountVolume(sb, good);
    await writeNamed(m.mountpoint, FILES);
    manifest = await checksumTree(m.mountpoint);
    await unmountVolume(sb, m);
    newPass = await secretFile(sb, "new.pass", "the new passphrase");
  });

  /** Arguments for `command` on `lower` with the key options `key` (a fresh, empty mount point for mount). */
  async function argv(
    command: Command,
    lower: string,
    key: string[] = ["--passfile", sb.passfile],
  ): Promise<string[]> {
    switch (command) {
      case "mount":
        return ["mount", ...key, lower, await sb.mkdir("mnt")];
      case "passwd":
        return ["passwd", ...key, "--new-passfile", newPass, ...MIN_KDF, lower];
      case "rekey":
        return ["rekey", ...key, lower];
      case "fsck":
        return ["fsck", ...key, lower];
      case "info":
        return ["info", lower];
    }
  }

  async function copyOfGood(): Promise<string> {
    const dir = sb.path("copy");
    await runOk("cp", ["-a", good, dir]);
    return dir;
  }

  /** Runs `args` and checks the error contract; nothing may be left mounted. */
  async function expectError(args: string[], code: number, pattern?: RegExp): Promise<void> {
    const mountpoint = args[0] === "mount" ? args[args.length - 1]! : undefined;
    const wasMounted = mountpoint !== undefined && isMounted(mountpoint);
    const r = await cli(sb, args);
    expectCliError(r, code, pattern);
    expect(r.stdout).toBe("");
    if (mountpoint !== undefined) expect(isMounted(mountpoint)).toBe(wasMounted);
  }

  describe("arguments", () => {
    it.each([
      [["init"], /missing required argument 'lower'/],
      [["mount"], /missing required argument 'lower'/],
      [["mount", "/tmp"], /missing required argument 'mountpoint'/],
      [["umount"], /missing required argument 'mountpoint'/],
      [["passwd"], /missing required argument 'lower'/],
      [["rekey"], /missing required argument 'lower'/],
      [["fsck"], /missing required argument 'lower'/],
      [["info"], /missing required argument 'lower'/],
      [["status", "--bogus"], /unknown option '--bogus'/],
      [["fsck", "--jsn", "/tmp"], /unknown option '--jsn'/],
      [["init", "--kdf-memory", "lots", "/tmp/x"], /--kdf-memory must be a positive integer/],
      [["passwd", "--remove-slot", "-1", "/tmp/x"], /--remove-slot|unknown option/],
      [["unknown-command"], /missing required argument 'mountpoint'/],
    ])("%j: usage error (exit 2)", async (args, pattern) => {
      await expectError(args, 2, pattern);
    });

    it.each(COMMANDS)("%s: a missing lower directory (exit 4)", async (command) => {
      await expectError(await argv(command, join(sb.dir, "no-such-dir")), 4, /no such directory/);
    });

    it.each(COMMANDS)("%s: a lower that is not a volume (exit 4)", async (command) => {
      const empty = await sb.mkdir("empty");
      await expectError(await argv(command, empty), 4, /not a cryptmount volume/);
      const withFiles = await sb.mkdir("stuff");
      await writeFile(join(withFiles, "notes.txt"), "not a volume\n");
      await expectError(await argv(command, withFiles), 4, /not a cryptmount volume/);
      const file = join(withFiles, "notes.txt");
      await expectError(await argv(command, file), 4, /not a directory/);
    });
  });

  describe("keys", () => {
    it.each(KEYED)(
      "%s: wrong passphrase, key file or recovery key (exit 3), config unchanged",
      async (command) => {
        const before = await configCopies(good);
        const wrong = await secretFile(sb, "wrong.pass", "wrong passphrase");
        await expectError(await argv(command, good, ["--passfile", wrong]), 3, /wrong passphrase/);
        const key = await secretFile(sb, "wrong.key", seededBytes("not a slot", 64));
        await expectError(await argv(command, good, ["--keyfile", key]), 3, /no keyfile key slot/);
        const rk = await secretFile(
          sb,
          "wrong.recovery",
          "00000-00000-00000-00000-00000-00000-00000-00000-00000-00000-00000",
        );
        await expectError(
          await argv(command, good, ["--recovery", "--passfile", rk]),
          3,
          /recovery key/,
        );
        await expectError(
          await argv(command, good, ["--extpass", "echo wrong passphrase"]),
          3,
          /wrong passphrase/,
        );
        expect(await configCopies(good)).toEqual(before);
      },
    );

    it.each(KEYED)("%s: unreadable or empty passphrase file (exit 2)", async (command) => {
      await expectError(
        await argv(command, good, ["--passfile", join(sb.dir, "no-such.pass")]),
        2,
        /cannot read passphrase file \(no such file\)/,
      );
      await expectError(
        await argv(command, good, ["--passfile", sb.dir]),
        2,
        /cannot read passphrase file \(EISDIR\)/,
      );
      const empty = await secretFile(sb, "empty.pass", Buffer.alloc(0));
      await expectError(await argv(command, good, ["--passfile", empty]), 2, /empty passphrase/);
      const newline = await secretFile(sb, "newline.pass", "\n");
      await expectError(await argv(command, good, ["--passfile", newline]), 2, /empty passphrase/);
      await expectError(
        await argv(command, good, ["--keyfile", join(sb.dir, "no-such.key")]),
        2,
        /cannot read key file/,
      );
    });

    it("passwd: unreadable or empty new passphrase (exit 2), config unchanged", async () => {
      const before = await configCopies(good);
      const base = ["passwd", "--passfile", sb.passfile, ...MIN_KDF, good];
      await expectError(
        [...base, "--new-passfile", join(sb.dir, "missing.pass")],
        2,
        /cannot read passphrase file/,
      );
      await expectError(
        [...base, "--new-passfile", await secretFile(sb, "empty.pass", Buffer.alloc(0))],
        2,
        /empty passphrase/,
      );
      await expectError(
        [...base, "--add-keyfile", await secretFile(sb, "short.key", Buffer.alloc(16, 7))],
        2,
        /at least 32 bytes/,
      );
      await expectError([...base, "--new-passfile", newPass, "--kdf-memory", "1024"], 2, /minimum/);
      expect(await configCopies(good)).toEqual(before);
    });

    it("init: bad input creates nothing", async () => {
      const target = join(sb.dir, "never-created");
      const cases: [string[], number, RegExp][] = [
        [["--passfile", join(sb.dir, "missing.pass")], 2, /cannot read passphrase file/],
        [
          ["--passfile", await secretFile(sb, "empty.pass", Buffer.alloc(0))],
          2,
          /empty passphrase/,
        ],
        [["--passfile", sb.passfile, "--block-size", "1000"], 2, /block size 1000/],
        [["--passfile", sb.passfile, "--block-size", String(2 * 1024 * 1024)], 2, /block size/],
        [["--passfile", sb.passfile, "--kdf-memory", "1024"], 2, /minimum/],
        [["--keyfile", await secretFile(sb, "short.key", Buffer.alloc(8))], 2, /at least 32 bytes/],
      ];
      for (const [opts, code, pattern] of cases) {
        await expectError(["init", "--no-recovery", ...MIN_KDF, ...opts, target], code, pattern);
        expect(existsSync(target), opts.join(" ")).toBe(false);
      }
      // Not empty, already a volume, a regular file: refused (exit 1), left as they were.
      const full = await sb.mkdir("full");
      await writeFile(join(full, "x"), "x");
      await expectError(
        ["init", "--no-recovery", "--passfile", sb.passfile, ...MIN_KDF, full],
        1,
        /not empty/,
      );
      expect(await readdir(full)).toEqual(["x"]);
      const before = await configCopies(good);
      await expectError(
        ["init", "--no-recovery", "--passfile", sb.passfile, ...MIN_KDF, good],
        1,
        /already a cryptmount volume/,
      );
      expect(await configCopies(good)).toEqual(before);
      await expectError(
        ["init", "--no-recovery", "--passfile", sb.passfile, ...MIN_KDF, join(full, "x")],
        1,
        /not a directory/,
      );
    });
  });

  describe("damaged or unknown configs", () => {
    it.each(COMMANDS)("%s: garbage in both config copies (exit 4)", async (command) => {
      const v = await copyOfGood();
      await writeFile(join(v, CONFIG), "this is not JSON {");
      await writeFile(join(v, CONFIG_BAK), "\0\0\0 garbage");
      await expectError(await argv(command, v), 4, /volume config: not valid JSON/);
      // Truncated half-way (a torn copy, in both).
      const w = await copyOfGood();
      const [text] = await configCopies(w);
      for (const name of [CONFIG, CONFIG_BAK])
        await writeFile(join(w, name), text.slice(0, text.length / 2));
      await expectError(await argv(command, w), 4, /volume config/);
    });

    it("garbage in the primary copy only: the backup is used with a warning; mount works", async () => {
      const v = await copyOfGood();
      await writeFile(join(v, CONFIG), "garbage\n");
      expect((await info(sb, v)).configSource).toMatch(/backup/);

      const mnt = await sb.mkdir("mnt");
      const r = await cli(sb, ["mount", "--passfile", sb.passfile, v, mnt]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/primary volume config unreadable; using the backup copy/);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(await checksumTree(mnt)).toEqual(manifest);
      await unmountVolume(sb, { lower: v, mountpoint: mnt, pid: sb.serverPid(mnt)! });

      const { code, report } = await fsck(sb, v);
      expect(code).toBe(0);
      expect(report.problems).toEqual([]);

      // A primary that is missing altogether: the same.
      const w = await copyOfGood();
      await rm(join(w, CONFIG));
      const m = await mountVolume(sb, w);
      expect(await checksumTree(m.mountpoint)).toEqual(manifest);
      await unmountVolume(sb, m);

      // A config operation rewrites both copies: the primary is whole again.
      const keyfile = await secretFile(sb, "k", seededBytes("repair", 32));
      const out = await cli(sb, ["passwd", "--passfile", sb.passfile, "--add-keyfile", keyfile, v]);
      expect(out.code, out.stderr).toBe(0);
      const [primary, backup] = await configCopies(v);
      expect(primary).toBe(backup);
      expect((await info(sb, v)).configSource).toBe("primary");
    });

    it.each(COMMANDS)(
      "%s: an unknown format version (exit 4, says so), even with an intact backup",
      async (command) => {
        const v = await copyOfGood();
        await editConfig(v, (c) => (c.version = 4));
        await expectError(await argv(command, v), 4, /format version 4 is not supported/);
        const w = await copyOfGood();
        await editConfig(w, (c) => (c.version = 99), "primary");
        await expectError(await argv(command, w), 4, /format version 99 is not supported/);
      },
    );

    it.each(COMMANDS)("%s: an unknown feature (exit 4, names it)", async (command) => {
      const v = await copyOfGood();
      await editConfig(v, (c) => (c.features = [...(c.features as string[]), "warp-drive"]));
      await expectError(await argv(command, v), 4, /features this build does not know: warp-drive/);
    });

    it.each(KEYED)(
      "%s: a config edited without the key (MAC) is refused (exit 4)",
      async (command) => {
        const v = await copyOfGood();
        await editConfig(v, (c) => (c.blockSize = 8192));
        await expectError(await argv(command, v), 4, /failed authentication/);
      },
    );
  });

  describe("mount points", () => {
    it("missing, not a directory, not empty, inside the volume (exit 5); umount of a non-mount (exit 5)", async () => {
      const key = ["--passfile", sb.passfile];
      await expectError(
        ["mount", ...key, good, join(sb.dir, "no-such-mnt")],
        5,
        /mount point does not exist/,
      );
      await expectError(["mount", ...key, good, sb.passfile], 5, /not a directory/);
      const busy = await sb.mkdir("busy");
      await writeFile(join(busy, "file"), "x");
      await expectError(["mount", ...key, good, busy], 5, /not empty/);
      const v = await copyOfGood();
      await mkdir(join(v, "inside"));
      await expectError(["mount", ...key, v, join(v, "inside")], 5, /inside the volume/);
      await expectError(["umount", await sb.mkdir("idle")], 5, /not a mounted cryptmount volume/);
      await expectError(["umount", join(sb.dir, "nowhere")], 5, /not a mounted cryptmount volume/);
    });

    it("already mounted (exit 6): the same mount point, or the same volume elsewhere", async () => {
      const m = await mountVolume(sb, good);
      const other = await copyOfGood();
      await expectError(
        ["mount", "--passfile", sb.passfile, other, m.mountpoint],
        6,
        /something is already mounted there/,
      );
      expect(sb.serverPid(m.mountpoint)).toBe(m.pid);
      await expectError(
        ["mount", "--passfile", sb.passfile, good, await sb.mkdir("mnt")],
        6,
        /already mounted at/,
      );
      expect(await checksumTree(m.mountpoint)).toEqual(manifest);
      await unmountVolume(sb, m);
    });
  });
});

// ---------------------------------------------------------------------------

const WRITE_UNTIL_FULL = String.raw`
import errno, json, os, sys
path, chunk_size = sys.argv[1], int(sys.argv[2])
result = {"written": 0}
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
try:
    i = 0
    while True:
        n = os.write(fd, bytes([i % 251]) * chunk_size)
        result["written"] += n
        i += 1
except OSError as e:
    result["error"] = errno.errorcode.get(e.errno, str(e.errno))
try:
    os.fsync(fd)
except OSError as e:
    result["fsync"] = errno.errorcode.get(e.errno, str(e.errno))
try:
    os.close(fd)
except OSError as e:
    result["close"] = errno.errorcode.get(e.errno, str(e.errno))
json.dump(result, sys.stdout)
`;

const TRY_MORE = String.raw`
import errno, json, os, sys
root = sys.argv[1]
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
def new_file():
    with open(os.path.join(root, "after-full.txt"), "wb") as f:
        f.write(os.urandom(20000))
attempt("new_file", new_file)
attempt("mkdir", lambda: os.mkdir(os.path.join(root, "after-full-dir")))
def append():
    with open(os.path.join(root, "keep/small.txt"), "ab") as f:
        f.write(b"y" * 70000)
attempt("append", append)
json.dump(out, sys.stdout)
`;

describe.skipIf(!haveFuse)("a full disk", () => {
  let disk: LoopFs | undefined;
  let skipReason: string | undefined;
  let fs: Sandbox;

  beforeAll(async () => {
    fs = await Sandbox.create("vfull");
    skipReason = await loopUnavailable();
  });
  afterEach(async () => {
    await fs.unmountAll();
    await disk?.cleanup();
    disk = undefined;
  });
  afterAll(async () => {
    await fs?.cleanup();
  });

  /** A new volume on an 8 MiB loop filesystem (`disk`); undefined, with the test skipped, without loop devices. */
  async function volumeOnSmallDisk(ctx: {
    skip: (note: string) => void;
  }): Promise<{ lower: string; diskDir: string } | undefined> {
    if (skipReason) {
      ctx.skip(`loop devices unavailable: ${skipReason}`);
      return undefined;
    }
    disk = await makeLoopFs(fs, 8);
    const lower = join(disk.dir, "lower");
    await runOk(process.execPath, [
      CLI,
      "init",
      "--no-recovery",
      "--passfile",
      fs.passfile,
      ...MIN_KDF,
      lower,
    ]);
    return { lower, diskDir: disk.dir };
  }

  /** Fills what is left of the filesystem with a file outside the volume, in small writes, until nothing fits. */
  async function fillRest(dir: string): Promise<void> {
    for (let round = 0; round < 3; round++) {
      await pyOk(WRITE_UNTIL_FULL.replace("os.O_TRUNC", "os.O_APPEND"), [
        join(dir, "filler"),
        "1024",
      ]);
    }
  }

  it("writing past capacity fails with ENOSPC (not EIO); earlier files stay intact; passwd and rekey fail cleanly", async (ctx) => {
    const small = await volumeOnSmallDisk(ctx);
    if (!small) return;
    const { lower, diskDir } = small;
    let m = await mountVolume(fs, lower);
    const keep = {
      "keep/a.bin": seededBytes("full-a", 200_000),
      "keep/small.txt": "small\n",
      "keep/empty": "",
    };
    await writeNamed(m.mountpoint, keep);
    const keepSums = await checksumTree(m.mountpoint);

    // Fill the disk through the mount.
    const big = JSON.parse(
      await pyOk(WRITE_UNTIL_FULL, [join(m.mountpoint, "big.bin"), String(64 * 1024)]),
    ) as Record<string, string | number>;
    expect(big.error, JSON.stringify(big)).toBe("ENOSPC");
    expect(big.written as number).toBeGreaterThan(4 * 1024 * 1024);
    for (const k of ["fsync", "close"]) if (big[k] !== undefined) expect(big[k], k).toBe("ENOSPC");

    // More writes of every kind: ENOSPC, never EIO.
    await fillRest(diskDir);
    const more = JSON.parse(await pyOk(TRY_MORE, [m.mountpoint])) as Record<string, string>;
    for (const [what, result] of Object.entries(more))
      expect([what, result]).not.toEqual([what, "EIO"]);
    expect(more.mkdir).toBe("ENOSPC");
    expect(more.append).toBe("ENOSPC");
    expect(["ENOSPC", "ok"]).toContain(more.new_file);

    // The files written before are intact.
    const after = await checksumTree(m.mountpoint, Object.keys(keepSums));
    expect(after).toEqual(keepSums);
    await unmountVolume(fs, m);

    // fsck reports nothing about them (whatever it says about the files that hit the full disk).
    const report = await fsck(fs, lower);
    const aboutKept = report.report.problems.filter((p) => p.path?.startsWith("/keep"));
    expect(aboutKept).toEqual([]);

    // passwd on the full disk: fails cleanly, config unchanged, no temp file left, old passphrase works.
    await fillRest(diskDir);
    const before = await configCopies(lower);
    const newPass = await secretFile(fs, "new.pass", "never set");
    const r = await cli(fs, [
      "passwd",
      "--passfile",
      fs.passfile,
      "--new-passfile",
      newPass,
      ...MIN_KDF,
      lower,
    ]);
    expectCliError(r, 1, /cannot write the volume config \(no space left on device\)/);
    expect(await configCopies(lower)).toEqual(before);
    expect((await readdir(lower)).filter((n) => n.startsWith(CONFIG))).toEqual(
      [CONFIG, CONFIG_BAK].sort(),
    );

    // rekey too: refused before any header changes.
    const snapshot = lowerSnapshot(lower);
    const rk = await cli(fs, ["rekey", "--passfile", fs.passfile, lower]);
    expectCliError(rk, 1, /cannot write the volume config/);
    expect(await configCopies(lower)).toEqual(before);
    expect(lowerSnapshot(lower)).toEqual(snapshot);
    expect((await info(fs, lower)).rekeyInProgress).toBeUndefined();

    m = await mountVolume(fs, lower, { key: ["--passfile", fs.passfile] });
    expect(await checksumTree(m.mountpoint, Object.keys(keepSums))).toEqual(keepSums);
    await unmountVolume(fs, m);
    await expectMountFails(fs, lower, newPass);
  });

  // A write that fails with ENOSPC part-way cuts the lower file back and
  // reseals the old final block; a create that fails unlinks its lower file.
  it("a write or create that fails with ENOSPC leaves the volume consistent (fsck clean)", async (ctx) => {
    const small = await volumeOnSmallDisk(ctx);
    if (!small) return;
    const { lower, diskDir } = small;
    const m = await mountVolume(fs, lower);
    const big = JSON.parse(
      await pyOk(WRITE_UNTIL_FULL, [join(m.mountpoint, "big.bin"), String(64 * 1024)]),
    ) as Record<string, string | number>;
    expect(big.error).toBe("ENOSPC");
    await fillRest(diskDir);
    await pyOk(TRY_MORE, [m.mountpoint]);
    // What the writer was told succeeded reads back.
    const readBack = await checksumTree(m.mountpoint, ["big.bin"], true);
    await unmountVolume(fs, m);
    expect(readBack["big.bin"]).not.toMatch(/^error:/);
    const { code, report } = await fsck(fs, lower);
    expect(report.problems.filter((p) => p.severity === "error")).toEqual([]);
    expect(code).toBe(0);
  });
});

async function expectMountFails(sandbox: Sandbox, lower: string, passfile: string): Promise<void> {
  const mnt = await sandbox.mkdir("mnt");
  const r = await cli(sandbox, ["mount", "--passfile", passfile, lower, mnt]);
  expectCliError(r, 3, /wrong passphrase/);
}
