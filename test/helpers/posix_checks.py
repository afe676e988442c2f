#!/usr/bin/env python3
"""POSIX behaviour checks for a mounted volume, one check per run:

    posix_checks.py CHECK DIR [LOWER]

DIR is a fresh, empty directory inside the mount where the check makes its
entries; LOWER is the volume's lower directory, for the checks that measure
the space the encrypted files take. The check prints "ok" (and what it
observed, where that is worth reporting) and exits 0; when the mount does not
behave as POSIX.1-2017 and the Linux man pages say, it prints the reason to
stderr and exits 1. Runs as root; checks that need another user fork and
drop to that user (setgroups/setgid/setuid) in the child.

The expectations come from the standards text: mknod(2)/mkfifo(3),
stat(2)/inode(7) (st_rdev, st_nlink, st_size of a symlink), unix(7),
truncate(2), fallocate(2), lseek(2) (SEEK_DATA/SEEK_HOLE), utimensat(2),
chown(2), chmod(2), link(2), unlink(2), rename(2), symlink(2), and POSIX
"File Times Update" (XBD 4.9) and the sticky-bit rule for directories.
"""

import ctypes
import errno
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import time

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# Users and groups that exist nowhere else: numeric ids are all the kernel needs.
ALICE, BOB, CAROL = 2001, 2002, 2003
STAFF, OTHER, SHARED, NOBODY_GROUP = 3001, 3002, 3005, 3009

# After a failed call, what the server says (not the kernel's attribute cache, 1 s).
ATTR_CACHE_S = 1.1

# A size no format keeps: far beyond the ~2^53-byte maximum of an encrypted file.
BEYOND_MAX = 1 << 60

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
AT_FDCWD = -100

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
libc.fallocate.restype = ctypes.c_int


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(Timespec), ctypes.c_int]
libc.utimensat.restype = ctypes.c_int


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def errname(e):
    return errno.errorcode.get(e, str(e))


def expect_errno(expected, fn, what):
    """Runs fn; it must fail with one of `expected` (a name or a tuple of names)."""
    names = (expected,) if isinstance(expected, str) else expected
    try:
        fn()
    except OSError as e:
        check(errname(e.errno) in names, f"{what}: expected {'/'.join(names)}, got {errname(e.errno)}")
        return
    raise Failure(f"{what}: expected {'/'.join(names)}, but it succeeded")


