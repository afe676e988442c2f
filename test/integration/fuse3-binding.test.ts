// The libfuse 3 binding (native/fuse3) as programs see it: node IDs and
// forgets, READDIRPLUS listings, exact timestamps, create and rename flags,
// fallocate, open-but-unlinked files, readahead, the end of a connection,
// names that are not UTF-8, FSYNCDIR. Everything runs in child processes
// against the CLI's background server, or against a small server (SERVER
// below) that drives the addon directly to misbehave as a buggy JS side would.

import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BINDING_VERSION, OP, nativeBinding, sameOps } from "../../src/fs/fuse3/binding.js";
import {
  ROOT,
  Sandbox,
  mountedSuite,
  abortConnection,
  alive,
  forceUnmount,
  haveFuse,
  isMounted,
  mountEntry,
  pyOk,
  q,
  run,
  runOk,
  shOk,
  start,
  waitFor,
  waitForExit,
  type Mounted,
  type RunResult,
  type SuiteMount,
} from "../helpers/volume.js";

const isRoot = process.getuid?.() === 0;

const DIST = join(ROOT, "dist", "fs");

/**
 * A server of its own (run by node in a child process) on the addon directly:
 * mode "raw" serves a root directory through dispatch and misbehaves on
 * purpose when looking up some names; "adapter" serves a fake FileSystem
 * through FuseMount and the adapter. It prints JSON lines ({"ready": true} once mounted) and unmounts on
 * SIGTERM, then exits by itself.
 */
