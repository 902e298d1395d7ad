"""A child that prints its secrets, the hard ways: split across writes, JSON-escaped, on both
streams, without a final newline, and (optionally) a flood just before it exits.

argv: MODE. The values come from the environment variables TOKEN and PEM.
MODE ``split``: TOKEN written in two pieces a few milliseconds apart, then the rest.
MODE ``flood``: 10 MB of lines holding TOKEN, then a last line without a newline, then exit.
MODE ``term``: print, then wait; on SIGTERM print a last line (without newline) and exit.
MODE ``previous``: print OLD_TOKEN (a value the launcher saw before a rotation).
"""

import json
import os
import signal
import sys
import time

mode = sys.argv[1]
token = os.environ.get("TOKEN", "")
out = sys.stdout.buffer
err = sys.stderr.buffer


def say(stream, text: str) -> None:
    stream.write(text.encode())
    stream.flush()


if mode == "split":
    half = len(token) // 2
    for i in range(3):
        say(out, f"line {i} token=")
        say(out, token[:half])
        time.sleep(0.005)  # the child's own pacing: the launcher must not rely on one write
        say(out, token[half:] + "\n")
        say(err, f"err {i} {json.dumps({'token': token})}\n")
    say(out, "pem:\n" + os.environ.get("PEM", "") + "\n")
    say(out, f"last {token} without newline")
elif mode == "flood":
    line = f"flood {token} {'x' * 80}\n".encode()
    written = 0
    while written < 10 * 1024 * 1024:
        out.write(line)
        written += len(line)
    out.flush()
    say(out, f"final {token} no newline")
elif mode == "term":
    def on_term(signum: int, frame: object) -> None:
        say(out, f"bye {token}")
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    say(out, f"ready {token}\n")
    while True:
        signal.pause()
elif mode == "previous":
    say(out, f"old={os.environ.get('OLD_TOKEN', '')} new={token}\n")
