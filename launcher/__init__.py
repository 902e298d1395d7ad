"""launcher: put secrets into a process's environment, and supervise it."""

__version__ = "0.1.0"