const SERVER = `
const [distDir, mountpoint, mode] = process.argv.slice(1);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
if (mode === "raw") {
  const { nativeBinding, OP, ATTR_FIELDS } = await import(distDir + "/fuse3/binding.js");
  const native = nativeBinding();
  const ENOENT = 2, EIO = 5, ENOSYS = 38;
  const t = Math.floor(Date.now() / 1000);
  const modes = new Map([[1, 0o40755]]);
  const names = new Map();
  const targets = new Map([["long-link", "x".repeat(5000)], ["nul-link", "a\\0b"], ["ok-link", "target"]]);
  const links = new Map();
  let nextIno = 2;
  const attr = (ino) => Float64Array.of(ino, modes.get(ino), 1, 0, 0, 0, 0, 4096, 0, t, 0, t, 0, t, 0);
  const bogus = [0, -1, 0.5, NaN, Infinity, 2 ** 53, "1", {}, null, undefined];
  const lookup = (req, name) => {
    switch (name) {
      case "double":
        return say({ double: [native.replyErr(req, ENOENT), native.replyErr(req, ENOENT), native.replyEntry(req, 1, attr(1))] });
      case "bogus":
        say({
          bogus: bogus.map((id) => native.replyErr(id, EIO)),
          stale: native.replyErr(req - 1, EIO),
          ahead: native.replyAttr(req + 1000000, attr(1)),
          dir: native.replyDir(req + 1000000, 4096, 0, [], new Float64Array(0), null),
        });
        return native.replyErr(req, ENOENT);
      case "late":
        native.replyErr(req, ENOENT);
        return setTimeout(() => say({ late: native.replyEntry(req, 1, attr(1)) }), 20);
      case "throws":
        throw new Error("a bug in dispatch");
      case "short":
        try {
          native.replyEntry(req);
        } catch (err) {
          say({ short: err.name, again: native.replyErr(req, ENOENT) });
        }
        return;
      case "errno":
        return native.replyErr(req, 600);
    }
    if (targets.has(name) && !names.has(name)) {
      const ino = nextIno++;
      modes.set(ino, 0o120777);
      links.set(ino, targets.get(name));
      names.set(name, ino);
    }
    const ino = names.get(name);
    return ino === undefined ? native.replyErr(req, ENOENT) : native.replyEntry(req, ino, attr(ino));
  };
  const dispatch = (op, req, ...a) => {
    switch (op) {
      case OP.INIT:
        return say({ ready: true });
      case OP.EXIT:
      case OP.FORGET:
        return;
      case OP.LOOKUP:
        return a[0] === 1 ? lookup(req, a[1]) : native.replyErr(req, ENOENT);
      case OP.GETATTR:
      case OP.SETATTR:
        return native.replyAttr(req, attr(a[0]));
      case OP.MKDIR: {
        const ino = nextIno++;
        modes.set(ino, 0o40000 | a[2]);
        names.set(a[1], ino);
        return native.replyEntry(req, ino, attr(ino));
      }
      case OP.READLINK:
        return native.replyReadlink(req, links.get(a[0]));
      case OP.OPENDIR:
        return native.replyOpen(req, a[0], 0);
      case OP.READDIR:
      case OP.READDIRPLUS: {
        // A name no directory can hold, once "bad-listing" exists.
        const bad = names.has("bad-listing") ? ["x".repeat(300)] : [];
        const all = [".", "..", ...names.keys(), ...bad].slice(a[2]);
        const attrs = new Float64Array(all.length * ATTR_FIELDS);
        all.forEach((_, i) => attrs.set([1, 0o40000], i * ATTR_FIELDS));
        const nodeids = op === OP.READDIRPLUS ? new Float64Array(all.length) : null;
        return native.replyDir(req, a[1], a[2], all, attrs, nodeids);
      }
      case OP.FSYNCDIR:
        say({ fsyncdir: a.slice(0, 2) });
        return native.replyErr(req, 0);
      case OP.RELEASEDIR:
      case OP.ACCESS:
        return native.replyErr(req, 0);
      default:
        return native.replyErr(req, ENOSYS);
    }
  };
  const session = native.mount(mountpoint, "fsname=cryptmount-test,subtype=cryptmount-test", dispatch, 0, 0, 1 << 20, 0, 0);
  process.on("SIGTERM", () => native.unmount(session));
} else {
  const { FuseMount } = await import(distDir + "/fuse3/mount.js");
  const { FsError } = await import(distDir + "/errors.js");
  const dir = (ino) => ({ mode: 0o40755, uid: 0, gid: 0, size: 0, nlink: 2, ino, inode: "1:" + ino, dev: 1, rdev: 0, blksize: 4096, blocks: 0, atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n });
  const root = { displayPath: "/" };
  const d = { displayPath: "/d" };
  const fs = {
    root,
    lookup: async (place) => {
      if (place.parent === root && place.name === "d") return { attr: dir(2), dir: d };
      throw new FsError("ENOENT");
    },
    releaseDir: () => undefined,
    getattr: async (target) => dir(target.dir === d ? 2 : 1),
    list: async () => [],
    fsyncdir: async (handle, dataOnly) => say({ fsyncdir: [handle.displayPath, dataOnly] }),
  };
  const m = new FuseMount(mountpoint, fs, { fsname: "cryptmount-test", onExternalUnmount: () => undefined, spinMicroseconds: 0 }, { debug: () => undefined });
  await m.mount();
  say({ ready: true });
  process.on("SIGTERM", () => void m.unmount());
}
`;

interface OwnServer {
  readonly mountpoint: string;
  /** The JSON lines printed so far. */
  readonly lines: () => Record<string, unknown>[];
  /** SIGTERM (it unmounts), then its exit. */
  readonly stop: () => Promise<RunResult>;
}

