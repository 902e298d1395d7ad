"""A tiny app that prints what it received from the launcher, values masked."""

import os

NAMES = ["DB_USER", "DB_PASSWORD", "DATABASE_URL", "API_KEY", "TLS_KEY", "FEATURE_TOKEN", "LOG_LEVEL"]


def mask(value: str) -> str:
    return value[:2] + "*" * max(0, len(value) - 2) if len(value) > 4 else "*" * len(value)


for name in NAMES:
    value = os.environ.get(name)
    if value is None:
        print(f"{name:14} (not set)")
    elif name == "TLS_KEY":
        with open(value) as fh:
            print(f"{name:14} file {value} ({len(fh.read())} bytes)")
    else:
        print(f"{name:14} {mask(value)} ({len(value)} chars)")
print(f"pid {os.getpid()}, VAULT_TOKEN passed: {'VAULT_TOKEN' in os.environ}")
