"""A stand-in syslog for a test: binds a datagram socket at PATH (when no
syslog daemon owns /dev/log), appends every message to OUT, and removes the
socket when it is terminated.

    python3 syslog_sink.py /dev/log /tmp/out.log
"""

import os
import signal
import socket
import sys

path, out = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
os.chmod(path, 0o666)


def stop(*_):
    try:
        os.unlink(path)
    finally:
        sys.exit(0)


signal.signal(signal.SIGTERM, stop)
with open(out, "ab", buffering=0) as f:
    print("ready", flush=True)
    while True:
        data = sock.recv(65536)
        f.write(data + b"\n")
