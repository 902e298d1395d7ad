"""A child that writes pieces of text to stdout or stderr with pauses between them, one write each.

argv: STEPS..., each one of
  ``out:TEXT`` / ``err:TEXT``  write TEXT to stdout / stderr (one ``write``), where
                               ``{NAME}`` is the variable NAME and ``{NAME[A:B]}`` a slice of it
                               (Python slice bounds, either may be empty);
  ``sleep:SECONDS``            pause;
  ``chars:NAME:SECONDS``       write NAME to stdout one character per write, pausing between;
  ``lines:N``                  N numbered lines, alternately to stdout and stderr, each holding TOKEN;
  ``same``                     write ``same`` or ``different`` and a newline to stdout: whether
                               fd 1 and fd 2 are the same open pipe or file.
Writes go straight to the descriptors (``os.write``), never through a buffer.
"""

import os
import re
import sys
import time

_FIELD = re.compile(r"\{(\w+)(?:\[(-?\d*):(-?\d*)\])?\}")


def expand(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1), "")
        if m.group(2) is None:
            return value
        lo, hi = (int(x) if x else None for x in (m.group(2), m.group(3)))
        return value[lo:hi]

    return _FIELD.sub(one, text)


def write(fd: int, text: str) -> None:
    data = text.encode()
    while data:
        data = data[os.write(fd, data):]


for step in sys.argv[1:]:
    kind, _, rest = step.partition(":")
    if kind in ("out", "err"):
        write(1 if kind == "out" else 2, expand(rest))
    elif kind == "sleep":
        time.sleep(float(rest))
    elif kind == "chars":
        name, _, pause = rest.partition(":")
        for i, char in enumerate(os.environ.get(name, "")):
            if i:
                time.sleep(float(pause))
            write(1, char)
    elif kind == "lines":
        token = os.environ.get("TOKEN", "")
        for i in range(int(rest)):
            write(1 + i % 2, f"line {i} {token}\n")
    elif kind == "same":
        one, two = os.fstat(1), os.fstat(2)
        write(1, "same\n" if (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino) else "different\n")
    else:
        sys.exit(f"unknown step {step!r}")
