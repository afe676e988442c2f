#!/usr/bin/env python3
"""Files with known content, for the crash tests.

Every byte of a pattern file is determined by the file's name and the
byte's offset, so any readable byte can be checked without a reference copy:

    pattern.py create PATH SIZE            write PATH with SIZE pattern bytes
    pattern.py append PATH CHUNK LIMIT     append pattern bytes in CHUNK-byte
                                           writes until LIMIT bytes; prints
                                           the acknowledged size after each
                                           write ("acked N"), then "done" or
                                           "error ERRNO"
    pattern.py rewrite PATH SEED COUNT     rewrite COUNT random ranges of PATH
                                           with the same pattern bytes
    pattern.py verify ROOT                 read every regular file below ROOT
                                           block by block; print a JSON map
                                           path -> {size, bad: [block...],
                                           open_error, mismatch: [block...]}
"""

import errno
import hashlib
import json
import os
import random
import sys

B = 32 * 1024
CHUNK = 4096


def pattern(tag, offset, length):
    out = bytearray()
    c = offset // CHUNK
    skip = offset - c * CHUNK
    while len(out) < skip + length:
        out += hashlib.sha256(("%s:%d" % (tag, c)).encode()).digest() * (CHUNK // 32)
        c += 1
    return bytes(out[skip:skip + length])


def tag_of(path):
    return os.path.basename(path)


def create(path, size):
    with open(path, "wb") as fh:
        at = 0
        while at < size:
            n = min(1 << 20, size - at)
            fh.write(pattern(tag_of(path), at, n))
            at += n


def append(path, chunk, limit):
    tag = tag_of(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        at = os.fstat(fd).st_size
        while at < limit:
            n = min(chunk, limit - at)
            data = pattern(tag, at, n)
            done = 0
            while done < n:
                done += os.write(fd, data[done:])
            at += n
            print("acked %d" % at, flush=True)
        os.close(fd)
        print("done", flush=True)
    except OSError as e:
        print("error %s" % errno.errorcode.get(e.errno, e.errno), flush=True)


def rewrite(path, seed, count):
    rng = random.Random(seed)
    tag = tag_of(path)
    try:
        fd = os.open(path, os.O_WRONLY)
        size = os.fstat(fd).st_size
        for _ in range(count):
            off = rng.randrange(size)
            n = min(rng.randint(1, 3 * B), size - off)
            os.pwrite(fd, pattern(tag, off, n), off)
        os.close(fd)
        print("done", flush=True)
    except OSError as e:
        print("error %s" % errno.errorcode.get(e.errno, e.errno), flush=True)


def verify(root):
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            size = os.lstat(full).st_size
            entry = {"size": size, "bad": [], "mismatch": [], "open_error": None, "errors": []}
            result[rel] = entry
            try:
                fd = os.open(full, os.O_RDONLY)
            except OSError as e:
                entry["open_error"] = errno.errorcode.get(e.errno, e.errno)
                continue
            try:
                size = os.fstat(fd).st_size
                entry["size"] = size
                for k in range((size + B - 1) // B):
                    try:
                        got = os.pread(fd, B, k * B)
                    except OSError as e:
                        entry["bad"].append(k)
                        if e.errno != errno.EIO:
                            entry["errors"].append(errno.errorcode.get(e.errno, e.errno))
                        continue
                    want = pattern(tag_of(full), k * B, min(B, size - k * B))
                    if got != want:
                        entry["mismatch"].append(k)
            finally:
                os.close(fd)
    print(json.dumps(result, sort_keys=True))


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "create" and len(argv) == 4:
        create(argv[2], int(argv[3]))
    elif cmd == "append" and len(argv) == 5:
        append(argv[2], int(argv[3]), int(argv[4]))
    elif cmd == "rewrite" and len(argv) == 5:
        rewrite(argv[2], int(argv[3]), int(argv[4]))
    elif cmd == "verify" and len(argv) == 3:
        verify(argv[2])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
