"""What to do about a rotation, and when: a pure function of the history of events.

``decide(state, event, now, rules)`` returns the next state and the actions to
take. It does no I/O, reads no clock and draws no random number (the splay's
draw comes in with the ``Tick``), so it is tested as tables of event
histories; the supervisor carries the actions out. The rules (docs/architecture.md,
"Rotation"):

- a change waits out ``debounce``: a quiet period restarted by each new
  change, capped at 4x its length from the first one; changes in between merge;
- then a random ``splay`` (up to ``splay`` seconds), so a fleet does not act at once;
- a change that cannot wait (a lease about to end) skips both;
- the action is the strongest the changed names ask for (exit > restart >
  signal > ignore): a binding's own ``on_change``, else the default
  (``--on-change``, else ``watch.on_change``); ``signal`` for a variable that
  is not a file becomes ``restart`` (a running process cannot see a new
  environment);
- the storm guard allows ``max_restarts`` restarts per ``restart_window``;
  past it the restart is held until a slot frees, merging further changes;
- while a restart is under way (the old child stopping), a new change waits,
  and is acted on as soon as the new child runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, replace
from typing import Generic, TypeVar

from launcher.model.config import Manifest
from launcher.model.vocabulary import ACTIONS, Action
from launcher.record import record

P = TypeVar("P")  # what a change carries (the supervisor's new resolution); opaque here


@record
class Rules:
    """The settings ``decide`` follows; built once from ``watch`` and the bindings."""

    debounce: float = 2.0
    splay: float = 0.0
    max_restarts: int = 5
    restart_window: float = 300.0
    default: Action = "restart"
    on_change: Mapping[str, Action] = field(default_factory=dict)  # a binding's own action
    files: frozenset[str] = frozenset()  # names whose value reaches the child as a file
    # The policy table: actions from weakest to strongest (``strongest_action`` ranks by it).
    # The vocabulary's own order; a test adds a word here to follow docs/architecture.md's recipe.
    order: tuple[str, ...] = ACTIONS


# -- events ---------------------------------------------------------------------------------


@record
class Changed(Generic[P]):
    """The environment changed: these names differ; ``payload`` is the new state of things."""

    names: frozenset[str]
    payload: P
    urgent: bool = False  # a lease is ending: act now, skipping debounce and splay


@record
class Tick:
    """Time passed; ``draw`` is a uniform number in [0, 1) for the splay."""

    draw: float = 0.0


@record
class Restarted:
    """The restart (or signal) the policy asked for is done: the new child runs."""


# -- actions ------------------------------------------------------------------------------------


@record
class Act(Generic[P]):
    """Carry out ``action`` (restart, signal, exit or ignore) for ``names`` with ``payload``.

    ``fell_back``: names whose ``signal`` became a restart (they are not files).
    """

    action: Action
    names: tuple[str, ...]
    payload: P
    fell_back: tuple[str, ...] = ()


@record
class Hold:
    """The storm guard holds a restart until ``until`` (``restarts`` already made in the window)."""

    until: float
    restarts: int


# -- state --------------------------------------------------------------------------------------


@record
class State(Generic[P]):
    """Everything ``decide`` remembers between events."""

    payload: P | None = None  # the newest change not yet acted on
    names: frozenset[str] = frozenset()
    first_change: float | None = None  # debounce: when the quiet period began
    quiet_until: float | None = None  # debounce: when it ends
    act_at: float | None = None  # the end of the splay
    held_until: float | None = None  # the storm guard frees a slot then
    hold_told: bool = False  # the hold is said once, however many changes merge into it
    restarts: tuple[float, ...] = ()  # when the restarts in the window were made
    busy: bool = False  # a restart or signal is under way

    def next_timer(self) -> float | None:
        """When ``decide`` next wants a ``Tick`` (None: only on events)."""
        timers = [t for t in (self.quiet_until, self.act_at, self.held_until) if t is not None]
        return min(timers) if timers else None


def decide(state: State[P], event: Changed[P] | Tick | Restarted, now: float, rules: Rules) -> tuple[State[P], list[Act[P] | Hold]]:
    """The next state and the actions to take now; see the module docstring for the rules."""
    if isinstance(event, Changed):
        merged = replace(state, payload=event.payload, names=state.names | event.names)
        if event.urgent:
            return _ready(replace(merged, first_change=None, quiet_until=None, act_at=now), now, rules)
        first = state.first_change if state.first_change is not None else now
        quiet = min(now + rules.debounce, first + 4 * rules.debounce)
        return _ready(replace(merged, first_change=first, quiet_until=quiet), now, rules)
    if isinstance(event, Restarted):
        return _ready(replace(state, busy=False), now, rules)
    if state.quiet_until is not None and now >= state.quiet_until:
        act_at = now + event.draw * rules.splay if rules.splay > 0 else now
        state = replace(state, first_change=None, quiet_until=None, act_at=act_at)
    return _ready(state, now, rules)


def _ready(state: State[P], now: float, rules: Rules) -> tuple[State[P], list[Act[P] | Hold]]:
    """Act when a change is pending, its timers have run out and nothing is under way."""
    due = [t for t in (state.act_at, state.held_until) if t is not None]
    if state.payload is None or state.busy or state.quiet_until is not None or not due or min(due) > now:
        return state, []
    payload = state.payload
    action, fell_back = strongest_action(state.names, rules)
    names = tuple(sorted(state.names))
    if action == "restart":
        recent = tuple(t for t in state.restarts if now - t < rules.restart_window)
        if len(recent) >= rules.max_restarts:
            until = recent[0] + rules.restart_window
            held = replace(state, restarts=recent, act_at=None, held_until=until, hold_told=True)
            return held, ([] if state.hold_told else [Hold(until, len(recent))])
        state = replace(state, restarts=(*recent, now))
    done: State[P] = State(restarts=state.restarts, busy=action in ("restart", "signal"))
    return done, [Act(action, names, payload, fell_back)]


def strongest_action(names: frozenset[str] | set[str], rules: Rules) -> tuple[Action, tuple[str, ...]]:
    """The strongest action the changed names ask for, and the names whose signal became a restart.

    Ranked by ``rules.order``; a word missing from it is a bug in the table, reported
    here (``ValueError``) as the policy's own, never as a crash in the supervisor's loop.
    """
    actions: set[Action] = {"ignore"}
    fell_back = []
    for name in sorted(names):
        action = rules.on_change.get(name) or rules.default
        if action == "signal" and name not in rules.files:
            fell_back.append(name)
            action = "restart"
        actions.add(action)
    unknown = sorted(a for a in actions if a not in rules.order)
    if unknown:
        raise ValueError(f"rotation actions missing from the policy table: {', '.join(unknown)}")
    return max(actions, key=rules.order.index), tuple(fell_back)


def rules_for(manifest: Manifest) -> Rules:
    """The rotation policy's rules: ``watch`` settings and each binding's own ``on_change``."""
    w = manifest.watch
    return Rules(
        debounce=w.debounce, splay=w.splay, max_restarts=w.max_restarts, restart_window=w.restart_window, default=w.on_change,
        on_change={b.name: b.on_change for b in manifest.env if b.on_change},
        files=frozenset(b.name for b in manifest.env if b.file),
    )
