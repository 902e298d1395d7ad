"""Observers of a command: the audit trail, Prometheus metrics and ``/healthz``, and the sinks
that hand each event to them (``launcher.events`` is the vocabulary).
"""
