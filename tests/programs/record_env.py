"""A child that records each start and each SIGHUP as a JSON line, then waits.

argv: OUT_FILE NAME [NAME...]. On start: {"event": "start", "pid", "env": {NAME: value}}.
On SIGHUP: {"event": "SIGHUP", "pid", "files": {NAME: content of the file at $NAME}}.
SIGTERM exits 0.
"""

import json
import os
import signal
import sys

out, names = sys.argv[1], sys.argv[2:]


def record(event: dict) -> None:
    with open(out, "a") as fh:
        fh.write(json.dumps({**event, "pid": os.getpid()}) + "\n")


def on_hup(signum: int, frame: object) -> None:
    files = {}
    for name in names:
        try:
            with open(os.environ[name]) as fh:
                files[name] = fh.read()
        except (KeyError, OSError):
            pass
    record({"event": "SIGHUP", "files": files})


signal.signal(signal.SIGHUP, on_hup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
record({"event": "start", "env": {n: os.environ.get(n) for n in names}})
while True:
    signal.pause()
