"""A child that ignores SIGTERM, leaves a grandchild in its group that does too, and exits.

argv: PIDFILE. The grandchild's pid is written to PIDFILE; it only dies by SIGKILL.
"""

import os
import signal
import sys
import time

signal.signal(signal.SIGTERM, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    with open(sys.argv[1] + ".tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    while True:
        time.sleep(3600)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
sys.exit(5)
