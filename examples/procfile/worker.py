"""A stand-in worker: reports that it has its secret and waits for SIGTERM."""

import os
import signal
import sys

signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(f"worker has DB_PASSWORD: {'DB_PASSWORD' in os.environ}", flush=True)
while True:
    signal.pause()