async function ownServer(mode: "raw" | "adapter"): Promise<OwnServer> {
  const mountpoint = await sb.mkdir(`own-${mode}`);
  const { proc, done } = start(
    process.execPath,
    ["--input-type=module", "-e", SERVER, DIST, mountpoint, mode],
    { timeoutMs: 60_000 },
  );
  let out = "";
  proc.stdout!.on("data", (chunk: Buffer) => (out += chunk.toString("utf8")));
  const lines = () =>
    out
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  let exited: RunResult | undefined;
  void done.then((r) => (exited = r));
  await waitFor(`the ${mode} server to mount`, () => {
    if (exited) throw new Error(`the ${mode} server exited: ${exited.stderr}`);
    return lines().some((l) => l.ready) && isMounted(mountpoint);
  });
  return {
    mountpoint,
    lines,
    stop: async () => {
      proc.kill("SIGTERM");
      const r = await done;
      if (isMounted(mountpoint)) await forceUnmount(mountpoint);
      return r;
    },
  };
}

let sb: Sandbox;
let m: Mounted;
let work: string;

describe.skipIf(!haveFuse)("the libfuse 3 binding", () => {
  mountedSuite("fuse3", (s: SuiteMount) => ({ sb, m, work } = s));

  it("a directory of 3000 entries lists completely, with attributes that match stat", async () => {
    await pyOk(
      `import os, sys
for i in range(3000):
    with open(os.path.join(sys.argv[1], 'entry-%04d' % i), 'wb') as f: f.write(b'x' * (i % 50))`,
      [work],
    );
    const names = (await runOk("ls", ["-f", work])).split("\n").filter(Boolean);
    expect(names.length).toBe(3002); // with . and ..
    expect(new Set(names).size).toBe(3002);
    // ls -l takes its sizes from the READDIRPLUS reply (or lookups): all must agree with stat.
    const listed = (await shOk(`ls -l ${q(work)} | awk 'NR>1 {print $9, $5}'`)).split("\n");
    expect(listed).toHaveLength(3000);
    for (const line of listed.slice(0, 3000)) {
      const [name, size] = line.split(" ");
      expect(Number(size)).toBe(Number(name!.slice(6)) % 50);
    }
  });

  it("names the kernel forgot (drop_caches) are looked up again and still work", async () => {
    await pyOk(
      `import os, sys
for d in range(5):
    os.mkdir(os.path.join(sys.argv[1], 'd%d' % d))
    for i in range(200):
        with open(os.path.join(sys.argv[1], 'd%d' % d, 'f%d' % i), 'w') as f: f.write('%d-%d' % (d, i))`,
      [work],
    );
    const check = () =>
      pyOk(
        `import os, sys
bad = [(d, i) for d in range(5) for i in range(200)
       if open(os.path.join(sys.argv[1], 'd%d' % d, 'f%d' % i)).read() != '%d-%d' % (d, i)]
print(len(bad))`,
        [work],
      );
    expect(await check()).toBe("0");
    if (isRoot) await shOk("sync; echo 2 > /proc/sys/vm/drop_caches"); // dentries and inodes: FORGETs
    expect(await check()).toBe("0");
    await runOk("mv", [join(work, "d1"), join(work, "moved")]);
    if (isRoot) await shOk("echo 2 > /proc/sys/vm/drop_caches");
    expect(await runOk("cat", [join(work, "moved", "f7")])).toBe("1-7");
    await runOk("rm", ["-rf", join(work, "moved")]);
    expect((await runOk("ls", [work])).split("\n")).toEqual(["d0", "d2", "d3", "d4"]);
  });

  it("timestamps keep nanoseconds, before 1970 and after 2038, and touch -a / -m change one time only", async () => {
    const f = join(work, "times");
    await runOk("touch", [f]);
    const stamp = async () => (await runOk("stat", ["-c", "%.9X %.9Y", f])).split(" ");
    await runOk("touch", ["-d", "1960-06-01 12:00:00.123456789", f]);
    expect(await stamp()).toEqual(["-302443199.876543211", "-302443199.876543211"]);
    await runOk("touch", ["-m", "-d", "2200-01-02 03:04:05.000000007", f]);
    expect(await stamp()).toEqual(["-302443199.876543211", "7258215845.000000007"]);
    await runOk("touch", ["-a", "-d", "2001-09-09 01:46:40.5", f]);
    expect(await stamp()).toEqual(["1000000000.500000000", "7258215845.000000007"]);
  });

  it("create honours O_EXCL; rename honours RENAME_NOREPLACE and refuses RENAME_EXCHANGE", async () => {
    const out = await pyOk(
      `import ctypes, errno, os, sys
d = sys.argv[1]
a, b = os.path.join(d, 'a'), os.path.join(d, 'b')
os.close(os.open(a, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
try:
    os.open(a, os.O_CREAT | os.O_EXCL | os.O_WRONLY); print('no error')
except FileExistsError: print('EEXIST')
open(b, 'w').write('b')
libc = ctypes.CDLL(None, use_errno=True)
def renameat2(x, y, flags):
    r = libc.renameat2(-100, x.encode(), -100, y.encode(), flags)
    return errno.errorcode[ctypes.get_errno()] if r else 'ok'
print(renameat2(a, b, 1))  # RENAME_NOREPLACE onto an existing name
print(renameat2(a, b, 2))  # RENAME_EXCHANGE
print(renameat2(a, os.path.join(d, 'c'), 1))
print(sorted(os.listdir(d)), open(b).read())`,
      [work],
    );
    expect(out.split("\n")).toEqual(["EEXIST", "EEXIST", "EINVAL", "ok", "['b', 'c'] b"]);
  });

  it("fallocate grows a file with zeros, keeps the size with -n, punches and zeroes ranges; collapse is refused", async () => {
    const f = join(work, "alloc");
    await shOk(`printf 'head' > ${q(f)}`);
    await runOk("fallocate", ["-l", "100000", f]);
    expect(await runOk("stat", ["-c", "%s", f])).toBe("100000");
    expect(await shOk(`head -c 4 ${q(f)}; tail -c +5 ${q(f)} | tr -d '\\0' | wc -c`)).toBe("head0");
    await runOk("fallocate", ["-o", "10", "-l", "10", f]); // inside the file: nothing to do
    await runOk("fallocate", ["-n", "-o", "0", "-l", "1000000", f]); // KEEP_SIZE
    expect(await runOk("stat", ["-c", "%s", f])).toBe("100000");
    await shOk(`head -c 100000 /dev/zero | tr '\\0' 'a' > ${q(f)}`);
    await runOk("fallocate", ["-p", "-o", "1000", "-l", "70000", f]); // PUNCH_HOLE | KEEP_SIZE
    await runOk("fallocate", ["-z", "-o", "90000", "-l", "20000", f]); // ZERO_RANGE, grows
    expect(await runOk("stat", ["-c", "%s", f])).toBe("110000");
    expect(await shOk(`tr -d '\\0' < ${q(f)} | wc -c`)).toBe(String(1000 + 19000));
    const collapse = await run("fallocate", ["-c", "-o", "0", "-l", "32768", f]);
    expect(collapse.code).not.toBe(0);
    expect(collapse.stderr).toMatch(/not supported|unsupported/i);
  });

  it("an unlinked file keeps its attributes and contents through an open descriptor", async () => {
    const out = await pyOk(
      `import os, sys
p = os.path.join(sys.argv[1], 'gone')
fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o640)
os.write(fd, b'z' * 70000)
os.unlink(p)
st = os.fstat(fd)
print(st.st_size, st.st_nlink, oct(st.st_mode & 0o777))
os.ftruncate(fd, 10)
os.lseek(fd, 0, 0)
print(os.fstat(fd).st_size, os.read(fd, 100))
print(os.path.exists(p))
os.close(fd)`,
      [work],
    );
    expect(out.split("\n")).toEqual(["70000 0 0o640", "10 b'zzzzzzzzzz'", "False"]);
  });

  it("hard links are one inode: same number, link count, and a size change seen through both at once", async () => {
    const a = join(work, "one");
    await shOk(`echo same > ${q(a)}`);
    await runOk("ln", [a, join(work, "two")]);
    const [ia, na] = (await runOk("stat", ["-c", "%i %h", a])).split(" ");
    const [ib, nb] = (await runOk("stat", ["-c", "%i %h", join(work, "two")])).split(" ");
    expect(ia).toBe(ib);
    expect([na, nb]).toEqual(["2", "2"]);
    await runOk("stat", [join(work, "two")]); // cache the second name's attributes
    await shOk(`printf 'longer content' >> ${q(a)}`);
    expect(await runOk("stat", ["-c", "%s", join(work, "two")])).toBe("19");
    await runOk("rm", [a]);
    expect(await runOk("stat", ["-c", "%h", join(work, "two")])).toBe("1");
    expect(await runOk("cat", [join(work, "two")])).toBe("same\nlonger content");
  });

  it.skipIf(!isRoot)("the mount's readahead is raised to 1 MiB", async () => {
    const entry = mountEntry(m.mountpoint);
    expect(entry).toBeDefined();
    const kb = await readFile(`/sys/class/bdi/${entry!.device}/read_ahead_kb`, "utf8");
    expect(kb.trim()).toBe("1024");
  });

  it.skipIf(!isRoot)("an aborted connection ends the server by itself", async () => {
    const victim = await sb.mount(await sb.createVolume("abort-lower"), {
      mountpoint: await sb.mkdir("abort-mnt"),
    });
    expect(alive(victim.pid)).toBe(true);
    expect(await abortConnection(victim.mountpoint)).toBe(true);
    expect(await waitForExit(victim.pid, 10_000)).toBe(true);
    await forceUnmount(victim.mountpoint);
    sb.forget(victim.mountpoint);
  });

  it("the addon exports the operation table binding.ts has; any other table is out of date", () => {
    const native = nativeBinding(); // loading needs no mount
    expect(native.version).toBe(BINDING_VERSION);
    expect({ ...native.ops }).toEqual({ ...OP });
    expect(Object.isFrozen(native.ops)).toBe(true);
    expect(sameOps(native.ops)).toBe(true);
    expect(sameOps({ ...native.ops, FSYNCDIR: 33 })).toBe(false);
    expect(sameOps({ ...native.ops, EXTRA: 40 })).toBe(false);
    const older = Object.fromEntries(Object.entries(native.ops).filter(([n]) => n !== "FSYNCDIR"));
    expect(sameOps(older)).toBe(false);
    expect(sameOps(undefined)).toBe(false);
  });

  it("names that are not UTF-8 are refused with EILSEQ (no aliasing); multi-byte names work", async () => {
    const out = await pyOk(
      `import errno, os, stat, sys
d = os.fsencode(sys.argv[1])
p = lambda name: os.path.join(d, name)
def err(f):
    try:
        f()
        return 'ok'
    except OSError as e:
        return errno.errorcode[e.errno]
valid = 'é€😀'.encode()
def create(name):
    os.close(os.open(p(name), os.O_CREAT | os.O_WRONLY))
with open(p(valid), 'w') as f: f.write('multi-byte')
print(err(lambda: create(b'a\\xff')), err(lambda: create(b'a\\xfe')), err(lambda: os.stat(p(b'a\\xff'))))
# overlong '/', a surrogate, above U+10FFFF, a lone continuation byte, a cut sequence
print(*[err(lambda: os.mkdir(p(n))) for n in (b'\\xc0\\xaf', b'\\xed\\xa0\\x80', b'\\xf4\\x90\\x80\\x80', b'\\x80', b'x\\xe2\\x82')])
print(err(lambda: os.symlink(b'target\\xff', p(b'link'))), err(lambda: os.symlink(valid, p(b'link'))))
print(err(lambda: os.rename(p(valid), p(b'b\\xff'))), err(lambda: os.link(p(valid), p(b'c\\xff'))),
      err(lambda: os.unlink(p(b'a\\xff'))), err(lambda: os.rmdir(p(b'a\\xff'))),
      err(lambda: os.mknod(p(b'f\\xff'), 0o600 | stat.S_IFIFO)))
print(err(lambda: os.setxattr(p(valid), b'user.\\xff', b'v')), err(lambda: os.getxattr(p(valid), b'user.\\xff')),
      err(lambda: os.removexattr(p(valid), b'user.\\xff')))
print(sorted(os.listdir(sys.argv[1])), os.readlink(p(b'link')) == valid, open(p(valid)).read())`,
      [work],
    );
    expect(out.split("\n")).toEqual([
      "EILSEQ EILSEQ EILSEQ",
      "EILSEQ EILSEQ EILSEQ EILSEQ EILSEQ",
      "EILSEQ ok",
      "EILSEQ EILSEQ EILSEQ EILSEQ EILSEQ",
      "EILSEQ EILSEQ EILSEQ",
      "['link', 'é€😀'] True multi-byte",
    ]);
  });

  it.skipIf(!isRoot)(
    "a mount for root alone does without default_permissions and answers access(2) as root; allow_other keeps them",
    async () => {
      const superOptions = (mountpoint: string) =>
        readFileSync("/proc/self/mountinfo", "utf8")
          .split("\n")
          .find((l) => l.split(" ")[4] === mountpoint)
          ?.split(" - ")[1]
          ?.split(" ")[2];
      expect(superOptions(m.mountpoint)).not.toContain("default_permissions");
      await runOk("mkdir", [join(work, "closed")]);
      await runOk("sh", ["-c", `echo hi > ${q(join(work, "plain"))}`]);
      await runOk("chmod", ["000", join(work, "closed")]);
      await runOk("chmod", ["644", join(work, "plain")]);
      const check = `import os, sys
os.chdir(sys.argv[1])
print(os.access("plain", os.R_OK | os.W_OK), os.access("plain", os.X_OK), os.access("closed", os.X_OK), os.access("missing", os.F_OK))
os.chmod("plain", 0o744)
print(os.access("plain", os.X_OK))
os.chdir("closed")
print("chdir ok")`;
      expect((await pyOk(check, [work])).split("\n")).toEqual([
        "True False True False",
        "True",
        "chdir ok",
      ]);
      const lower = await sb.createVolume("shared");
      const shared = await sb.mount(lower, { args: ["--allow-other"] });
      try {
        expect(superOptions(shared.mountpoint)).toContain("default_permissions");
      } finally {
        await sb.unmount(shared);
      }
    },
  );

  it("fsync of a directory succeeds on the volume", async () => {
    await runOk("mkdir", [join(work, "d")]);
    expect(
      await pyOk(
        "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.fdatasync(fd); print('ok')",
        [join(work, "d")],
      ),
    ).toBe("ok");
  });

  it("FSYNCDIR reaches the filesystem through the adapter with the directory's handle", async () => {
    const fsync =
      "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.fdatasync(fd); print('ok')";
    const withIt = await ownServer("adapter");
    try {
      expect(await pyOk(fsync, [join(withIt.mountpoint, "d")])).toBe("ok");
      expect(withIt.lines().filter((l) => l.fsyncdir)).toEqual([
        { fsyncdir: ["/d", false] },
        { fsyncdir: ["/d", true] },
      ]);
    } finally {
      expect((await withIt.stop()).code).toBe(0);
    }
  });

  it("a second answer, a bogus request id or a throwing dispatch never crash the server; the mount keeps working", async () => {
    const own = await ownServer("raw");
    try {
      const out = await pyOk(
        `import errno, os, sys
m = sys.argv[1]
def st(name):
    try:
        os.stat(os.path.join(m, name))
        return 'ok'
    except OSError as e:
        return errno.errorcode[e.errno]
print(*[st(n) for n in ('double', 'bogus', 'late', 'throws', 'short', 'errno', 'double', 'throws')])
os.mkdir(os.path.join(m, 'd'))
print(st('d'), sorted(os.listdir(m)))
fd = os.open(os.path.join(m, 'd'), os.O_RDONLY); os.fsync(fd); os.fdatasync(fd); os.close(fd)
print('fsynced')
def rl(name):
    try:
        return os.readlink(os.path.join(m, name))
    except OSError as e:
        return errno.errorcode[e.errno]
print(rl('long-link'), rl('nul-link'), rl('ok-link'))
os.mkdir(os.path.join(m, 'bad-listing'))
try:
    print(sorted(os.listdir(m)))
except OSError as e:
    print(errno.errorcode[e.errno])`,
        [own.mountpoint],
      );
      expect(out.split("\n")).toEqual([
        "ENOENT ENOENT ENOENT EIO EIO EIO ENOENT EIO",
        "ok ['d']",
        "fsynced",
        "ENAMETOOLONG EIO target",
        "EIO",
      ]);
      const lines = await waitFor("the late answer", () => {
        const all = own.lines();
        return all.some((l) => "late" in l) && all;
      });
      expect(lines).toContainEqual({ double: [true, false, false] });
      expect(lines).toContainEqual({
        bogus: Array<boolean>(10).fill(false),
        stale: false,
        ahead: false,
        dir: -1,
      });
      expect(lines).toContainEqual({ late: false });
      expect(lines).toContainEqual({ short: "TypeError", again: false });
      // FSYNCDIR reaches dispatch with (ino, datasync).
      const fsyncs = lines.filter((l) => l.fsyncdir).map((l) => l.fsyncdir);
      expect(fsyncs).toEqual([
        [2, 0],
        [2, 1],
      ]);
    } finally {
      const r = await own.stop();
      expect(r.signal).toBeNull();
      expect(r.code).toBe(0);
      expect(r.stderr).toBe("");
    }
  });

  it("a mount() that fails after mounting leaves no mount behind", async () => {
    await runOk(process.execPath, [join(ROOT, "scripts", "build-native.mjs")], {
      env: { CRYPTMOUNT_NATIVE_FAULTS: "1" },
    });
    const mountpoint = await sb.mkdir("faults");
    const script = `
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
const [addon, mnt] = process.argv.slice(1);
const native = createRequire(import.meta.url)(addon);
const mounted = () => readFileSync("/proc/self/mountinfo", "utf8").split("\\n").some((l) => l.split(" ")[4] === mnt);
const mount = (dispatch) => native.mount(mnt, "fsname=cryptmount-test,subtype=cryptmount-test", dispatch, 0, 0, 0, 0, 0);
const out = {};
for (const step of ["js", "mount", "nonblock", "poll", "start", "wrap"]) {
  process.env.CRYPTMOUNT_FUSE_FAIL_AT = step;
  try {
    mount(() => undefined);
    out[step] = "mounted";
  } catch (err) {
    out[step] = mounted() ? "left mounted" : "refused";
  }
}
delete process.env.CRYPTMOUNT_FUSE_FAIL_AT;
try { mount(42); } catch (err) { out.notAFunction = err.name + (mounted() ? " left mounted" : ""); }
const session = mount(() => undefined);
out.mounted = mounted();
native.unmount(session);
out.unmounted = !mounted();
console.log(JSON.stringify(out));`;
    // Exits by itself: a failed mount must not leave a libuv handle behind either.
    const r = await run(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        script,
        join(ROOT, "build", "cryptmount_fuse3_faults.node"),
        mountpoint,
      ],
      { timeoutMs: 20_000 },
    );
    if (isMounted(mountpoint)) await forceUnmount(mountpoint);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      js: "refused",
      mount: "refused",
      nonblock: "refused",
      poll: "refused",
      start: "refused",
      wrap: "refused",
      notAFunction: "TypeError",
      mounted: true,
      unmounted: true,
    });
  });
});
