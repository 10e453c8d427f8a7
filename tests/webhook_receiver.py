"""A webhook receiver on 127.0.0.1 for the monitoring tests (unit and API): it records every POST and answers
500 to the first `failures` of them, 204 after."""

from __future__ import annotations

import threading
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """`received` holds (headers, body) per POST; headers are looked up case-insensitively, as HTTP's are."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[Message, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((self.headers, body))
                self.send_response(500 if len(outer.received) <= outer.failures else 204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
