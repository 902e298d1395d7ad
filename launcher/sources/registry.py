"""The source registry: every backend's type name and the facts each run needs without importing it.

A leaf: it imports nothing of the launcher, so the model (which asks which source
names are built in, and which variables are scrubbed by default) and every layer
above it can read it. Adding a backend is one line here plus its own module
(docs/architecture.md, "Adding a backend"); what the backend declares about
itself (its settings, reference rules, SDK) is read from that module only when a
manifest uses its type (``launcher.sources.catalog``).
"""

from __future__ import annotations


class Entry:
    """A registry line: the backend's module, and what every run must know without importing it."""

    __slots__ = ("builtin", "module", "scrub")

    def __init__(self, module: str, *, builtin: bool = False, scrub: tuple[str, ...] = ()) -> None:
        self.module = module  # declares ``BACKEND``; imported only when a manifest uses the type
        self.builtin = builtin  # `TYPE://...` works without a declaration, configured from the environment
        self.scrub = scrub  # the backend's own credentials: never passed to the child

    def __repr__(self) -> str:
        return f"Entry({self.module!r}, builtin={self.builtin}, scrub={self.scrub!r})"


# type -> its entry. One line per backend. A plain class rather than a dataclass, and
# facts rather than an import: a run that reads only files never imports the others.
# Built-ins: `vault://` from the VAULT_* (or BAO_*) variables as the CLI reads them,
# `azure://VAULT-NAME/SECRET` for https://VAULT-NAME.vault.azure.net, `aws://NAME` and
# `ssm:///NAME` from the AWS_* variables. AWS variables are not scrubbed: the application
# usually runs as the same identity (list them in `scrub` if not). `gcp://` from Application
# Default Credentials, whose key file variable is scrubbed (it names a credential file).
REGISTRY = {
    "file": Entry("launcher.sources.file"),
    "vault": Entry("launcher.sources.vault", builtin=True, scrub=("VAULT_TOKEN", "BAO_TOKEN", "VAULT_SECRET_ID")),
    "azure": Entry("launcher.sources.azure", builtin=True, scrub=("AZURE_CLIENT_SECRET",)),
    "aws": Entry("launcher.sources.aws", builtin=True),
    "ssm": Entry("launcher.sources.ssm", builtin=True),
    "gcp": Entry("launcher.sources.gcp", builtin=True, scrub=("GOOGLE_APPLICATION_CREDENTIALS",)),
}


def types() -> tuple[str, ...]:
    """Every known ``type``, sorted (for messages)."""
    return tuple(sorted(REGISTRY))


def builtins() -> frozenset[str]:
    """The source names that work without a declaration."""
    return frozenset(kind for kind, entry in REGISTRY.items() if entry.builtin)


def default_scrub() -> tuple[str, ...]:
    """Every backend's own credentials: never passed to the child unless in ``passthrough``."""
    names: list[str] = []
    for entry in REGISTRY.values():
        names += [n for n in entry.scrub if n not in names]
    return tuple(names)
