"""The rotation policy as tables of event histories (no processes, no clock, no threads).

Each case feeds ``policy.decide`` a history of (time, event) and compares what
it asked for, in order, with the expected list. ``R`` is a restart, ``S`` a
signal, ``X`` an exit, ``I`` an ignore (with the names acted on), ``H`` a hold.
"""

from __future__ import annotations

import pytest

from launcher.run.policy import Act, Changed, Hold, Restarted, Rules, State, Tick, decide, strongest_action

RULES = Rules(debounce=2.0, splay=0.0, max_restarts=2, restart_window=60.0, default="restart",
              on_change={"QUIET": "ignore", "CERT": "signal", "FATAL": "exit"}, files=frozenset({"CERT"}))


def changed(*names: str, urgent: bool = False) -> Changed[str]:
    return Changed(frozenset(names), "+".join(sorted(names)), urgent)


def run(history: list[tuple[float, object]], rules: Rules = RULES) -> list[str]:
    """Feed the history; return what was asked for, e.g. ``"R@3 A,B"`` (restart at t=3 of A and B)."""
    state: State[str] = State()
    out: list[str] = []
    for now, event in history:
        state, actions = decide(state, event, now, rules)  # type: ignore[arg-type]
        for action in actions:
            if isinstance(action, Hold):
                out.append(f"H@{now:g} until {action.until:g}")
            else:
                assert isinstance(action, Act)
                letter = {"restart": "R", "signal": "S", "exit": "X", "ignore": "I"}.get(action.action, action.action)
                out.append(f"{letter}@{now:g} {','.join(action.names)}")
    return out


CASES = {
    "a change waits out the debounce": (
        [(0, changed("A")), (1, Tick()), (1.9, Tick()), (2, Tick())],
        ["R@2 A"],
    ),
    "each change restarts the quiet period, merging names": (
        [(0, changed("A")), (1.5, changed("B")), (3, Tick()), (3.5, Tick())],
        ["R@3.5 A,B"],
    ),
    "the quiet period is capped at 4x from the first change": (
        [(0, changed("A")), (1.5, changed("B")), (3, changed("C")), (4.5, changed("D")), (6, changed("E")), (7.5, changed("F")),
         (7.9, Tick()), (8, Tick())],
        ["R@8 A,B,C,D,E,F"],
    ),
    "a lease about to end acts at once": (
        [(0, changed("A", urgent=True))],
        ["R@0 A"],
    ),
    "ignore only logs, and nothing is under way after it": (
        [(0, changed("QUIET")), (2, Tick()), (3, changed("A")), (5, Tick())],
        ["I@2 QUIET", "R@5 A"],
    ),
    "a file binding is signalled": (
        [(0, changed("CERT")), (2, Tick()), (2, Restarted())],
        ["S@2 CERT"],
    ),
    "the strongest action wins across names": (
        [(0, changed("QUIET", "CERT", "A")), (2, Tick())],
        ["R@2 A,CERT,QUIET"],
    ),
    "exit beats everything": (
        [(0, changed("CERT", "FATAL", "A")), (2, Tick())],
        ["X@2 A,CERT,FATAL"],
    ),
    "a change during a restart waits for the new child, then acts": (
        [(0, changed("A")), (2, Tick()), (2.5, changed("B")), (4.5, Tick()), (6, Restarted())],
        ["R@2 A", "R@6 B"],
    ),
    "the storm guard holds the third restart until the window frees a slot": (
        [(0, changed("A")), (2, Tick()), (3, Restarted()), (10, changed("B")), (12, Tick()), (13, Restarted()),
         (20, changed("C")), (22, Tick()), (30, changed("D")), (32, Tick()), (61.9, Tick()), (62, Tick())],
        ["R@2 A", "R@12 B", "H@22 until 62", "R@62 C,D"],
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_policy_table(case: str) -> None:
    history, expected = CASES[case]
    assert run(history) == expected  # type: ignore[arg-type]


def test_splay_delays_by_the_drawn_fraction() -> None:
    rules = Rules(debounce=2.0, splay=10.0)
    assert run([(0, changed("A")), (2, Tick(draw=0.25)), (4.4, Tick()), (4.5, Tick())], rules) == ["R@4.5 A"]


def test_no_debounce_acts_on_the_next_tick() -> None:
    assert run([(0, changed("A")), (0, Tick())], Rules(debounce=0.0)) == ["R@0 A"]


def test_next_timer_is_the_earliest_pending_deadline() -> None:
    state, _ = decide(State(), changed("A"), 0.0, RULES)
    assert state.next_timer() == 2.0
    state, _ = decide(state, changed("B"), 1.0, RULES)
    assert state.next_timer() == 3.0
    assert State().next_timer() is None


@pytest.mark.parametrize(
    ("names", "default", "expected", "fell_back"),
    [
        ({"PLAIN"}, "restart", "restart", ()),
        ({"QUIET"}, "restart", "ignore", ()),
        ({"QUIET", "CERT"}, "restart", "signal", ()),
        ({"CERT", "PLAIN"}, "ignore", "signal", ()),
        ({"CERT", "PLAIN"}, "restart", "restart", ()),
        ({"PLAIN"}, "signal", "restart", ("PLAIN",)),  # a running process cannot see a new environment
        ({"QUIET", "FATAL"}, "signal", "exit", ()),
        ({"INLINE"}, "exit", "exit", ()),  # not in the manifest: the default applies
    ],
)
def test_strongest_action(names: set[str], default: str, expected: str, fell_back: tuple[str, ...]) -> None:
    rules = Rules(default=default, on_change=RULES.on_change, files=RULES.files)
    assert strongest_action(names, rules) == (expected, fell_back)


def test_a_new_action_reaches_the_policy_table() -> None:
    """docs/architecture.md, "A new rotation action", steps 1 and 4, with a scratch word.

    The policy ranks actions by its table (``Rules.order``, the vocabulary's own order by
    default): a word added to it in its place is decided like the others, and nothing in
    the supervisor's loop had to change for the policy to answer with it.
    """
    order = ("ignore", "log", "signal", "restart", "exit")  # "log": stronger than ignore, weaker than signal
    rules = Rules(debounce=0.0, default="restart", on_change={"A": "log", "QUIET": "ignore"}, order=order)  # type: ignore[dict-item]
    assert strongest_action({"A", "QUIET"}, rules) == ("log", ())
    assert strongest_action({"A", "B"}, rules) == ("restart", ())  # B takes the default, which is stronger
    assert run([(0, changed("A", "QUIET")), (0.5, Tick())], rules) == ["log@0.5 A,QUIET"]


def test_a_word_missing_from_the_table_is_the_policys_error_not_a_crash_elsewhere() -> None:
    rules = Rules(on_change={"A": "log"})  # type: ignore[dict-item]  # forgotten in the table (step 1)
    with pytest.raises(ValueError, match="missing from the policy table: log"):
        strongest_action({"A"}, rules)
