#!/usr/bin/env python3
"""A long-lived client that touches a mount on behalf of a test.

The test process never touches a mount point itself; it starts this script
once and sends it one JSON object a line on stdin; for each it answers one
JSON line on stdout:

    {"id": 7, "op": "read", "path": "/mnt/x"}
    -> {"id": 7, "ok": true, "sha256": "...", "size": 123}
    -> {"id": 7, "ok": false, "errno": "EIO", "error": "..."}

Paths are given as "path" (a str) or "pathb64" (raw bytes, base64), and a
second path for rename as "to" / "tob64". The test puts a deadline on every
request: a request that hangs is the test's business (it aborts the FUSE
connection, which makes the blocked call fail with ENOTCONN; the late answer
is then ignored).

Ops: stat, lstat, read, readlink, listdir, chmod, chown, truncate,
open_write, open_trunc, write, create, create_excl, symlink, unlink, rename, mkdir,
rmdir, setxattr, removexattr, getxattr, utime, ping.
"""

import base64
import errno
import hashlib
import json
import os
import stat
import sys


def path_of(req, key="path"):
    if key + "b64" in req:
        return base64.b64decode(req[key + "b64"])
    return req[key]


def kind(mode):
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    return "other"


def stat_reply(st):
    return {
        "type": kind(st.st_mode),
        "mode": stat.S_IMODE(st.st_mode),
        "size": st.st_size,
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def handle(req):
    op = req["op"]
    p = path_of(req) if ("path" in req or "pathb64" in req) else None
    data = base64.b64decode(req.get("data", ""))
    if op == "ping":
        return {}
    if op == "stat":
        return stat_reply(os.stat(p))
    if op == "lstat":
        return stat_reply(os.lstat(p))
    if op == "read":
        # O_NONBLOCK: a FIFO that the mount shows must not block the client in the kernel.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return {"ok": False, "errno": "NOTREG", "error": kind(st.st_mode)}
            h = hashlib.sha256()
            size = 0
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                h.update(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
        return {"sha256": h.hexdigest(), "size": size}
    if op == "readlink":
        target = os.readlink(p)
        return {"target": target if isinstance(target, str) else target.decode("utf-8", "replace")}
    if op == "listdir":
        names = os.listdir(p if isinstance(p, bytes) else p.encode())
        return {"names": sorted(base64.b64encode(n).decode() for n in names)}
    if op == "chmod":
        os.chmod(p, req.get("mode", 0o600))
        return {}
    if op == "chown":
        os.chown(p, req.get("uid", 1), req.get("gid", 1))
        return {}
    if op == "truncate":
        os.truncate(p, req.get("size", 0))
        return {}
    if op in ("open_write", "open_trunc", "write", "create", "create_excl"):
        flags = os.O_WRONLY
        if op == "open_trunc":
            flags |= os.O_TRUNC
        if op == "create":
            flags |= os.O_CREAT | os.O_TRUNC
        if op == "create_excl":
            flags |= os.O_CREAT | os.O_EXCL
        fd = os.open(p, flags | os.O_NONBLOCK, 0o644)
        try:
            if data or op == "write":
                write_all(fd, data or b"x")
        finally:
            os.close(fd)
        return {}
    if op == "symlink":
        os.symlink(req["target"], p)
        return {}
    if op == "unlink":
        os.unlink(p)
        return {}
    if op == "rename":
        os.rename(p, path_of(req, "to"))
        return {}
    if op == "mkdir":
        os.mkdir(p, 0o755)
        return {}
    if op == "rmdir":
        os.rmdir(p)
        return {}
    if op == "setxattr":
        os.setxattr(p, req.get("name", "user.x"), data or b"v")
        return {}
    if op == "removexattr":
        os.removexattr(p, req.get("name", "user.x"))
        return {}
    if op == "getxattr":
        return {"value": base64.b64encode(os.getxattr(p, req.get("name", "user.x"))).decode()}
    if op == "utime":
        t = req.get("time", 1_000_000_000)
        os.utime(p, (t, t))
        return {}
    raise ValueError("unknown op " + op)


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            out = handle(req)
            out.setdefault("ok", True)
        except OSError as e:
            out = {
                "ok": False,
                "errno": errno.errorcode.get(e.errno, str(e.errno)),
                "error": str(e),
            }
        except Exception as e:  # a bug in a request, not a filesystem answer
            out = {"ok": False, "errno": "CLIENT", "error": repr(e)}
        out["id"] = req.get("id")
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