def fallocate(fd, mode, offset, length):
    if libc.fallocate(fd, mode, offset, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def utimensat(path, atime, mtime):
    """atime/mtime: (sec, nsec), UTIME_NOW or UTIME_OMIT."""

    def ts(t):
        return Timespec(0, t) if isinstance(t, int) else Timespec(t[0], t[1])

    times = (Timespec * 2)(ts(atime), ts(mtime))
    if libc.utimensat(AT_FDCWD, os.fsencode(path), times, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def as_user(uid, gid, groups, fn):
    """Runs fn in a forked child as uid/gid with these supplementary groups.

    Returns None when fn succeeded, else the errno name it failed with.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        out = {}
        try:
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
            try:
                fn()
                out = {"ok": True}
            except OSError as e:
                out = {"errno": errname(e.errno)}
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            out = {"crash": repr(e)}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        c = os.read(r, 65536)
        if not c:
            break
        chunks.append(c)
    os.close(r)
    os.waitpid(pid, 0)
    res = json.loads(b"".join(chunks) or b'{"crash": "no answer"}')
    if "crash" in res:
        raise Failure(f"child as uid {uid}: {res['crash']}")
    return res.get("errno")


def user_ok(uid, gid, groups, fn, what):
    err = as_user(uid, gid, groups, fn)
    check(err is None, f"{what} (as uid {uid}): failed with {err}")


def user_errno(expected, uid, gid, groups, fn, what):
    err = as_user(uid, gid, groups, fn)
    names = (expected,) if isinstance(expected, str) else expected
    check(err is not None, f"{what} (as uid {uid}): expected {'/'.join(names)}, but it succeeded")
    check(err in names, f"{what} (as uid {uid}): expected {'/'.join(names)}, got {err}")


def pattern(seed, n):
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


def write_file(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def read_at(path, offset, length):
    fd = os.open(path, os.O_RDONLY)
    try:
        out = bytearray()
        while len(out) < length:
            c = os.pread(fd, length - len(out), offset + len(out))
            if not c:
                break
            out += c
        return bytes(out)
    finally:
        os.close(fd)


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def lower_usage(lower):
    """Bytes the lower tree takes on its disk (st_blocks of every entry)."""
    total = 0
    for root, dirs, files in os.walk(lower):
        for name in dirs + files:
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def zeros(data):
    return data.count(0) == len(data)


def kind(mode):
    for test, name in (
        (stat.S_ISREG, "regular"),
        (stat.S_ISDIR, "dir"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISCHR, "char"),
        (stat.S_ISBLK, "block"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "unknown"


def expect_node(path, want_kind, perms=None, rdev=None, uid=None, gid=None, nlink=None):
    st = os.lstat(path)
    got = kind(st.st_mode)
    check(got == want_kind, f"{path}: type {got}, expected {want_kind}")
    if perms is not None:
        check(
            stat.S_IMODE(st.st_mode) == perms,
            f"{path}: mode {oct(stat.S_IMODE(st.st_mode))}, expected {oct(perms)}",
        )
    if rdev is not None:
        check(
            (os.major(st.st_rdev), os.minor(st.st_rdev)) == rdev,
            f"{path}: st_rdev {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}, expected {rdev[0]}:{rdev[1]}",
        )
    if uid is not None:
        check((st.st_uid, st.st_gid) == (uid, gid), f"{path}: owner {st.st_uid}:{st.st_gid}, expected {uid}:{gid}")
    if nlink is not None:
        check(st.st_nlink == nlink, f"{path}: st_nlink {st.st_nlink}, expected {nlink}")
    return st


def bind_socket(path):
    """Binds a unix stream socket at path (relative to its directory: sun_path is short)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    os.chdir(os.path.dirname(path))
    try:
        s.bind(os.path.basename(path))
    finally:
        os.chdir(cwd)
    return s


def make_specials(d):
    """One of each special file in d: fifo, char and block device, socket node."""
    os.mkfifo(f"{d}/fifo", 0o640)
    os.mknod(f"{d}/chr", stat.S_IFCHR | 0o620, os.makedev(1, 3))
    os.mknod(f"{d}/blk", stat.S_IFBLK | 0o660, os.makedev(259, 65537))
    bind_socket(f"{d}/sock").close()
    os.chmod(f"{d}/sock", 0o751)
    return {
        "fifo": ("fifo", 0o640, None),
        "chr": ("char", 0o620, (1, 3)),
        "blk": ("block", 0o660, (259, 65537)),
        "sock": ("socket", 0o751, None),
    }


CHECKS = {}


def register(name):
    def wrap(fn):
        CHECKS[name] = fn
        return fn

    return wrap


# --- special files ------------------------------------------------------------


@register("mkfifo")
def _(d, lower):
    os.mkfifo(f"{d}/f", 0o640)
    st = expect_node(f"{d}/f", "fifo", 0o640, uid=0, gid=0, nlink=1)
    check(st.st_size == 0, f"fifo st_size {st.st_size}")
    check("f" in os.listdir(d), "the fifo is not listed")


@register("mknod-chr")
def _(d, lower):
    os.mknod(f"{d}/c", stat.S_IFCHR | 0o620, os.makedev(1, 3))
    expect_node(f"{d}/c", "char", 0o620, rdev=(1, 3), uid=0, gid=0, nlink=1)


@register("mknod-blk")
def _(d, lower):
    os.mknod(f"{d}/b", stat.S_IFBLK | 0o660, os.makedev(259, 65537))
    expect_node(f"{d}/b", "block", 0o660, rdev=(259, 65537), uid=0, gid=0, nlink=1)


@register("mknod-reg")
def _(d, lower):
    os.mknod(f"{d}/r", stat.S_IFREG | 0o640)
    expect_node(f"{d}/r", "regular", 0o640)
    write_file(f"{d}/r", b"mknod'ed regular file")
    check(read_all(f"{d}/r") == b"mknod'ed regular file", "content of a mknod'ed regular file")


@register("mknod-exists")
def _(d, lower):
    write_file(f"{d}/x", b"x")
    expect_errno("EEXIST", lambda: os.mkfifo(f"{d}/x"), "mkfifo over an existing file")
    expect_errno("EEXIST", lambda: os.mknod(f"{d}/x", stat.S_IFCHR | 0o600, os.makedev(1, 3)), "mknod over a file")


@register("socket")
def _(d, lower):
    path = f"{d}/s"
    srv = bind_socket(path)
    srv.listen(1)
    expect_node(path, "socket")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal_alarm(20)
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            os.chdir(d)
            c.connect("s")
            c.sendall(b"ping through the mount")
            reply = c.recv(100)
            code = 0 if reply == b"pong: ping through the mount" else 2
        finally:
            os._exit(code)
    signal_alarm(20)
    conn, _ = srv.accept()
    data = conn.recv(100)
    conn.sendall(b"pong: " + data)
    conn.close()
    _, status = os.waitpid(pid, 0)
    srv.close()
    check(data == b"ping through the mount", f"server received {data!r}")
    check(os.WEXITSTATUS(status) == 0, f"client through the mount failed (status {status})")
    # The node outlives the socket; nobody listens on it any more.
    expect_node(path, "socket")
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    os.chdir(d)
    expect_errno("ECONNREFUSED", lambda: c.connect("s"), "connect to a closed socket's node")


@register("socket-dgram")
def _(d, lower):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    os.chdir(d)
    srv.bind("dg")
    signal_alarm(20)
    cli = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    cli.sendto(b"datagram", "dg")
    check(srv.recv(100) == b"datagram", "datagram through a socket node in the mount")


def signal_alarm(seconds):
    import signal

    signal.alarm(seconds)


@register("special-chmod")
def _(d, lower):
    specials = make_specials(d)
    for name, (k, _, rdev) in specials.items():
        os.chmod(f"{d}/{name}", 0o604)
        expect_node(f"{d}/{name}", k, 0o604, rdev=rdev)


@register("special-chown")
def _(d, lower):
    specials = make_specials(d)
    for name, (k, perms, rdev) in specials.items():
        os.chown(f"{d}/{name}", ALICE, STAFF)
        expect_node(f"{d}/{name}", k, perms, rdev=rdev, uid=ALICE, gid=STAFF)
        os.lchown(f"{d}/{name}", BOB, OTHER)
        expect_node(f"{d}/{name}", k, perms, rdev=rdev, uid=BOB, gid=OTHER)


@register("special-rename")
def _(d, lower):
    specials = make_specials(d)
    os.mkdir(f"{d}/sub")
    for name, (k, perms, rdev) in specials.items():
        os.rename(f"{d}/{name}", f"{d}/{name}.renamed")
        expect_node(f"{d}/{name}.renamed", k, perms, rdev=rdev)
        expect_errno("ENOENT", lambda: os.lstat(f"{d}/{name}"), f"old name of renamed {k}")
        os.rename(f"{d}/{name}.renamed", f"{d}/sub/{name}")
        expect_node(f"{d}/sub/{name}", k, perms, rdev=rdev)
        # Over an existing regular file, which it replaces.
        write_file(f"{d}/victim-{name}", b"replaced")
        os.rename(f"{d}/sub/{name}", f"{d}/victim-{name}")
        expect_node(f"{d}/victim-{name}", k, perms, rdev=rdev)
    check(os.listdir(f"{d}/sub") == [], f"left in sub: {os.listdir(d + '/sub')}")


@register("special-unlink")
def _(d, lower):
    specials = make_specials(d)
    for name in specials:
        os.unlink(f"{d}/{name}")
        expect_errno("ENOENT", lambda: os.lstat(f"{d}/{name}"), f"unlinked {name}")
    check(os.listdir(d) == [], f"left after unlink: {os.listdir(d)}")


@register("special-hardlink")
def _(d, lower):
    specials = make_specials(d)
    for name, (k, perms, rdev) in specials.items():
        os.link(f"{d}/{name}", f"{d}/{name}.2")
        a = expect_node(f"{d}/{name}", k, perms, rdev=rdev, nlink=2)
        b = expect_node(f"{d}/{name}.2", k, perms, rdev=rdev, nlink=2)
        check(a.st_ino == b.st_ino, f"{name}: hard links have st_ino {a.st_ino} and {b.st_ino}")
        os.unlink(f"{d}/{name}")
        expect_node(f"{d}/{name}.2", k, perms, rdev=rdev, nlink=1)


@register("special-attrs")
def _(d, lower):
    """Special files have no content (st_size 0) and keep the times set on them; chmod marks ctime."""
    specials = make_specials(d)
    for i, (name, (k, perms, rdev)) in enumerate(specials.items()):
        path = f"{d}/{name}"
        st = expect_node(path, k, perms, rdev=rdev)
        check(st.st_size == 0, f"{name}: st_size {st.st_size}, expected 0")
        atime, mtime = (1_000_000_000 + i, 123456789), (1_100_000_000 + i, 987654321)
        utimensat(path, atime, mtime)
        st = os.lstat(path)
        check(st.st_atime_ns == atime[0] * 10**9 + atime[1], f"{name}: atime {st.st_atime_ns}")
        check(st.st_mtime_ns == mtime[0] * 10**9 + mtime[1], f"{name}: mtime {st.st_mtime_ns}")
        settle()
        os.chmod(path, 0o600)
        after = os.lstat(path)
        check(after.st_ctime_ns > st.st_ctime_ns, f"{name}: chmod did not update ctime")
        check(after.st_mtime_ns == st.st_mtime_ns, f"{name}: chmod changed mtime")


@register("special-readdir")
def _(d, lower):
    """readdir reports special files with their own type (d_type), never as regular files."""
    specials = make_specials(d)
    entries = {e.name: e for e in os.scandir(d)}
    check(sorted(entries) == sorted(specials), f"listed {sorted(entries)}")
    for name, e in entries.items():
        # DirEntry.is_* answer from d_type alone when it is known.
        check(not e.is_file(follow_symlinks=False), f"{name} is listed as a regular file")
        check(not e.is_dir(follow_symlinks=False), f"{name} is listed as a directory")
        check(not e.is_symlink(), f"{name} is listed as a symlink")
        got = kind(e.stat(follow_symlinks=False).st_mode)
        check(got == specials[name][0], f"{name}: listed entry stats as {got}")
    r = subprocess.run(["find", d, "-mindepth", "1", "-printf", "%f %y\\n"], capture_output=True, text=True)
    types = dict(line.split() for line in r.stdout.splitlines())
    want = {"fifo": "p", "chr": "c", "blk": "b", "sock": "s"}
    check(types == want, f"find -printf %y: {types}")


@register("fifo-data")
def _(d, lower):
    path = f"{d}/pipe"
    os.mkfifo(path, 0o600)
    data = pattern("fifo", 300 * KiB)  # more than a pipe buffer: the writer must wait for the reader
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal_alarm(20)
            fd = os.open(path, os.O_WRONLY)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.close(fd)
            code = 0
        finally:
            os._exit(code)
    signal_alarm(20)
    fd = os.open(path, os.O_RDONLY)
    got = bytearray()
    while True:
        c = os.read(fd, 65536)
        if not c:
            break
        got += c
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    check(os.WEXITSTATUS(status) == 0, f"writer failed (status {status})")
    check(bytes(got) == data, f"read {len(got)} bytes through the fifo, not the {len(data)} written")
    expect_node(path, "fifo", 0o600)
    check(os.lstat(path).st_size == 0, "a fifo keeps no data")


@register("persist-make")
def _(d, lower):
    make_specials(d)
    os.chown(f"{d}/fifo", ALICE, STAFF)
    os.link(f"{d}/chr", f"{d}/chr.2")


@register("persist-check")
def _(d, lower):
    expect_node(f"{d}/fifo", "fifo", 0o640, uid=ALICE, gid=STAFF, nlink=1)
    expect_node(f"{d}/chr", "char", 0o620, rdev=(1, 3), nlink=2)
    expect_node(f"{d}/chr.2", "char", 0o620, rdev=(1, 3), nlink=2)
    expect_node(f"{d}/blk", "block", 0o660, rdev=(259, 65537), nlink=1)
    expect_node(f"{d}/sock", "socket", 0o751, nlink=1)


# --- sparse files ---------------------------------------------------------------


@register("sparse-truncate-10g")
def _(d, lower):
    path = f"{d}/big"
    write_file(path, b"")
    before = lower_usage(lower)
    r = subprocess.run(["truncate", "-s", "10G", path], capture_output=True, text=True)
    used = lower_usage(lower) - before
    check(r.returncode == 0, f"truncate -s 10G: {r.stderr.strip()} (lower grew by {used} bytes)")
    size = os.stat(path).st_size
    check(size == 10 * GiB, f"st_size {size}")
    check(used < 4 * MiB, f"the lower grew by {used} bytes for a 10 GiB hole")
    for at in (0, 5 * GiB + 12345, 10 * GiB - 64 * KiB):
        check(zeros(read_at(path, at, 64 * KiB)), f"a hole reads as non-zero at {at}")
    check(read_at(path, 10 * GiB, 10) == b"", "a read at the end returns data")
    return f"lower +{used} bytes, st_blocks {os.stat(path).st_blocks}"


@register("sparse-write-2g")
def _(d, lower):
    path = f"{d}/far"
    before = lower_usage(lower)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        n = os.pwrite(fd, b"\xab", 2 * GiB)
    except OSError as e:
        used = lower_usage(lower) - before
        raise Failure(f"pwrite at 2 GiB: {errname(e.errno)} (lower grew by {used} bytes)")
    finally:
        os.close(fd)
    check(n == 1, f"pwrite returned {n}")
    used = lower_usage(lower) - before
    size = os.stat(path).st_size
    check(size == 2 * GiB + 1, f"st_size {size}")
    check(used < 4 * MiB, f"the lower grew by {used} bytes for one byte at 2 GiB")
    check(read_at(path, 2 * GiB, 10) == b"\xab", "the byte at 2 GiB")
    check(zeros(read_at(path, 2 * GiB - 64 * KiB, 64 * KiB)), "the hole just before the byte")
    for at in (0, GiB):
        check(zeros(read_at(path, at, 64 * KiB)), f"the hole at {at}")
    return f"lower +{used} bytes, st_blocks {os.stat(path).st_blocks}"


@register("sparse-rewrite-hole")
def _(d, lower):
    """Data written into a hole reads back; the rest of the hole stays zero."""
    path = f"{d}/holey"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.ftruncate(fd, 8 * MiB)
        os.pwrite(fd, b"middle", 3 * MiB + 100)
        os.pwrite(fd, b"start", 0)
    finally:
        os.close(fd)
    check(os.stat(path).st_size == 8 * MiB, "size")
    check(read_at(path, 3 * MiB + 100, 6) == b"middle", "data written in the hole")
    check(read_at(path, 0, 5) == b"start", "data at 0")
    check(zeros(read_at(path, 5, 3 * MiB + 95)), "zeros between")
    check(zeros(read_at(path, 3 * MiB + 106, 5 * MiB - 106)), "zeros after")


@register("seek-data-hole")
def _(d, lower):
    """SEEK_DATA/SEEK_HOLE (lseek(2)): a file system may report holes as data,
    but never a hole where there is data nor data past where the data is."""
    path = f"{d}/seek"
    far = 48 * MiB
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"\x01" * 4096, 0)
        os.pwrite(fd, b"\x02" * 10, far)
        size = far + 10
        seen = {}
        seen["data@0"] = os.lseek(fd, 0, os.SEEK_DATA)
        seen["hole@0"] = os.lseek(fd, 0, os.SEEK_HOLE)
        seen["data@8192"] = os.lseek(fd, 8192, os.SEEK_DATA)
        seen["hole@far"] = os.lseek(fd, far, os.SEEK_HOLE)
        try:
            seen["data@size"] = os.lseek(fd, size, os.SEEK_DATA)
        except OSError as e:
            seen["data@size"] = errname(e.errno)
    finally:
        os.close(fd)
    check(seen["data@0"] == 0, f"SEEK_DATA from 0 gave {seen['data@0']}: there is data at 0")
    check(4096 <= seen["hole@0"] <= size, f"SEEK_HOLE from 0 gave {seen['hole@0']}: bytes 0..4095 are data")
    check(8192 <= seen["data@8192"] <= far, f"SEEK_DATA from 8192 gave {seen['data@8192']}, past the data at {far}")
    check(seen["hole@far"] == size, f"SEEK_HOLE from {far} gave {seen['hole@far']}: data until {size}")
    check(seen["data@size"] == "ENXIO", f"SEEK_DATA at the end gave {seen['data@size']}")
    if seen["hole@0"] < size:
        # What it calls a hole must read as zeros.
        check(zeros(read_at(path, seen["hole@0"], min(64 * KiB, far - seen["hole@0"]))), "reported hole has data")
    return json.dumps(seen)


def expect_unchanged(path, data, what):
    size = os.stat(path).st_size
    check(size == len(data), f"{what}: the size changed from {len(data)} to {size}")
    check(read_all(path) == data, f"{what}: the content changed")


def expect_efbig(path, data, op, what, lower):
    """op must fail with EFBIG and leave the file (and the lower's usage) as it was."""
    before = lower_usage(lower)
    try:
        op()
        err = None
    except OSError as e:
        err = errname(e.errno)
        time.sleep(ATTR_CACHE_S)
    size = os.stat(path).st_size
    grew = lower_usage(lower) - before
    problems = []
    if err != "EFBIG":
        problems.append(f"expected EFBIG, {'it succeeded' if err is None else 'got ' + err}")
    if size != len(data):
        problems.append(f"the size changed from {len(data)} to {size}")
    elif read_all(path) != data:
        problems.append("the content changed")
    if grew > MiB:
        problems.append(f"the lower kept {grew} more bytes")
    check(not problems, f"{what}: " + "; ".join(problems))


@register("efbig-truncate")
def _(d, lower):
    path = f"{d}/f"
    data = pattern("efbig", 100)
    write_file(path, data)
    expect_efbig(path, data, lambda: os.truncate(path, BEYOND_MAX), "truncate to 2^60", lower)


def with_fd(path, fn):
    fd = os.open(path, os.O_RDWR)
    try:
        return fn(fd)
    finally:
        os.close(fd)


@register("efbig-ftruncate")
def _(d, lower):
    path = f"{d}/f"
    data = pattern("efbig", 100)
    write_file(path, data)
    op = lambda: with_fd(path, lambda fd: os.ftruncate(fd, BEYOND_MAX))  # noqa: E731
    expect_efbig(path, data, op, "ftruncate to 2^60", lower)


@register("efbig-write")
def _(d, lower):
    path = f"{d}/f"
    data = pattern("efbig", 100)
    write_file(path, data)
    op = lambda: with_fd(path, lambda fd: os.pwrite(fd, b"x", BEYOND_MAX))  # noqa: E731
    expect_efbig(path, data, op, "pwrite at 2^60", lower)


@register("enospc-truncate")
def _(d, lower):
    """On an almost full lower, a truncate either works completely or fails and
    leaves the file as it was (size, content, and the space its lower file takes)."""
    path = f"{d}/f"
    data = pattern("enospc", 200 * KiB + 123)
    write_file(path, data)
    # Fill the lower's disk with a plain file beside the volume (not through the mount).
    filler = os.path.join(os.path.dirname(lower), "filler")
    with open(filler, "wb") as f:
        chunk = b"\0" * MiB
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as e:
            check(e.errno == errno.ENOSPC, f"filling the lower: {errname(e.errno)}")
    # Leave a little room: a grow then fails part way, after some blocks were written.
    os.truncate(filler, max(0, os.stat(filler).st_size - MiB))
    outcomes = []
    try:
        for target in (64 * MiB, 100 * KiB + 7, 300 * KiB):
            before = lower_usage(lower)
            try:
                os.truncate(path, target)
            except OSError as e:
                outcomes.append(f"{target}:{errname(e.errno)}")
                time.sleep(ATTR_CACHE_S)
                what = f"after truncate to {target} failed with {errname(e.errno)}"
                expect_unchanged(path, data, what)
                kept = lower_usage(lower) - before
                check(kept <= 64 * KiB, f"{what}: the lower kept {kept} more bytes")
                continue
            outcomes.append(f"{target}:ok")
            got = read_all(path)
            check(len(got) == target, f"truncate to {target} succeeded but st_size is {len(got)}")
            keep = min(target, len(data))
            check(got[:keep] == data[:keep], f"truncate to {target} changed the content it kept")
            check(zeros(got[keep:]), f"truncate to {target} grew with non-zero bytes")
            data = got
    finally:
        os.unlink(filler)
    return " ".join(outcomes)


# --- fallocate ------------------------------------------------------------------


@register("fallocate-grow")
def _(d, lower):
    path = f"{d}/f"
    data = b"0123456789"
    write_file(path, data)
    fd = os.open(path, os.O_RDWR)
    try:
        fallocate(fd, 0, 0, 100000)
        check(os.fstat(fd).st_size == 100000, f"st_size {os.fstat(fd).st_size} after fallocate(0, 100000)")
        fallocate(fd, 0, 200000, 1000)
        check(os.fstat(fd).st_size == 201000, f"st_size {os.fstat(fd).st_size} after fallocate(200000, 1000)")
        fallocate(fd, 0, 0, 10)  # inside the file: nothing changes
        check(os.fstat(fd).st_size == 201000, "fallocate inside the file changed its size")
    finally:
        os.close(fd)
    got = read_all(path)
    check(got[:10] == data and zeros(got[10:]), "content after fallocate")


@register("posix-fallocate")
def _(d, lower):
    path = f"{d}/f"
    write_file(path, b"abc")
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, 70000)
        check(os.fstat(fd).st_size == 70000, f"st_size {os.fstat(fd).st_size}")
    finally:
        os.close(fd)
    got = read_all(path)
    check(got[:3] == b"abc" and zeros(got[3:]), "content after posix_fallocate")


