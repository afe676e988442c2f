"""Runs a command on a pseudo-terminal and answers its prompts.

The answers come on our standard input, one per line (never in argv, so a
process listing never shows them); each is typed when the program's output
ends with a prompt (": " at the end). Everything the program wrote is
printed; the exit status is the program's. Used by the home tests to drive
passwd and su, which read passwords from the terminal only.

    python3 pty_answer.py passwd alice  < answers
"""

import os
import pty
import select
import sys
import time

answers = sys.stdin.read().split("\n")
if answers and answers[-1] == "":
    answers.pop()

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])

output = b""
pending = b""
deadline = time.time() + 60
while time.time() < deadline:
    ready, _, _ = select.select([fd], [], [], 0.2)
    if ready:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        output += data
        pending += data
        if pending.rstrip(b" ").endswith(b":") and answers:
            time.sleep(0.05)
            os.write(fd, answers.pop(0).encode() + b"\n")
            pending = b""
_, status = os.waitpid(pid, 0)
sys.stdout.write(output.decode("utf-8", "replace"))
sys.exit(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8)
