"""``/healthz`` (the process answers) and ``/readyz`` (recovered, holding the lease,
consuming) on ``$MATCHER_HOST:$PORT``, as Cloud Run's probes expect (the image binds
``0.0.0.0``; anything else, ``make run`` included, loopback)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(port: int, ready: threading.Event, host: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._answer(200, b'{"status":"ok"}')
            elif self.path == "/readyz":
                ok = ready.is_set()
                self._answer(200 if ok else 503, b'{"ready":%s}' % (b"true" if ok else b"false"))
            else:
                self._answer(404, b'{"error":{"code":"not_found","message":"no such path"}}')

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # probes every few seconds would drown the logs

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
