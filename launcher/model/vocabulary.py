"""The manifest's closed vocabularies, each a ``Literal`` type defined once.

The tuple beside each type is ``typing.get_args`` of it: the reader's choices and
the messages come from it, and code that dispatches on a word uses ``match`` with
``assert_never``, so mypy finds the place a new word was forgotten
(docs/architecture.md, "Adding a rotation action").
"""

from __future__ import annotations

from typing import Literal, get_args

# What a rotation does to the child, weakest to strongest: across bindings the
# strongest wins (exit > restart > signal > ignore). The rotation policy ranks by this order.
Action = Literal["ignore", "signal", "restart", "exit"]
ACTIONS: tuple[Action, ...] = get_args(Action)

# How each retry's wait is drawn (``retry.jitter``).
Jitter = Literal["full", "equal", "none"]
JITTERS: tuple[Jitter, ...] = get_args(Jitter)

# What a failed check does while watching (``watch.on_error``).
OnError = Literal["keep", "exit"]
ON_ERRORS: tuple[OnError, ...] = get_args(OnError)

# Where a signal goes: the child's process group, or the child alone.
SignalTarget = Literal["group", "child"]
SIGNAL_TARGETS: tuple[SignalTarget, ...] = get_args(SignalTarget)
