"""``record`` behaves as ``@dataclass(frozen=True)`` for everything the package relies on."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from launcher.model.config import Binding, SourceConfig
from launcher.model.refs import Reference
from launcher.record import record
from launcher.sources.file import FileSourceConfig


@record
class Point:
    """Two coordinates and a label that takes no part in comparisons."""

    x: int
    y: int = 0
    label: str = dataclasses.field(default="", compare=False)
    secret: str = dataclasses.field(default="", repr=False)
    tags: tuple[str, ...] = dataclasses.field(default_factory=tuple)


@record(kw_only=True)
class Named:
    """Keyword-only fields."""

    name: str


@record
class Shown:
    """A class's own repr wins over the shared one."""

    value: str

    def __repr__(self) -> str:
        return "Shown(...)"


@record
class Point3(Point):
    """A record derived from a record."""

    z: int = 0


def test_fields_defaults_and_factories_are_those_of_a_dataclass() -> None:
    p = Point(1)
    assert (p.x, p.y, p.label, p.secret, p.tags) == (1, 0, "", "", ())
    assert [f.name for f in dataclasses.fields(p)] == ["x", "y", "label", "secret", "tags"]
    assert dataclasses.is_dataclass(p)
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, unknown=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Named("positional")  # type: ignore[misc]
    assert Named(name="n").name == "n"


def test_equal_fields_compare_equal_and_hash_alike() -> None:
    assert Point(1, 2, label="a") == Point(1, 2, label="b")  # label has compare=False
    assert hash(Point(1, 2, label="a")) == hash(Point(1, 2, label="b"))
    assert Point(1, 2) != Point(1, 3)
    assert Point(1, 2) != Point3(1, 2)  # another class is never equal, as with dataclass
    assert Point(1, 2) != (1, 2)
    assert len({Point(1), Point(1), Point(2)}) == 2


def test_a_record_is_frozen() -> None:
    p = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.other = 2  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.x  # type: ignore[misc]
    assert p.x == 1


def test_repr_hides_repr_false_fields_and_a_class_repr_wins() -> None:
    p = Point(1, 2, label="l", secret="s3cr3t-value")
    assert repr(p) == "Point(x=1, y=2, label='l', tags=())"
    assert "s3cr3t-value" not in repr(p)
    assert repr(Shown("v")) == "Shown(...)"
    binding = Binding(name="DB", parts=(), default="hunter2-default")
    assert "hunter2-default" not in repr(binding)


def test_replace_copy_and_pickle_keep_values_and_frozenness() -> None:
    p = Point3(1, 2, tags=("a",), z=3)
    q = dataclasses.replace(p, y=5)
    assert (q.x, q.y, q.tags, q.z) == (1, 5, ("a",), 3)
    assert copy.deepcopy(p) == p
    assert pickle.loads(pickle.dumps(p)) == p
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.copy(p).z = 4  # type: ignore[misc]


def test_the_package_records_behave_alike() -> None:
    config = FileSourceConfig(name="f", path="secrets.yaml")
    assert isinstance(config, SourceConfig)
    assert dataclasses.replace(config, path="other.yaml").path == "other.yaml"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.path = "x"  # type: ignore[misc]
    ref = Reference(source="f", path="db/password")
    assert {ref: 1}[Reference(source="f", path="db/password")] == 1
