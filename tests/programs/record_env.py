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


def on_hup() -> None:
    files = {}
    for name in names:
        try:
            with open(os.environ[name]) as fh:
                files[name] = fh.read()
        except (KeyError, OSError):
            pass
    record({"event": "SIGHUP", "files": files})


# Taken with sigwaitinfo, one at a time, never by handlers: a SIGTERM handler could run
# inside SIGHUP's and exit before the SIGHUP is recorded (see print_signals.py).
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGHUP, signal.SIGTERM])
record({"event": "start", "env": {n: os.environ.get(n) for n in names}})
while signal.sigwaitinfo([signal.SIGHUP, signal.SIGTERM]).si_signo == signal.SIGHUP:
    on_hup()
