"""Secret backends: one module (or sub-package) each, behind one Protocol, found through a registry.

- ``registry``: every backend's type name and the facts a run needs without importing it;
- ``base``: what a read returns (``Secret``, ``Lease``), the ``Source`` protocol and the
  capability protocols, and ``Backend``, what a backend module declares about itself;
- ``catalog``: the backend of a type (imported on demand), the source a reference names,
  and opening a source;
- ``transport``: what every HTTP backend shares (bounded connection pools, plain-word causes);
- one module or sub-package per backend: ``file``, ``vault/``, ``azure/``, ``aws``, ``ssm``, ``gcp/``.

Nothing is imported here, so importing the registry does not drag the rest in.
See docs/architecture.md, "Adding a backend".
"""
