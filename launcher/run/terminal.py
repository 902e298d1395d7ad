"""The controlling terminal, handed to the child's process group and taken back (as ``tini -g`` does).

When stdin is a terminal whose foreground is the launcher's group (not when it runs
in the background), the child's group is made the foreground so Ctrl-C, Ctrl-Z and
reads from the terminal reach it; the old foreground is restored when the launcher
stops itself (job control) or exits.
"""

from __future__ import annotations

import os


class Terminal:
    """stdin's terminal, when the launcher is in its foreground; every call is a no-op without one."""

    def __init__(self) -> None:
        self.own_pgrp = os.getpgrp()
        self.fd: int | None = None

    def attach(self) -> int | None:
        """Find the terminal (stdin, with our group in its foreground); its descriptor, or None."""
        try:
            if os.isatty(0) and os.tcgetpgrp(0) == self.own_pgrp:
                self.fd = 0
        except OSError:
            self.fd = None
        return self.fd

    def give(self, pgrp: int) -> None:
        """Make ``pgrp`` (the child's group) the terminal's foreground."""
        if self.fd is not None:
            try:
                os.tcsetpgrp(self.fd, pgrp)
            except OSError:
                pass

    def restore(self) -> None:
        """Make the launcher's own group the foreground again."""
        self.give(self.own_pgrp)
