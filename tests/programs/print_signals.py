"""A child that appends the name of each signal it receives to a file (after dumb-init's).

argv: OUT_FILE [EXIT_CODE_ON_SIGTERM]. Writes OUT_FILE.ready (its pid) once its
handlers are installed, so a test knows when to start sending.
"""

import os
import signal
import sys

out = sys.argv[1]
code_on_term = int(sys.argv[2]) if len(sys.argv) > 2 else 0
CAUGHT = [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGQUIT, signal.SIGWINCH,
          signal.SIGTERM, signal.SIGCONT, signal.SIGALRM, signal.SIGURG, signal.SIGTSTP, signal.SIGPWR]


def handler(signum: int, frame: object) -> None:
    with open(out, "a") as fh:
        fh.write(signal.Signals(signum).name + "\n")
    if signum == signal.SIGTERM:
        sys.exit(code_on_term)


for sig in CAUGHT:
    signal.signal(sig, handler)
with open(out + ".ready", "w") as fh:
    fh.write(str(os.getpid()))
while True:
    signal.pause()