@register("fallocate-keep-size")
def _(d, lower):
    path = f"{d}/f"
    data = b"0123456789"
    write_file(path, data)
    fd = os.open(path, os.O_RDWR)
    try:
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, MiB)
        check(os.fstat(fd).st_size == 10, f"st_size {os.fstat(fd).st_size} after KEEP_SIZE")
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 100000, 50000)
        check(os.fstat(fd).st_size == 10, f"st_size {os.fstat(fd).st_size} after KEEP_SIZE beyond the end")
        os.pwrite(fd, b"tail", 20)
    finally:
        os.close(fd)
    check(read_all(path) == data + b"\0" * 10 + b"tail", "content after KEEP_SIZE and a write")


@register("fallocate-punch-hole")
def _(d, lower):
    path = f"{d}/f"
    data = pattern("punch", 200000)
    write_file(path, data)
    fd = os.open(path, os.O_RDWR)
    try:
        mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        fallocate(fd, mode, 40000, 100000)  # neither end on a block boundary
        check(os.fstat(fd).st_size == 200000, f"st_size {os.fstat(fd).st_size} after PUNCH_HOLE")
        fallocate(fd, mode, 180000, 100000)  # runs past the end: the size stays
        check(os.fstat(fd).st_size == 200000, f"st_size {os.fstat(fd).st_size} after a punch past the end")
    finally:
        os.close(fd)
    got = read_all(path)
    expected = data[:40000] + b"\0" * 100000 + data[140000:180000] + b"\0" * 20000
    check(len(got) == 200000, f"read {len(got)} bytes")
    for lo, hi in ((0, 40000), (40000, 140000), (140000, 180000), (180000, 200000)):
        check(got[lo:hi] == expected[lo:hi], f"bytes {lo}..{hi} after PUNCH_HOLE")


