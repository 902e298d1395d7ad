"""An nginx-style child: reads its config file at start and again on each SIGHUP.

argv: OUT_FILE CONFIG_PATH. Records {"event": "load", "content": ..., "mode": ...,
"pid": ...} per read as a JSON line. SIGTERM exits 0.
"""

import json
import os
import signal
import sys

out, config = sys.argv[1], sys.argv[2]


def record(event: dict) -> None:
    with open(out, "a") as fh:
        fh.write(json.dumps({**event, "pid": os.getpid()}) + "\n")


def load() -> str:
    with open(config) as fh:
        return fh.read()


def on_hup(signum: int, frame: object) -> None:
    record({"event": "load", "content": load(), "mode": oct(os.stat(config).st_mode & 0o777)})


signal.signal(signal.SIGHUP, on_hup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
record({"event": "load", "content": load(), "mode": oct(os.stat(config).st_mode & 0o777)})
while True:
    signal.pause()
