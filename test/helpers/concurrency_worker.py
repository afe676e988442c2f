#!/usr/bin/env python3
"""Concurrency workers and verifier for test/integration/concurrency.test.ts.

    concurrency_worker.py work DIR WORKER SEED SECONDS NFILES
    concurrency_worker.py verify DIR

Workers open, truncate (O_TRUNC, ftruncate, truncate by path), write
self-verifying records, read, close and rename the same small set of files
(f0 .. f<NFILES-1> in DIR) until SECONDS have passed, then print one JSON
line: how many of each operation they did and the errno names they met.

Every record is RECORD bytes at an offset that is a multiple of RECORD; it
names its writer, its offset and the writer's generation, and the rest of it
is derived from that header, so a record mixed from two writes (a torn write)
or put at the wrong place never verifies. Files only ever get sizes that are
multiples of RECORD. The verifier checks every file in DIR: size a multiple
of RECORD, every record valid or all zeros (a hole), and prints JSON.
"""

import errno
import hashlib
import json
import os
import random
import sys
import time

# Not a divisor of the page size or of the 32 KiB block: records straddle both.
RECORD = 5000
MAX_RECORDS = 40
HEADER = 40


def record(writer, offset, gen):
    head = ("W%03d O%012d G%010d" % (writer, offset, gen)).ljust(HEADER).encode()
    fill = b""
    counter = 0
    while len(fill) < RECORD - HEADER:
        fill += hashlib.sha256(head + counter.to_bytes(4, "big")).digest()
        counter += 1
    return head + fill[: RECORD - HEADER]


def check_record(chunk, offset):
    """None when the record is valid (or a hole), else what is wrong."""
    if chunk == bytes(len(chunk)):
        return None
    try:
        head = chunk[:HEADER].decode()
        parts = head.split()
        writer = int(parts[0][1:])
        at = int(parts[1][1:])
        gen = int(parts[2][1:])
    except (ValueError, IndexError, UnicodeDecodeError):
        return "unparsable header %r" % chunk[:HEADER]
    if at != offset:
        return "record for offset %d found at %d" % (at, offset)
    if chunk != record(writer, at, gen):
        return "torn record (header %r)" % head.strip()
    return None


def work(root, worker, seed, seconds, nfiles):
    r = random.Random("%s-%d" % (seed, worker))
    names = ["f%d" % i for i in range(nfiles)]
    counts = {}
    errors = {}
    gen = 0
    end = time.monotonic() + seconds

    def count(op):
        counts[op] = counts.get(op, 0) + 1

    def failed(op, e):
        key = "%s:%s" % (op, errno.errorcode.get(e.errno, str(e.errno)))
        errors[key] = errors.get(key, 0) + 1

    while time.monotonic() < end:
        name = r.choice(names)
        path = os.path.join(root, name)
        x = r.random()
        op = "?"
        try:
            if x < 0.45:
                op = "write"
                gen += 1
                flags = os.O_RDWR | os.O_CREAT
                if r.random() < 0.15:
                    flags |= os.O_TRUNC
                    count("o_trunc")
                fd = os.open(path, flags, 0o644)
                try:
                    for _ in range(r.randint(1, 4)):
                        off = r.randrange(MAX_RECORDS) * RECORD
                        os.pwrite(fd, record(worker, off, gen), off)
                        count("record")
                    if r.random() < 0.1:
                        os.ftruncate(fd, r.randrange(MAX_RECORDS) * RECORD)
                        count("ftruncate")
                    if r.random() < 0.05:
                        os.fsync(fd)
                finally:
                    os.close(fd)
            elif x < 0.55:
                op = "truncate"
                os.truncate(path, r.randrange(MAX_RECORDS) * RECORD)
            elif x < 0.7:
                op = "rename"
                other = os.path.join(root, r.choice(names))
                if r.random() < 0.5:
                    os.rename(path, other)
                else:
                    tmp = "%s.tmp.w%d" % (path, worker)
                    os.rename(path, tmp)
                    os.rename(tmp, other)
            else:
                op = "read"
                with open(path, "rb") as fh:
                    while fh.read(1 << 16):
                        pass
            count(op)
        except OSError as e:
            failed(op, e)
    print(json.dumps({"worker": worker, "counts": counts, "errors": errors, "generations": gen}))


def verify(root):
    out = {"files": {}, "problems": []}
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as e:
            out["problems"].append("%s: %s" % (name, errno.errorcode.get(e.errno, e.errno)))
            continue
        records = 0
        if len(data) % RECORD:
            out["problems"].append("%s: size %d is not a multiple of %d" % (name, len(data), RECORD))
        for at in range(0, len(data) - len(data) % RECORD, RECORD):
            bad = check_record(data[at : at + RECORD], at)
            if bad:
                out["problems"].append("%s @%d: %s" % (name, at, bad))
            elif data[at : at + RECORD] != bytes(RECORD):
                records += 1
        out["files"][name] = {"size": len(data), "records": records}
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "work":
        work(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), int(sys.argv[6]))
    elif sys.argv[1] == "verify":
        verify(sys.argv[2])
    else:
        sys.exit("usage: concurrency_worker.py work DIR WORKER SEED SECONDS NFILES | verify DIR")