@register("fallocate-punch-frees")
def _(d, lower):
    """Punching a large range gives the lower's space back (a hole, not sealed zeros)."""
    path = f"{d}/f"
    write_file(path, pattern("punch-frees", 8 * MiB))
    before = lower_usage(lower)
    fd = os.open(path, os.O_RDWR)
    try:
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, MiB, 6 * MiB)
    finally:
        os.close(fd)
    after = lower_usage(lower)
    check(os.stat(path).st_size == 8 * MiB, "size after the punch")
    check(before - after >= 5 * MiB, f"the lower gave back {before - after} bytes for a 6 MiB hole")
    check(zeros(read_at(path, MiB, 6 * MiB)), "the punched range")


# --- truncate semantics -----------------------------------------------------------


@register("truncate-shrink-grow")
def _(d, lower):
    path = f"{d}/f"
    data = pattern("shrink", 100000)
    write_file(path, data)
    os.truncate(path, 50000)
    check(read_all(path) == data[:50000], "content after shrinking to 50000")
    os.truncate(path, 100000)
    got = read_all(path)
    check(got[:50000] == data[:50000], "kept content after growing back")
    check(zeros(got[50000:]), "growing back must give zeros, not the old bytes")
    fd = os.open(path, os.O_RDWR)
    try:
        os.ftruncate(fd, 0)
        check(os.fstat(fd).st_size == 0, "ftruncate to 0")
        os.ftruncate(fd, 33000)
    finally:
        os.close(fd)
    check(read_all(path) == b"\0" * 33000, "ftruncate 0 then 33000")


