"""A stand-in app: serves until SIGTERM, then exits 0."""

import os
import signal
import sys

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"app started, DB_PASSWORD is {len(os.environ.get('DB_PASSWORD', ''))} characters", flush=True)
while True:
    signal.pause()
