"""A child that appends the name of each signal it receives to a file (after dumb-init's).

argv: OUT_FILE [EXIT_CODE_ON_SIGTERM]. Writes OUT_FILE.ready (its pid) once its
handlers are installed and the signals it catches unblocked, so a test knows when
to start sending.
"""

import os
import signal
import sys

out = sys.argv[1]
code_on_term = int(sys.argv[2]) if len(sys.argv) > 2 else 0
CAUGHT = [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGQUIT, signal.SIGWINCH,
          signal.SIGTERM, signal.SIGCONT, signal.SIGALRM, signal.SIGURG, signal.SIGTSTP, signal.SIGPWR,
          # Fault signals and SIGPIPE, as another process sends them with kill (never real faults here).
          signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT, signal.SIGTRAP, signal.SIGSYS,
          signal.SIGPIPE]


def handler(signum: int, frame: object) -> None:
    with open(out, "a") as fh:
        fh.write(signal.Signals(signum).name + "\n")
    if signum == signal.SIGTERM:
        sys.exit(code_on_term)


for sig in CAUGHT:
    signal.signal(sig, handler)
# Like many servers, take charge of its own mask: it may have been started with some blocked.
signal.pthread_sigmask(signal.SIG_UNBLOCK, CAUGHT)
with open(out + ".ready", "w") as fh:
    fh.write(str(os.getpid()))
while True:
    signal.pause()