@register("truncate-grow")
def _(d, lower):
    path = f"{d}/f"
    data = pattern("grow", 1000)
    write_file(path, data)
    os.truncate(path, 70000)
    got = read_all(path)
    check(len(got) == 70000, f"size {len(got)}")
    check(got[:1000] == data and zeros(got[1000:]), "content after growing")


@register("truncate-same-size")
def _(d, lower):
    path = f"{d}/f"
    data = pattern("same", 40000)
    write_file(path, data)
    os.truncate(path, 40000)
    expect_unchanged(path, data, "truncate to the same size")


@register("truncate-eacces-eisdir")
def _(d, lower):
    write_file(f"{d}/ro", b"read only", 0o644)
    os.chmod(d, 0o755)
    user_errno("EACCES", ALICE, STAFF, [], lambda: os.truncate(f"{d}/ro", 0), "truncate without write permission")
    os.mkdir(f"{d}/dir")
    expect_errno("EISDIR", lambda: os.truncate(f"{d}/dir", 0), "truncate of a directory")
    expect_errno("EINVAL", lambda: os.truncate(f"{d}/ro", -1), "truncate to a negative size")
    expect_unchanged(f"{d}/ro", b"read only", "after the refused truncates")


# --- timestamps (POSIX XBD 4.9 and each function's "shall mark for update") -----------------

OLD = 1_000_000_000  # 2001-09-09


def age(*paths):
    """Sets atime and mtime of paths far back, then lets the clock move on."""
    for p in paths:
        os.utime(p, (OLD, OLD), follow_symlinks=False)
    time.sleep(0.03)
    return {p: os.lstat(p) for p in paths}


def settle():
    time.sleep(0.03)


def expect_times(path, before, mtime=None, ctime=None):
    st = os.lstat(path)
    if mtime is not None:
        changed = st.st_mtime_ns != before.st_mtime_ns
        check(changed == mtime, f"{path}: mtime {'unchanged' if mtime else 'changed'}, expected {'an update' if mtime else 'none'}")
    if ctime is not None:
        changed = st.st_ctime_ns > before.st_ctime_ns
        check(changed == ctime, f"{path}: ctime {'not updated' if ctime else 'updated'}, expected {'an update' if ctime else 'none'}")


@register("times-write")
def _(d, lower):
    f = f"{d}/f"
    write_file(f, b"x")
    b = age(f)[f]
    fd = os.open(f, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"more")
    os.close(fd)
    expect_times(f, b, mtime=True, ctime=True)


