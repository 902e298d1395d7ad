"""The bundle's entry script (PyInstaller runs it as __main__): the `launcher` command."""

import os
import sys

from launcher.bundle import restore_environment

# First, before anything reads it: the environment as the caller gave it, not as
# PyInstaller's bootloader left it for its own restart (the child inherits it).
restore_environment(os.environ, getattr(sys, "_MEIPASS", ""))

from launcher.cli import main  # noqa: E402

main()
