"""A child that keeps logging in to PostgreSQL with the credentials it was given.

argv: OUT_FILE PSQL_PATH PORT. Records {"event": "start", "user"} and then one
{"event": "login", "ok"} per attempt (every 0.2 s) until SIGTERM (exit 0).
"""

import json
import os
import signal
import subprocess
import sys
import time

out, psql, port = sys.argv[1:4]
stopping = False


def record(event: dict) -> None:
    with open(out, "a") as fh:
        fh.write(json.dumps({**event, "pid": os.getpid(), "t": time.time()}) + "\n")


def stop(signum: int, frame: object) -> None:
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, stop)
record({"event": "start", "user": os.environ["PGUSER"]})
while not stopping:
    done = subprocess.run([psql, "-h", "127.0.0.1", "-p", port, "-d", "postgres", "-tAc", "SELECT 1"],
                          env={**os.environ, "PGCONNECT_TIMEOUT": "5"}, capture_output=True, text=True, check=False)
    if stopping:
        break
    record({"event": "login", "user": os.environ["PGUSER"], "ok": done.returncode == 0, "err": done.stderr[-200:]})
    time.sleep(0.2)  # the pace of a client, not synchronisation
sys.exit(0)