@register("times-truncate")
def _(d, lower):
    f = f"{d}/f"
    write_file(f, b"0123456789")
    b = age(f)[f]
    os.truncate(f, 3)
    expect_times(f, b, mtime=True, ctime=True)
    b = age(f)[f]
    os.truncate(f, 5000)
    expect_times(f, b, mtime=True, ctime=True)


@register("times-ftruncate")
def _(d, lower):
    f = f"{d}/f"
    write_file(f, b"0123456789")
    b = age(f)[f]
    fd = os.open(f, os.O_RDWR)
    os.ftruncate(fd, 4)
    os.close(fd)
    expect_times(f, b, mtime=True, ctime=True)


@register("times-open-trunc")
def _(d, lower):
    f = f"{d}/f"
    write_file(f, b"0123456789")
    b = age(f)[f]
    os.close(os.open(f, os.O_WRONLY | os.O_TRUNC))
    expect_times(f, b, mtime=True, ctime=True)


@register("times-chmod")
def _(d, lower):
    f = f"{d}/f"
    write_file(f, b"x")
    b = age(f)[f]
    os.chmod(f, 0o600)
    expect_times(f, b, mtime=False, ctime=True)


@register("times-chown")
def _(d, lower):
    f = f"{d}/f"
    write_file(f, b"x")
    b = age(f)[f]
    os.chown(f, ALICE, STAFF)
    expect_times(f, b, mtime=False, ctime=True)


@register("times-create")
def _(d, lower):
    for make in (
        lambda p: write_file(p, b""),
        lambda p: os.mkdir(p),
        lambda p: os.symlink("target", p),
    ):
        b = age(d)[d]
        make(f"{d}/new-{time.monotonic_ns()}")
        expect_times(d, b, mtime=True, ctime=True)


@register("times-link")
def _(d, lower):
    f = f"{d}/f"
    write_file(f, b"x")
    b = age(f, d)
    os.link(f, f"{d}/f2")
    expect_times(f, b[f], mtime=False, ctime=True)
    expect_times(d, b[d], mtime=True, ctime=True)


@register("times-unlink")
def _(d, lower):
    f = f"{d}/f"
    write_file(f, b"x")
    os.link(f, f"{d}/f2")
    b = age(f, d)
    os.unlink(f"{d}/f2")  # f keeps a link: its ctime is marked too
    expect_times(f, b[f], mtime=False, ctime=True)
    expect_times(d, b[d], mtime=True, ctime=True)
    os.mkdir(f"{d}/sub")
    b = age(d)
    os.rmdir(f"{d}/sub")
    expect_times(d, b[d], mtime=True, ctime=True)


@register("times-rename")
def _(d, lower):
    os.mkdir(f"{d}/a")
    os.mkdir(f"{d}/b")
    f = f"{d}/a/f"
    write_file(f, b"x")
    b = age(f"{d}/a", f"{d}/b", f)
    os.rename(f, f"{d}/b/g")
    expect_times(f"{d}/a", b[f"{d}/a"], mtime=True, ctime=True)
    expect_times(f"{d}/b", b[f"{d}/b"], mtime=True, ctime=True)
    expect_times(f"{d}/b/g", b[f], mtime=False)


@register("utimensat-explicit")
def _(d, lower):
    f = f"{d}/f"
    write_file(f, b"x")
    before = os.stat(f)
    settle()
    utimensat(f, (1_000_000_000, 123456789), (1_500_000_000, 987654321))
    st = os.stat(f)
    check(st.st_atime_ns == 1_000_000_000_123_456_789, f"atime {st.st_atime_ns}")
    check(st.st_mtime_ns == 1_500_000_000_987_654_321, f"mtime {st.st_mtime_ns}")
    check(st.st_ctime_ns > before.st_ctime_ns, "utimensat must update ctime")
    # Before 1970 and past 2038.
    utimensat(f, (-86400, 5), (4_102_444_800, 999_999_999))
    st = os.stat(f)
    check(st.st_atime_ns == -86400 * 10**9 + 5, f"atime before 1970: {st.st_atime_ns}")
    check(st.st_mtime_ns == 4_102_444_800_999_999_999, f"mtime in 2100: {st.st_mtime_ns}")


@register("utimensat-now")
def _(d, lower):
    f = f"{d}/f"
    write_file(f, b"x")
    age(f)
    t0 = time.time_ns()
    utimensat(f, UTIME_NOW, UTIME_NOW)
    t1 = time.time_ns()
    st = os.stat(f)
    for name, v in (("atime", st.st_atime_ns), ("mtime", st.st_mtime_ns)):
        # The kernel's coarse clock may lag time_ns() by a tick.
        check(t0 - 10**9 <= v <= t1 + 10**9, f"UTIME_NOW {name} {v} outside [{t0}, {t1}]")


@register("utimensat-omit")
def _(d, lower):
    f = f"{d}/f"
    write_file(f, b"x")
    utimensat(f, (1_100_000_000, 1), (1_200_000_000, 2))
    utimensat(f, UTIME_OMIT, (1_300_000_000, 3))
    st = os.stat(f)
    check(st.st_atime_ns == 1_100_000_000 * 10**9 + 1, f"UTIME_OMIT changed atime to {st.st_atime_ns}")
    check(st.st_mtime_ns == 1_300_000_000 * 10**9 + 3, f"mtime {st.st_mtime_ns}")
    utimensat(f, (1_400_000_000, 4), UTIME_OMIT)
    st = os.stat(f)
    check(st.st_atime_ns == 1_400_000_000 * 10**9 + 4, f"atime {st.st_atime_ns}")
    check(st.st_mtime_ns == 1_300_000_000 * 10**9 + 3, f"UTIME_OMIT changed mtime to {st.st_mtime_ns}")
    t0 = time.time_ns()
    utimensat(f, UTIME_OMIT, UTIME_NOW)
    st = os.stat(f)
    check(st.st_atime_ns == 1_400_000_000 * 10**9 + 4, "UTIME_OMIT with UTIME_NOW changed atime")
    check(st.st_mtime_ns >= t0 - 10**9, "UTIME_NOW for mtime alone")
    utimensat(f, UTIME_OMIT, UTIME_OMIT)
    st2 = os.stat(f)
    check((st2.st_atime_ns, st2.st_mtime_ns) == (st.st_atime_ns, st.st_mtime_ns), "both UTIME_OMIT changed a time")


