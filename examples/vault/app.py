"""A tiny app that shows what the launcher gave it, with values masked."""

import os

NAMES = ["DB_USER", "DB_PASSWORD", "DATABASE_URL", "API_KEY", "LEGACY_TOKEN", "APP_REGION", "APP_FEATURE_X"]


def mask(value: str) -> str:
    return value[:2] + "*" * (len(value) - 2) if len(value) > 4 else "*" * len(value)


for name in NAMES:
    value = os.environ.get(name)
    print(f"{name:13} {'(not set)' if value is None else f'{mask(value)} ({len(value)} chars)'}")
print(f"VAULT_TOKEN passed to the app: {'VAULT_TOKEN' in os.environ}")
