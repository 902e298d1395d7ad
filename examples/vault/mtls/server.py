"""A TLS server that requires client certificates and reloads its own on SIGHUP.

Usage: server.py PORT. Reads $TLS_CERT, $TLS_KEY and $TLS_CA (paths of files the
launcher writes). Each connection is answered with the serial number of the certificate
the server presented, then closed. On SIGHUP a new SSLContext is built from the files
and swapped in; connections already in their handshake finish with the old one.
Prints one line per (re)load: "loaded SERIAL valid until NOT_AFTER".
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import sys
import threading
from datetime import timezone

from cryptography import x509


def serial_of(cert: x509.Certificate) -> str:
    number = cert.serial_number
    return ":".join(f"{b:02x}" for b in number.to_bytes((number.bit_length() + 7) // 8, "big"))


def load() -> tuple[ssl.SSLContext, bytes]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.environ["TLS_CERT"], os.environ["TLS_KEY"])  # refuses a key of another certificate
    context.load_verify_locations(os.environ["TLS_CA"])
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: the client shows a certificate of the same CA
    with open(os.environ["TLS_CERT"], "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    serial = serial_of(cert)
    until = cert.not_valid_after_utc.astimezone(timezone.utc).strftime("%H:%M:%S")
    print(f"loaded {serial} valid until {until}", flush=True)
    return context, serial.encode()


current = load()


def reload(signum: int, frame: object) -> None:
    global current
    try:
        current = load()  # one assignment: a connection takes the old pair or the new one, never half
    except (OSError, ssl.SSLError) as exc:
        print(f"reload failed, keeping the current certificate: {exc}", flush=True)


def answer(conn: socket.socket) -> None:
    context, serial = current
    try:
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(serial + b"\n")
    except (OSError, ssl.SSLError) as exc:
        print(f"handshake failed: {exc}", flush=True)


signal.signal(signal.SIGHUP, reload)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
with socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=64) as listener:
    print(f"listening on {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        conn.settimeout(10)
        threading.Thread(target=answer, args=(conn,), daemon=True).start()