@register("utimensat-permissions")
def _(d, lower):
    os.chmod(d, 0o755)
    shared = f"{d}/shared"
    write_file(shared, b"x", 0o666)
    os.chmod(shared, 0o666)
    private = f"{d}/private"
    write_file(private, b"x", 0o644)
    # Anyone with write permission may set both times to the current time...
    user_ok(BOB, OTHER, [], lambda: utimensat(shared, UTIME_NOW, UTIME_NOW), "UTIME_NOW with write permission")
    # ... but only the owner (or a privileged process) may set other values.
    user_errno("EPERM", BOB, OTHER, [], lambda: utimensat(shared, (5, 0), (5, 0)), "explicit times on another's file")
    # Without write permission even UTIME_NOW is refused.
    user_errno("EACCES", BOB, OTHER, [], lambda: utimensat(private, UTIME_NOW, UTIME_NOW), "UTIME_NOW without write permission")
    os.chown(private, ALICE, STAFF)
    user_ok(ALICE, STAFF, [], lambda: utimensat(private, (7, 0), (8, 0)), "explicit times as the owner")
    st = os.stat(private)
    check((st.st_atime, st.st_mtime) == (7, 8), "owner's explicit times")


# --- ownership, permissions, sticky directories -----------------------------------------------


def world_writable(d, mode=0o777):
    os.chmod(d, mode)


@register("owner-new-entries")
def _(d, lower):
    world_writable(d)

    def make():
        write_file(f"{d}/file", b"alice's")
        os.mkdir(f"{d}/dir")
        os.symlink("file", f"{d}/link")

    user_ok(ALICE, STAFF, [STAFF], make, "creating entries")
    for name in ("file", "dir", "link"):
        st = os.lstat(f"{d}/{name}")
        check((st.st_uid, st.st_gid) == (ALICE, STAFF), f"{name} belongs to {st.st_uid}:{st.st_gid}, not {ALICE}:{STAFF}")
    check(read_all(f"{d}/file") == b"alice's", "content")


@register("owner-new-special")
def _(d, lower):
    world_writable(d)

    def make():
        os.mkfifo(f"{d}/fifo", 0o600)
        bind_socket(f"{d}/sock").close()

    user_ok(ALICE, STAFF, [STAFF], make, "mkfifo and bind")
    expect_node(f"{d}/fifo", "fifo", uid=ALICE, gid=STAFF)
    expect_node(f"{d}/sock", "socket", uid=ALICE, gid=STAFF)
    # Devices need privilege (CAP_MKNOD): an ordinary user gets EPERM.
    user_errno("EPERM", ALICE, STAFF, [STAFF], lambda: os.mknod(f"{d}/c", stat.S_IFCHR | 0o600, os.makedev(1, 3)), "mknod of a device")


@register("chown-rules")
def _(d, lower):
    os.chmod(d, 0o755)
    f = f"{d}/f"
    write_file(f, b"x", 0o644)
    os.chown(f, ALICE, STAFF)
    # The owner may change the group to one of its groups ...
    user_ok(ALICE, STAFF, [STAFF, OTHER], lambda: os.chown(f, -1, OTHER), "owner chgrp to a group it is in")
    expect_node(f, "regular", uid=ALICE, gid=OTHER)
    # ... but not to another group, nor give the file away.
    user_errno("EPERM", ALICE, STAFF, [STAFF, OTHER], lambda: os.chown(f, -1, NOBODY_GROUP), "owner chgrp to a foreign group")
    user_errno("EPERM", ALICE, STAFF, [STAFF, OTHER], lambda: os.chown(f, BOB, -1), "owner gives the file away")
    # Changing nothing (-1, -1, or the same owner) is allowed to the owner.
    user_ok(ALICE, STAFF, [STAFF, OTHER], lambda: os.chown(f, ALICE, -1), "owner chown to itself")
    # Someone else may do neither.
    user_errno("EPERM", BOB, OTHER, [OTHER], lambda: os.chown(f, -1, OTHER), "non-owner chgrp")
    user_errno("EPERM", BOB, OTHER, [OTHER], lambda: os.chmod(f, 0o666), "non-owner chmod")
    # Root may do anything.
    os.chown(f, CAROL, SHARED)
    expect_node(f, "regular", 0o644, uid=CAROL, gid=SHARED)


@register("chown-clears-setid")
def _(d, lower):
    os.chmod(d, 0o755)
    f = f"{d}/f"
    write_file(f, b"#!/bin/sh\n", 0o755)
    os.chown(f, ALICE, STAFF)
    os.chmod(f, 0o6755)
    expect_node(f, "regular", 0o6755)
    user_ok(ALICE, STAFF, [STAFF, OTHER], lambda: os.chown(f, -1, OTHER), "owner chgrp")
    st = os.stat(f)
    check(stat.S_IMODE(st.st_mode) & 0o6000 == 0, f"set-user/group-ID kept after an unprivileged chown: {oct(st.st_mode)}")


@register("chmod-setgid-non-member")
def _(d, lower):
    """chmod(2): setting S_ISGID on a file whose group the caller is not in clears it (no error)."""
    os.chmod(d, 0o755)
    f = f"{d}/f"
    write_file(f, b"x", 0o644)
    os.chown(f, ALICE, SHARED)
    user_ok(ALICE, STAFF, [STAFF], lambda: os.chmod(f, 0o2755), "owner chmod g+s")
    check(stat.S_IMODE(os.stat(f).st_mode) == 0o755, f"mode {oct(stat.S_IMODE(os.stat(f).st_mode))}, expected 0o755")


@register("setgid-dir-inheritance")
def _(d, lower):
    sg = f"{d}/sg"
    os.mkdir(sg)
    os.chown(sg, 0, SHARED)
    os.chmod(sg, 0o2777)
    expect_node(sg, "dir", 0o2777, uid=0, gid=SHARED)

    def make():
        write_file(f"{sg}/file", b"x", 0o644)
        os.mkdir(f"{sg}/sub", 0o755)

    user_ok(ALICE, STAFF, [STAFF], make, "creating in a set-group-ID directory")
    expect_node(f"{sg}/file", "regular", uid=ALICE, gid=SHARED)
    st = expect_node(f"{sg}/sub", "dir", uid=ALICE, gid=SHARED)
    check(st.st_mode & stat.S_ISGID, "a directory made in a set-group-ID directory must be set-group-ID too")
    write_file(f"{sg}/rootfile", b"x")
    expect_node(f"{sg}/rootfile", "regular", uid=0, gid=SHARED)


