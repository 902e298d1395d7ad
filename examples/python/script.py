"""A plain script: read the secrets once, use them, print nothing secret.

    python examples/python/script.py

The same as ``launcher run -m examples/python/launcher.yaml -- python app.py``
reading ``os.environ``, without the wrapper process.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import launcher
except ModuleNotFoundError:  # what is missing, in one line rather than a traceback
    raise SystemExit("script.py needs the launcher package: pip install secret-launcher") from None

MANIFEST = Path(__file__).with_name("launcher.yaml")


def main() -> int:
    try:
        env = launcher.load(MANIFEST)  # every binding, all or nothing, as `launcher run` resolves them
    except launcher.LauncherError as err:
        print(f"launcher: error: {err}", file=sys.stderr)  # names file:line and the reference, never a value
        return err.exit_code  # 66 missing, 69 unavailable, 77 denied, 78 invalid: as the CLI exits
    print(env)  # Secrets(names=[...]): the repr never shows a value
    for name in env:
        print(f"{name:14} {len(env[name]):3} chars  version {env.version(name) or '-'}")

    # One reference, no manifest binding needed; a Client keeps sources and cache for repeated use.
    with launcher.Client(MANIFEST) as client:
        api_key = client.get("dev://app/api-key")
        print(f"api key: {len(api_key)} chars; rotated since read: {client.has_rotated('dev://app/api-key')}")
        print(f"cache: {client.stats()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
