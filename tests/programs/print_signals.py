"""A child that appends the name of each signal it receives to a file (after dumb-init's).

argv: OUT_FILE [EXIT_CODE_ON_SIGTERM]. Writes OUT_FILE.ready (its pid) once the
signals it reports are blocked, so a test knows when to start sending.

The signals are blocked and taken one at a time with ``sigwaitinfo``, in the
order they come, never with Python signal handlers: a handler for SIGTERM can
run inside SIGHUP's (between two of its bytecodes) and exit before SIGHUP is
written, so a test sending HUP then TERM would now and then see TERM alone.
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

# Blocked, a signal waits for sigwaitinfo whatever its disposition (even one inherited as ignored).
signal.pthread_sigmask(signal.SIG_BLOCK, CAUGHT)
with open(out + ".ready", "w") as fh:
    fh.write(str(os.getpid()))
while True:
    signum = signal.sigwaitinfo(CAUGHT).si_signo
    with open(out, "a") as fh:
        fh.write(signal.Signals(signum).name + "\n")
    if signum == signal.SIGTERM:
        sys.exit(code_on_term)
