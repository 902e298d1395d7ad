"""``record``: a frozen dataclass whose methods are shared, not compiled per class.

A ``@dataclass(frozen=True)`` compiles six methods for each class when its module is
imported (``__init__``, ``__repr__``, ``__eq__``, ``__hash__``, ``__setattr__`` and
``__delattr__``): about half a millisecond a class on Python 3.11, 13 ms of a
``file``-only ``exec``'s start-up across the two dozen classes it loads. ``record``
has the dataclass machinery compile ``__init__`` only and gives every record the same
five functions for the rest, which read the field names computed once per class.

What a caller sees is a frozen dataclass: ``dataclasses.fields``, ``replace`` and
``is_dataclass`` work; equal fields compare equal and hash alike; assigning or deleting
a field raises ``dataclasses.FrozenInstanceError``; ``field(repr=False)`` hides a field
from the repr. A class derived from a record is declared with ``@record`` too (the
dataclass machinery refuses a ``frozen=True`` child of it).
"""

from __future__ import annotations

import dataclasses
import reprlib
import sys
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, overload

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:  # pragma: no cover - Python 3.10
    from typing_extensions import dataclass_transform

C = TypeVar("C", bound=type)


@overload
@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: C, /) -> C: ...


@overload
def record(*, kw_only: bool = False) -> Callable[[C], C]: ...


def record(cls: C | None = None, /, *, kw_only: bool = False) -> C | Callable[[C], C]:
    """``@record`` or ``@record(kw_only=True)`` on a class, as ``@dataclass(frozen=True)``."""
    def build(cls: C) -> C:
        dataclasses.dataclass(cls, init=True, repr=False, eq=False, frozen=False, kw_only=kw_only)  # adds __init__
        fields = dataclasses.fields(cls)
        shape: Any = cls
        shape.__record_shown__ = tuple(f.name for f in fields if f.repr)
        # attrgetter reads the fields in C: records are cache and dict keys, hashed on every lookup.
        shape.__record_compared__ = _getter(tuple(f.name for f in fields if f.compare))
        shape.__record_hashed__ = _getter(tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash)))
        for name, function in _SHARED.items():
            if name not in cls.__dict__:  # a method the class writes itself wins, as with dataclass
                setattr(cls, name, function)
        return cls

    return build if cls is None else build(cls)


def _setattr(self: Any, name: str, value: object) -> None:
    # The compiled __init__ assigns each field once, through here; after that, nothing can.
    if name in self.__dict__ or name not in self.__dataclass_fields__:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)


def _delattr(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


@reprlib.recursive_repr()
def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__record_shown__)
    return f"{type(self).__qualname__}({shown})"


def _eq(self: Any, other: object) -> object:  # bool, or NotImplemented for another class
    values: Callable[[object], tuple[object, ...]] = self.__record_compared__
    if other.__class__ is not self.__class__:
        return NotImplemented
    return values(self) == values(other)


def _hash(self: Any) -> int:
    return hash(self.__record_hashed__(self))


def _getter(names: tuple[str, ...]) -> Callable[[object], tuple[object, ...]]:
    """The values of ``names`` as a tuple (``attrgetter`` gives a bare value for one name)."""
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda item: (one(item),)
    if not names:
        return lambda item: ()
    return attrgetter(*names)


_SHARED: dict[str, Callable[..., Any]] = {
    "__setattr__": _setattr, "__delattr__": _delattr, "__repr__": _repr, "__eq__": _eq, "__hash__": _hash,
}
