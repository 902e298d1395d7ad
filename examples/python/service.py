"""A small HTTP service (standard library only) that follows secret rotation in-process.

    python examples/python/service.py          # then: curl localhost:8000/  (edit secrets.dev.yaml)

Instead of ``launcher run --watch -- python service.py`` restarting the process on
rotation, the service watches the secrets itself: ``handle.secrets`` always holds the
latest good values, so each request reads the current API key, and a database pool
(here a stand-in) is rebuilt when its password changes. A FastAPI app does the same:
create the client in the lifespan handler, read ``handle.secrets`` in a dependency,
and ``await client.aget(ref)`` where a one-off read is needed.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

try:
    import launcher
except ModuleNotFoundError:  # what is missing, in one line rather than a traceback
    raise SystemExit("service.py needs the launcher package: pip install secret-launcher") from None

MANIFEST = Path(__file__).with_name("launcher.yaml")
log = logging.getLogger("service")


class Pool:
    """A stand-in for a database pool built from a DSN (a real one: psycopg_pool, SQLAlchemy...)."""

    def __init__(self, dsn: str) -> None:
        self.generation = 0
        self.rebuild(dsn)

    def rebuild(self, dsn: str) -> None:
        self.generation += 1  # a real pool would connect with ``dsn`` here and close the old connections
        log.info("database pool built (generation %d)", self.generation)


class App:
    def __init__(self, client: launcher.Client) -> None:
        self.client = client
        self.handle = client.watch(on_change=self.on_change)  # the same checks as `launcher run --watch`
        self.pool = Pool(self.handle.secrets["DATABASE_URL"])
        self.lock = threading.Lock()

    def on_change(self, changed: frozenset[str], secrets: launcher.Secrets) -> None:
        """Called on the watcher's thread with the names whose values changed (never the values in logs)."""
        log.info("rotated: %s", ", ".join(sorted(changed)))
        if "DATABASE_URL" in changed:
            with self.lock:
                self.pool.rebuild(secrets["DATABASE_URL"])

    def status(self) -> dict[str, object]:
        secrets = self.handle.secrets  # always the latest good values, even during a backend outage
        return {"api_key_version": secrets.version("API_KEY"), "api_key_length": len(secrets["API_KEY"]),
                "pool_generation": self.pool.generation}


def serve(app: App, port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server calls do_<METHOD>
            body = json.dumps(app.status()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # quiet: one line per request is noise here
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    # SIGTERM (docker stop, systemd) ends serve_forever; shutdown() must come from another thread.
    signal.signal(signal.SIGTERM, lambda signum, frame: threading.Thread(target=server.shutdown).start())
    log.info("serving on http://127.0.0.1:%d/", port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        with launcher.Client(MANIFEST) as client:  # closing it stops the watch
            serve(App(client), int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
    except launcher.LauncherError as err:
        log.error("%s", err)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
