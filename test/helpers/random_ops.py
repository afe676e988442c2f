#!/usr/bin/env python3
"""Seeded random file-system workload for the integration tests.

    random_ops.py apply ROOT SEED COUNT   apply COUNT operations below ROOT,
                                          print a transcript (one line an op)
    random_ops.py manifest ROOT           print every entry below ROOT:
                                          type, mode, size, links, sha256

The sequence depends only on SEED: the script keeps its own model of the
tree (paths, inodes, open descriptors) and draws every choice from it, never
from what the file system reports. Run it against a plain directory and a
mount with the same seed and the transcripts and manifests must be equal;
reads are recorded as hashes, so a wrong byte anywhere shows up.

Operations: write / append / truncate through a path, create, unlink,
rename (files, symlinks, directories; over files and over empty
directories), mkdir, rmdir, symlink, and long-lived descriptors (open, pwrite, pread, ftruncate,
close) that stay open across the other operations.
"""

import errno
import hashlib
import os
import random
import sys
import time

B = 32 * 1024
MAX_SIZE = 320 * 1024
MAX_FDS = 4
MAX_DEPTH = 3


def boundary_biased(rng, upper):
    """A size or offset in [0, upper], often on or next to a block boundary."""
    upper = max(0, upper)
    r = rng.random()
    if r < 0.35:
        k = rng.randint(0, upper // B) if upper >= B else 0
        v = k * B + rng.choice([-1, 0, 0, 1])
    elif r < 0.5:
        v = rng.choice([0, upper])
    else:
        v = rng.randint(0, upper)
    return min(max(v, 0), upper)


def length_choice(rng):
    r = rng.random()
    if r < 0.3:
        return rng.randint(1, 100)
    if r < 0.5:
        return rng.choice([B - 1, B, B + 1, 2 * B])
    return rng.randint(1, 3 * B)


class Model:
    def __init__(self, root, rng):
        self.root = root
        self.rng = rng
        self.dirs = {""}
        self.files = {}  # path -> inode number (model's own)
        self.links = {}  # symlink path -> target
        self.inode_paths = {}  # inode -> set of paths
        self.next_inode = 1
        self.fds = []  # (fd, inode)
        self.out = []

    # --- helpers -------------------------------------------------------------

    def abs(self, rel):
        return os.path.join(self.root, rel) if rel else self.root

    def children(self, d):
        prefix = d + "/" if d else ""
        names = set()
        for p in list(self.dirs) + list(self.files) + list(self.links):
            if p and p.startswith(prefix) and "/" not in p[len(prefix):]:
                names.add(p)
        return names

    def depth(self, d):
        return 0 if d == "" else d.count("/") + 1

    def pick_dir(self, max_depth=MAX_DEPTH):
        return self.rng.choice(sorted(d for d in self.dirs if self.depth(d) < max_depth))

    def new_name(self, kind):
        r = self.rng.random()
        n = self.rng.randint(0, 11)
        if r < 0.08:
            # Long enough that the encrypted name needs a hashed entry and sidecar.
            return "%s-long-%s-%d" % (kind, "x" * (140 + self.rng.randint(0, 60)), n)
        if r < 0.15:
            return "%s-\u00fc\u00f1\u00ee-%d" % (kind, n)
        return "%s%d" % (kind, n)

    def free_path(self, kind, max_depth=MAX_DEPTH):
        for _ in range(20):
            d = self.pick_dir(max_depth)
            p = (d + "/" if d else "") + self.new_name(kind)
            if p not in self.dirs and p not in self.files and p not in self.links:
                return p
        return None

    def any_file(self):
        return self.rng.choice(sorted(self.files)) if self.files else None

    def log(self, *parts):
        self.out.append(" ".join(str(p) for p in parts))

    def data(self, n):
        return self.rng.randbytes(n)

    def size_of(self, path):
        return os.stat(self.abs(path)).st_size

    def drop_path(self, p):
        ino = self.files.pop(p)
        self.inode_paths[ino].discard(p)

    def add_path(self, p, ino):
        self.files[p] = ino
        self.inode_paths.setdefault(ino, set()).add(p)

    def under(self, p, d):
        return p == d or p.startswith(d + "/")

    def close_all(self):
        for fd, _ in self.fds:
            os.close(fd)
        self.fds = []

    def settle(self, d):
        """Waits until no .fuse_hidden entries (files unlinked while open) are left in d.

        FUSE releases a closed file asynchronously, and libfuse hides an
        unlinked file that is still open; the hidden entry goes once the
        release arrives. A plain directory never has any.
        """
        deadline = time.monotonic() + 10
        while any(n.startswith(".fuse_hidden") for n in os.listdir(self.abs(d))):
            if time.monotonic() > deadline:
                raise RuntimeError("hidden files stay in %r" % d)
            time.sleep(0.01)

    # --- operations ----------------------------------------------------------

    def op_create(self, i):
        p = self.free_path("f")
        if p is None:
            return self.log(i, "create", "skip")
        n = self.rng.choice([0, 1, boundary_biased(self.rng, 2 * B)])
        fd = os.open(self.abs(p), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            if n:
                os.write(fd, self.data(n))
        finally:
            os.close(fd)
        ino = self.next_inode
        self.next_inode += 1
        self.add_path(p, ino)
        self.log(i, "create", p, n)

    def op_write(self, i):
        p = self.any_file()
        if p is None:
            return self.op_create(i)
        size = self.size_of(p)
        off = boundary_biased(self.rng, min(size + 2 * B, MAX_SIZE))
        n = min(length_choice(self.rng), MAX_SIZE - off) or 1
        fd = os.open(self.abs(p), os.O_WRONLY)
        try:
            written = os.pwrite(fd, self.data(n), off)
        finally:
            os.close(fd)
        self.log(i, "write", p, off, n, written, self.size_of(p))

    def op_append(self, i):
        p = self.any_file()
        if p is None or self.size_of(p) > MAX_SIZE - 3 * B:
            return self.log(i, "append", "skip")
        n = length_choice(self.rng)
        fd = os.open(self.abs(p), os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, self.data(n))
        finally:
            os.close(fd)
        self.log(i, "append", p, n, self.size_of(p))

    def op_read(self, i):
        p = self.any_file()
        if p is None:
            return self.log(i, "read", "skip")
        size = self.size_of(p)
        off = boundary_biased(self.rng, size + 10)
        n = length_choice(self.rng)
        with open(self.abs(p), "rb") as fh:
            fh.seek(off)
            got = fh.read(n)
        self.log(i, "read", p, off, n, len(got), hashlib.sha256(got).hexdigest()[:16])

    def op_truncate(self, i):
        p = self.any_file()
        if p is None:
            return self.log(i, "truncate", "skip")
        size = self.size_of(p)
        n = boundary_biased(self.rng, min(size + 2 * B, MAX_SIZE))
        os.truncate(self.abs(p), n)
        self.log(i, "truncate", p, n, self.size_of(p))

    def op_unlink(self, i):
        candidates = sorted(self.files) + sorted(self.links)
        if not candidates:
            return self.log(i, "unlink", "skip")
        p = self.rng.choice(candidates)
        os.unlink(self.abs(p))
        if p in self.files:
            self.drop_path(p)
        else:
            del self.links[p]
        self.log(i, "unlink", p)

    def op_mkdir(self, i):
        p = self.free_path("d", MAX_DEPTH - 1)
        if p is None:
            return self.log(i, "mkdir", "skip")
        os.mkdir(self.abs(p), 0o755)
        self.dirs.add(p)
        self.log(i, "mkdir", p)

    def op_rmdir(self, i):
        empty = sorted(d for d in self.dirs if d and not self.children(d))
        if not empty:
            return self.log(i, "rmdir", "skip")
        d = self.rng.choice(empty)
        self.close_all()
        self.settle(d)
        os.rmdir(self.abs(d))
        self.dirs.discard(d)
        self.log(i, "rmdir", d)

    def op_link(self, i):
        src = self.any_file()
        dst = self.free_path("h")
        if src is None or dst is None:
            return self.log(i, "link", "skip")
        os.link(self.abs(src), self.abs(dst))
        self.add_path(dst, self.files[src])
        self.log(i, "link", src, dst, os.stat(self.abs(dst)).st_nlink)

    def op_symlink(self, i):
        dst = self.free_path("s")
        if dst is None:
            return self.log(i, "symlink", "skip")
        target = self.rng.choice(["f1", "../d0/f2", "/abs/target", "x" * self.rng.randint(1, 300)])
        os.symlink(target, self.abs(dst))
        self.links[dst] = target
        self.log(i, "symlink", dst, len(target))

    def op_rename(self, i):
        r = self.rng.random()
        if r < 0.6 and (self.files or self.links):
            src = self.rng.choice(sorted(self.files) + sorted(self.links))
            if self.rng.random() < 0.4 and len(self.files) > 1 and src in self.files:
                dst = self.rng.choice(sorted(p for p in self.files if p != src))
            else:
                dst = self.free_path("r")
            if dst is None:
                return self.log(i, "rename", "skip")
            os.rename(self.abs(src), self.abs(dst))
            if src in self.links:
                self.links[dst] = self.links.pop(src)
            elif dst in self.files and self.files[dst] == self.files[src]:
                pass  # two names of one inode: rename does nothing
            else:
                ino = self.files[src]
                if dst in self.files:
                    self.drop_path(dst)
                self.drop_path(src)
                self.add_path(dst, ino)
            self.log(i, "rename", src, dst)
            return
        dirs = sorted(d for d in self.dirs if d)
        if not dirs:
            return self.log(i, "rename-dir", "skip")
        src = self.rng.choice(dirs)
        height = max(self.depth(d) - self.depth(src) for d in self.dirs if self.under(d, src))
        targets = sorted(
            d
            for d in self.dirs
            if d and not self.under(d, src) and not self.children(d) and self.depth(d) + height <= MAX_DEPTH
        )
        if targets and self.rng.random() < 0.3:
            dst = self.rng.choice(targets)  # onto an empty directory
            self.close_all()
            self.settle(dst)
        else:
            dst = None
            for _ in range(20):
                parent = self.rng.choice(sorted(self.dirs))
                if self.under(parent, src) or self.depth(parent) + 1 + height > MAX_DEPTH:
                    continue
                cand = (parent + "/" if parent else "") + self.new_name("m")
                if cand not in self.dirs and cand not in self.files and cand not in self.links:
                    dst = cand
                    break
            if dst is None:
                return self.log(i, "rename-dir", "skip")
        os.rename(self.abs(src), self.abs(dst))
        self.dirs.discard(dst)

        def move(p):
            return dst + p[len(src):] if self.under(p, src) else p

        self.dirs = {move(d) for d in self.dirs}
        self.links = {move(p): t for p, t in self.links.items()}
        files = {}
        for p, ino in self.files.items():
            files[move(p)] = ino
        self.files = files
        self.inode_paths = {}
        for p, ino in self.files.items():
            self.inode_paths.setdefault(ino, set()).add(p)
        self.log(i, "rename-dir", src, dst)

    def op_fd_open(self, i):
        p = self.any_file()
        if p is None or len(self.fds) >= MAX_FDS:
            return self.log(i, "fd-open", "skip")
        fd = os.open(self.abs(p), os.O_RDWR)
        self.fds.append((fd, self.files[p]))
        self.log(i, "fd-open", p, len(self.fds))

    def pick_fd(self):
        return self.rng.randrange(len(self.fds)) if self.fds else None

    def op_fd_write(self, i):
        k = self.pick_fd()
        if k is None:
            return self.log(i, "fd-write", "skip")
        fd = self.fds[k][0]
        size = os.fstat(fd).st_size
        off = boundary_biased(self.rng, min(size + B, MAX_SIZE))
        n = min(length_choice(self.rng), MAX_SIZE - off) or 1
        os.pwrite(fd, self.data(n), off)
        self.log(i, "fd-write", k, off, n, os.fstat(fd).st_size)

    def op_fd_read(self, i):
        k = self.pick_fd()
        if k is None:
            return self.log(i, "fd-read", "skip")
        fd = self.fds[k][0]
        size = os.fstat(fd).st_size
        off = boundary_biased(self.rng, size)
        got = os.pread(fd, length_choice(self.rng), off)
        self.log(i, "fd-read", k, off, len(got), hashlib.sha256(got).hexdigest()[:16])

    def op_fd_truncate(self, i):
        k = self.pick_fd()
        if k is None:
            return self.log(i, "fd-truncate", "skip")
        fd = self.fds[k][0]
        n = boundary_biased(self.rng, min(os.fstat(fd).st_size + B, MAX_SIZE))
        os.ftruncate(fd, n)
        self.log(i, "fd-truncate", k, n, os.fstat(fd).st_size)

    def op_fd_close(self, i):
        k = self.pick_fd()
        if k is None:
            return self.log(i, "fd-close", "skip")
        os.close(self.fds.pop(k)[0])
        self.log(i, "fd-close", k)

    OPS = [
        ("op_write", 20),
        ("op_append", 4),
        ("op_read", 8),
        ("op_truncate", 8),
        ("op_create", 8),
        ("op_unlink", 5),
        ("op_mkdir", 4),
        ("op_rmdir", 2),
        ("op_rename", 8),
        # No hard links here: libfuse's high-level API gives each name its own
        # kernel inode, so attributes changed through one name show through
        # another only after attr_timeout (1 s) and cached pages of an open
        # descriptor can be stale. Hard links are tested in programs.test.ts.
        ("op_symlink", 2),
        ("op_fd_open", 5),
        ("op_fd_write", 9),
        ("op_fd_read", 6),
        ("op_fd_truncate", 3),
        ("op_fd_close", 4),
    ]

    def run(self, count):
        names = [n for n, _ in self.OPS]
        weights = [w for _, w in self.OPS]
        for i in range(count):
            name = self.rng.choices(names, weights)[0]
            try:
                getattr(self, name)(i)
            except OSError as e:
                # Never expected: the model only asks for valid operations.
                self.log(i, name, "ERROR", errno.errorcode.get(e.errno, e.errno), e.strerror)
        self.close_all()
        for d in sorted(self.dirs):
            self.settle(d)
        self.log("end", len(self.dirs), len(self.files), len(self.links))


def manifest(root):
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(full)
            mode = "%o" % (st.st_mode & 0o7777)
            if os.path.islink(full):
                lines.append("%s link %s" % (rel, hashlib.sha256(os.readlink(full).encode()).hexdigest()[:16]))
            elif os.path.isdir(full):
                lines.append("%s dir %s" % (rel, mode))
            else:
                with open(full, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
                lines.append("%s file %s %d %d %s" % (rel, mode, st.st_size, st.st_nlink, digest))
    return lines


def main(argv):
    os.umask(0o022)
    if len(argv) == 5 and argv[1] == "apply":
        root, seed, count = argv[2], int(argv[3]), int(argv[4])
        model = Model(root, random.Random(seed))
        model.run(count)
        sys.stdout.write("\n".join(model.out) + "\n")
        errors = sum(1 for line in model.out if " ERROR " in line)
        return 1 if errors else 0
    if len(argv) == 3 and argv[1] == "manifest":
        sys.stdout.write("\n".join(manifest(argv[2])) + "\n")
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
