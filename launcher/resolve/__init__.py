"""Keeping secrets current: the resolver (dedupe, concurrency, batches), bindings, cache, retry,
failover and the watcher. Knows sources through their protocols; never imports ``launcher.run``.
"""
