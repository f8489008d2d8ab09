"""A real HTTP receiver on a free loopback port, for webhook tests and benchmarks.

It records every request (headers and body) and answers with what ``behaviour`` says:
a status code, or ``"hang"`` (sleep past the sender's timeout, then 200).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from events.signing import HEADER, verify


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)  # when it arrived

    @property
    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    def signed_by(self, secret: str) -> bool:
        """Verified as the receiver would have on arrival (the timestamp's tolerance)."""
        return verify(self.headers.get(HEADER, ""), self.body, secret, int(self.at))


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    behaviour: Callable[[int], int | str] = lambda n: 200
    hang_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.json for r in self.received]


@contextmanager
def receiver(
    behaviour: Callable[[int], int | str] | None = None, hang: float = 12.0
) -> Iterator[Receiver]:
    state = Receiver(url="")
    if behaviour is not None:
        state.behaviour = behaviour
    state.hang_seconds = hang

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with state.lock:
                state.received.append(Received(dict(self.headers.items()), body))
                n = len(state.received)
            answer = state.behaviour(n)
            if answer == "hang":
                time.sleep(state.hang_seconds)
                answer = 200
            assert isinstance(answer, int)
            payload = b'{"ok": true}' if answer < 300 else b"nope"
            self.send_response(answer)
            if 300 <= answer < 400:
                self.send_header("Location", "http://127.0.0.1:1/elsewhere")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
