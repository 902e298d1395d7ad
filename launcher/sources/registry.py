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

    __slots__ = ("builtin", "label", "module", "scrub")

    def __init__(self, module: str, *, builtin: bool = False, scrub: tuple[str, ...] = (), label: str = "") -> None:
        self.module = module  # declares ``BACKEND``; imported only when a manifest uses the type
        self.builtin = builtin  # `TYPE://...` works without a declaration, configured from the environment
        self.scrub = scrub  # the backend's own credentials: never passed to the child
        self.label = label  # what it reads, in words (`launcher --help`, `launcher init`); the type when empty

    def __repr__(self) -> str:
        return f"Entry({self.module!r}, builtin={self.builtin}, scrub={self.scrub!r}, label={self.label!r})"


# type -> its entry. One line per backend. A plain class rather than a dataclass, and
# facts rather than an import: a run that reads only files never imports the others.
# Built-ins: `vault://` from the VAULT_* (or BAO_*) variables as the CLI reads them,
# `azure://VAULT-NAME/SECRET` for https://VAULT-NAME.vault.azure.net, `aws://NAME` and
# `ssm:///NAME` from the AWS_* variables. AWS variables are not scrubbed: the application
# usually runs as the same identity (list them in `scrub` if not). `gcp://` from Application
# Default Credentials, whose key file variable is scrubbed (it names a credential file).
REGISTRY = {
    "file": Entry("launcher.sources.file", label="local files"),
    "vault": Entry("launcher.sources.vault", builtin=True, scrub=("VAULT_TOKEN", "BAO_TOKEN", "VAULT_SECRET_ID"),
                   label="Vault / OpenBao"),
    "azure": Entry("launcher.sources.azure", builtin=True, scrub=("AZURE_CLIENT_SECRET",), label="Azure Key Vault"),
    "aws": Entry("launcher.sources.aws", builtin=True, label="AWS Secrets Manager"),
    "ssm": Entry("launcher.sources.ssm", builtin=True, label="AWS SSM Parameter Store"),
    "gcp": Entry("launcher.sources.gcp", builtin=True, scrub=("GOOGLE_APPLICATION_CREDENTIALS",), label="Google Secret Manager"),
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


def label(kind: str) -> str:
    """What a backend reads, in words ("AWS Secrets Manager"); its type when its entry says nothing."""
    return REGISTRY[kind].label or kind


def described() -> str:
    """Every backend in words, for ``launcher --help``: the built-in ones first, in registry order
    ("Vault / OpenBao, Azure Key Vault, AWS Secrets Manager and local files")."""
    kinds = sorted(REGISTRY, key=lambda kind: not REGISTRY[kind].builtin)  # stable: registry order within each
    words = [label(kind) for kind in kinds]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"
