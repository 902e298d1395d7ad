"""A TLS server's reload, without the network: loads $TLS_CERT and $TLS_KEY (file paths) at start and on each SIGHUP.

argv: OUT_FILE. Records one JSON line per load: {"event": "start" | "SIGHUP", "serial": "ab:cd:..."
(as Vault writes it), "ok": true when ``ssl.SSLContext.load_cert_chain`` accepted the pair (it
refuses a key that does not belong to the certificate), "error", "pid"}. SIGTERM exits 0.
"""

import json
import os
import signal
import ssl
import sys

from cryptography import x509

out = sys.argv[1]


def serial_of(path: str) -> str:
    with open(path, "rb") as fh:
        number = x509.load_pem_x509_certificate(fh.read()).serial_number
    return ":".join(f"{b:02x}" for b in number.to_bytes((number.bit_length() + 7) // 8, "big"))


def load(event: str) -> None:
    cert, key = os.environ["TLS_CERT"], os.environ["TLS_KEY"]
    record = {"event": event, "pid": os.getpid(), "ok": True, "error": None}
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        record.update(ok=False, error=type(exc).__name__)
    record["serial"] = serial_of(cert)
    with open(out, "a") as fh:
        fh.write(json.dumps(record) + "\n")


# Taken with sigwaitinfo, one at a time, never by handlers: a SIGTERM handler could run
# inside SIGHUP's and exit before the reload is recorded (see print_signals.py).
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGHUP, signal.SIGTERM])
load("start")
while signal.sigwaitinfo([signal.SIGHUP, signal.SIGTERM]).si_signo == signal.SIGHUP:
    load("SIGHUP")
