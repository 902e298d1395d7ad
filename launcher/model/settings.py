"""``setting``: one declaration per manifest setting, read by the manifest reader and nothing else.

Every field that the manifest can set is a dataclass field made with ``setting``.
Its metadata says how its YAML value is read (the ``kind``) and the rules it obeys;
the manifest reader (``launcher.manifest.reader``) reads sections and sources from
these declarations, so an allowed key can never drift from its field, and
``--help``-style text and the manifest's JSON Schema come from the same place.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Literal, get_args

# How a setting's YAML value is read:
#   text      a string (numbers keep their source text); ``check=`` a function that raises
#             ValueError with the message for a value it refuses (``pattern=`` says the same
#             to the JSON Schema); ``nullable`` allows null (None)
#   path      a file path, relative to the manifest's directory (null: None when the default is None)
#   url       a string that must start with ``scheme=``://
#   bool      true/false (yes/no, on/off, 1/0)
#   duration  500ms, 30s, 5m, 1h30m, or seconds (``positive``: more than 0)
#   integer   a whole number (``minimum=``)
#   number    a finite number (``minimum=``)
#   choice    one of ``choices=`` (a closed vocabulary)
#   signal    a signal name (SIGHUP, HUP) or number
#   names     a list of variable names (``extends``: added to the field's default, never replacing it)
#   section   a nested settings dataclass ``cls=``
#   variant   a nested settings dataclass ``cls=`` whose allowed keys depend on its ``tag`` field:
#             ``variants=`` tag value -> its own keys; ``needs=`` tag value -> ((key, hint), ...) of
#             required keys; ``exclusive=`` pairs of keys that may not both be given
Kind = Literal["text", "path", "url", "bool", "duration", "integer", "number", "choice", "signal", "names", "section",
               "variant"]
KINDS: tuple[Kind, ...] = get_args(Kind)


def setting(default: Any = None, kind: Kind = "text", *, help: str = "", factory: Any = None, repr: bool = True,
            **rules: Any) -> Any:
    """A dataclass field the manifest reader reads by itself; see the kinds above.

    Other rules: ``required`` (with ``missing=`` a hint for the message). ``help``
    documents the setting: meaning, default, environment fallback.
    """
    metadata = {"kind": kind, "help": help, **rules}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata, repr=repr)
    return field(default=default, metadata=metadata, repr=repr)
