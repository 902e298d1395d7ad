"""Connects to server.py in a loop for DURATION seconds, with a client certificate, and counts.

Usage: client.py PORT DURATION. Reads $TLS_CERT, $TLS_KEY, $TLS_CA (from the launcher).
Each connection is a new TLS handshake (no session reuse) that verifies the server's
certificate against the CA and the name server.internal. Prints one JSON line at the end:
{"handshakes": ok, "failed": failures, "serials": distinct server certificates seen, ...}.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import time

port, duration = int(sys.argv[1]), float(sys.argv[2])
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.load_verify_locations(os.environ["TLS_CA"])
context.load_cert_chain(os.environ["TLS_CERT"], os.environ["TLS_KEY"])
ok, failed, serials, errors = 0, 0, [], []
end = time.monotonic() + duration
while time.monotonic() < end:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="server.internal") as tls:
            serial = tls.recv(256).decode().strip()
        if not serial:
            raise ConnectionError("no answer")
        ok += 1
        if not serials or serials[-1] != serial:
            serials.append(serial)
    except (OSError, ssl.SSLError) as exc:
        failed += 1
        errors.append(f"{type(exc).__name__}: {exc}")
    time.sleep(0.05)
print(json.dumps({"handshakes": ok, "failed": failed, "serials": len(serials), "errors": errors[:5]}), flush=True)
sys.exit(1 if failed else 0)
