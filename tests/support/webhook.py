"""A webhook endpoint on 127.0.0.1 for alert tests: records every POST (headers and JSON
body); can be stopped and started again on the same port (an outage)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebhookServer:
    """``received``: list of ``(headers, body)``; ``status``: the HTTP status it answers."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[tuple[dict, dict]] = []
        self.status = 200
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> "WebhookServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner._lock:
                    owner.received.append((dict(self.headers), body))
                self.send_response(owner.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def keys(self) -> list[str]:
        """Every alert key received (a summary's alerts included)."""
        with self._lock:
            bodies = [b for _, b in self.received]
        out = []
        for b in bodies:
            out += [a["key"] for a in b["alerts"]] if b["event"] == "summary" else [b["key"]]
        return out