@register("eacces")
def _(d, lower):
    os.chmod(d, 0o755)
    write_file(f"{d}/secret", b"root only", 0o600)
    os.mkdir(f"{d}/closed", 0o700)
    write_file(f"{d}/closed/inner", b"x")
    write_file(f"{d}/public", b"anyone", 0o644)
    # The refusals below must come from these permissions, not from a path the user cannot reach.
    user_ok(ALICE, STAFF, [], lambda: read_all(f"{d}/public"), "read a 0644 file")
    user_errno("EACCES", ALICE, STAFF, [], lambda: write_file(f"{d}/new", b""), "create in a 0755 root directory")
    user_errno("EACCES", ALICE, STAFF, [], lambda: read_all(f"{d}/secret"), "read a 0600 root file")
    user_errno("EACCES", ALICE, STAFF, [], lambda: os.unlink(f"{d}/secret"), "unlink in a 0755 root directory")
    user_errno("EACCES", ALICE, STAFF, [], lambda: os.rename(f"{d}/secret", f"{d}/s2"), "rename in a 0755 root directory")
    user_errno("EACCES", ALICE, STAFF, [], lambda: os.stat(f"{d}/closed/inner"), "stat through a 0700 directory")
    user_errno("EACCES", ALICE, STAFF, [], lambda: os.listdir(f"{d}/closed"), "list a 0700 directory")
    check(read_all(f"{d}/secret") == b"root only", "the file is still there")


def sticky_dir(d, owner=0):
    t = f"{d}/tmp"
    os.mkdir(t)
    os.chown(t, owner, 0)
    os.chmod(t, 0o1777)
    expect_node(t, "dir", 0o1777)
    return t


@register("sticky-unlink")
def _(d, lower):
    t = sticky_dir(d)
    user_ok(ALICE, STAFF, [], lambda: write_file(f"{t}/alice", b"mine", 0o666), "alice creates in /tmp")
    user_errno("EPERM", BOB, OTHER, [], lambda: os.unlink(f"{t}/alice"), "bob unlinks alice's file")
    check(read_all(f"{t}/alice") == b"mine", "alice's file survived")
    user_ok(ALICE, STAFF, [], lambda: os.unlink(f"{t}/alice"), "alice unlinks her own file")


@register("sticky-rename")
def _(d, lower):
    t = sticky_dir(d)
    user_ok(ALICE, STAFF, [], lambda: write_file(f"{t}/alice", b"mine", 0o666), "alice creates in /tmp")
    user_ok(BOB, OTHER, [], lambda: write_file(f"{t}/bob", b"bob's", 0o666), "bob creates in /tmp")
    user_errno("EPERM", BOB, OTHER, [], lambda: os.rename(f"{t}/alice", f"{t}/stolen"), "bob renames alice's file")
    user_errno("EPERM", BOB, OTHER, [], lambda: os.rename(f"{t}/bob", f"{t}/alice"), "bob renames over alice's file")
    check(read_all(f"{t}/alice") == b"mine", "alice's file is untouched")
    user_ok(ALICE, STAFF, [], lambda: os.rename(f"{t}/alice", f"{t}/alice2"), "alice renames her own file")
    user_errno("EPERM", ALICE, STAFF, [], lambda: os.rename(f"{t}/alice2", f"{t}/bob"), "alice renames over bob's file")


@register("sticky-owner-and-root")
def _(d, lower):
    t = sticky_dir(d, owner=CAROL)
    user_ok(ALICE, STAFF, [], lambda: write_file(f"{t}/a1", b"1"), "alice creates")
    user_ok(ALICE, STAFF, [], lambda: write_file(f"{t}/a2", b"2"), "alice creates")
    # The directory's owner and root may remove anyone's files.
    user_ok(CAROL, 0, [], lambda: os.unlink(f"{t}/a1"), "the directory's owner unlinks alice's file")
    os.unlink(f"{t}/a2")
    check(os.listdir(t) == [], f"left: {os.listdir(t)}")


# --- symlinks -----------------------------------------------------------------------


def target_of(n):
    """A relative path of exactly n bytes, components well under NAME_MAX."""
    parts = []
    length = 0
    i = 0
    while length < n:
        part = f"component-{i:04d}-" + "x" * 60
        parts.append(part)
        length += len(part) + 1
        i += 1
    return "/".join(parts)[:n].rstrip("/").ljust(n, "y")


def symlink_check(n):
    def run(d, lower):
        target = target_of(n)
        check(len(target.encode()) == n, "test bug: target length")
        os.symlink(target, f"{d}/l")
        got = os.readlink(f"{d}/l")
        check(got == target, f"readlink gave {len(got)} bytes, not the {n} stored")
        st = os.lstat(f"{d}/l")
        check(stat.S_ISLNK(st.st_mode), "not a symlink")
        check(st.st_size == n, f"lstat st_size {st.st_size}, expected {n}")
        # readlink into a short buffer truncates silently (readlink(2)); Python always asks for enough.

    return run


for _n in (1, 3000, 4000, 4095):
    CHECKS[f"symlink-{_n}"] = symlink_check(_n)


@register("symlink-4096")
def _(d, lower):
    expect_errno("ENAMETOOLONG", lambda: os.symlink("a" * 4096, f"{d}/l"), "symlink with a 4096-byte target")
    expect_errno("ENOENT", lambda: os.lstat(f"{d}/l"), "the refused symlink")


@register("symlink-persist-make")
def _(d, lower):
    for n in (1, 3000, 4095):
        os.symlink(target_of(n), f"{d}/l{n}")


@register("symlink-persist-check")
def _(d, lower):
    for n in (1, 3000, 4095):
        check(os.readlink(f"{d}/l{n}") == target_of(n), f"{n}-byte target after remount")
        check(os.lstat(f"{d}/l{n}").st_size == n, f"{n}-byte target's st_size after remount")


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in CHECKS:
        print(f"usage: {sys.argv[0]} CHECK DIR [LOWER]; checks: {' '.join(sorted(CHECKS))}", file=sys.stderr)
        return 2
    os.umask(0)
    name, d = sys.argv[1], sys.argv[2]
    lower = sys.argv[3] if len(sys.argv) > 3 else None
    try:
        info = CHECKS[name](d, lower)
    except Failure as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        where = os.fsdecode(e.filename or "")
        where = where if len(where) <= 160 else f"{where[:60]}...({len(where)} bytes)"
        print(f"{name}: [{errname(e.errno)}] {e.strerror}: {where}", file=sys.stderr)
        return 1
    print("ok" if info is None else f"ok {info}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
