// The libfuse 3 binding (native/fuse3) as programs see it: node IDs and
// forgets, READDIRPLUS listings, exact timestamps, create and rename flags,
// fallocate, open-but-unlinked files, readahead, and the end of a connection.
// Everything runs in child processes against the CLI's background server.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  Sandbox,
  mountedSuite,
  abortConnection,
  alive,
  forceUnmount,
  haveFuse,
  mountEntry,
  pyOk,
  q,
  run,
  runOk,
  shOk,
  waitForExit,
  type Mounted,
  type SuiteMount,
} from "../helpers/volume.js";

const isRoot = process.getuid?.() === 0;

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

  it("fallocate grows a file with zeros; hole punching is refused", async () => {
    const f = join(work, "alloc");
    await shOk(`printf 'head' > ${q(f)}`);
    await runOk("fallocate", ["-l", "100000", f]);
    expect(await runOk("stat", ["-c", "%s", f])).toBe("100000");
    expect(await shOk(`head -c 4 ${q(f)}; tail -c +5 ${q(f)} | tr -d '\\0' | wc -c`)).toBe("head0");
    await runOk("fallocate", ["-o", "10", "-l", "10", f]); // inside the file: nothing to do
    expect(await runOk("stat", ["-c", "%s", f])).toBe("100000");
    const punch = await run("fallocate", ["-p", "-o", "0", "-l", "4096", f]);
    expect(punch.code).not.toBe(0);
    expect(punch.stderr).toMatch(/not supported|unsupported/i);
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
});
