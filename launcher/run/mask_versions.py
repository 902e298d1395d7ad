"""Which texts output masking keeps: the current and the two previous versions of each, no more (docs/guides/masking.md).

A child may print a value late (one it read before a rotation, a log line
buffered for minutes), so a value stays masked after it changes; but keeping
every value ever seen grows without bound (30,000 values rotated five times
were 2.4 GB of matcher). Each text is kept by its slot (where the child sees
it: ``launcher.resolve.visible``): a slot keeps its last ``KEEP`` distinct values. An
update in which a slot is missing (a field was removed) counts as a version of
it, so a slot that stays missing is forgotten after ``KEEP`` updates.
"""

from __future__ import annotations

from collections.abc import Mapping

from launcher.resolve.visible import Slot

KEEP = 3  # the current version and the two previous ones


class Versions:
    """The last ``KEEP`` versions of each slot's text; not thread-safe (one builder thread owns it)."""

    def __init__(self, keep: int = KEEP) -> None:
        self.keep = keep
        self._slots: dict[Slot, list[str | None]] = {}  # oldest first; None: missing from that update

    def add(self, values: Mapping[Slot, str]) -> None:
        """One update: ``values`` are current; what they replace becomes a previous version."""
        for slot, value in values.items():
            kept = self._slots.get(slot)
            if kept is None:
                self._slots[slot] = [value]
            elif kept[-1] != value:
                if value in kept:  # an earlier value came back (a rollback): current again, not twice
                    kept.remove(value)
                kept.append(value)
                del kept[:-self.keep]
        for slot in [s for s in self._slots if s not in values]:
            kept = self._slots[slot]
            kept.append(None)
            del kept[:-self.keep]
            if all(v is None for v in kept):
                del self._slots[slot]

    def texts(self) -> set[str]:
        """Every text kept: what the masker is built from."""
        return {v for kept in self._slots.values() for v in kept if v is not None}

    def __len__(self) -> int:
        return len(self._slots)
