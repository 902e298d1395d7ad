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


def on_hup() -> None:
    record({"event": "load", "content": load(), "mode": oct(os.stat(config).st_mode & 0o777)})


# Taken with sigwaitinfo, one at a time, never by handlers: a SIGTERM handler could run
# inside SIGHUP's and exit before the reload is recorded (see print_signals.py).
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGHUP, signal.SIGTERM])
record({"event": "load", "content": load(), "mode": oct(os.stat(config).st_mode & 0o777)})
while signal.sigwaitinfo([signal.SIGHUP, signal.SIGTERM]).si_signo == signal.SIGHUP:
    on_hup()
