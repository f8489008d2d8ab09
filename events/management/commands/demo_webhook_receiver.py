"""``manage.py demo_webhook_receiver``: a webhook receiver for the demo that logs each event.

For development only (``make run`` starts it): it listens on loopback (a free port unless
``--port``), points the demo org's endpoint at itself, checks each POST's signature with the
endpoint's secret and prints one line per event. It answers 200 to every signed POST.
"""

from __future__ import annotations

import json
import signal
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from events import demo
from events.delivery import signing_secrets
from events.signing import HEADER, verify

PATH = "/demo-webhooks"


class Command(BaseCommand):
    help = "Receive the demo org's webhooks on loopback and log each event (development only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=0, help="0: a free port.")

    def handle(self, *args: Any, **options: Any) -> None:
        out = self.stdout
        server = ThreadingHTTPServer((options["host"], options["port"]), _handler(out.write))
        server.daemon_threads = True
        port = server.server_address[1]
        url = f"http://{options['host']}:{port}{PATH}"
        pointed = demo.point_at(url)
        close_old_connections()
        out.write(
            f"demo webhook receiver on {url} (development only): "
            + (f"{len(pointed)} demo endpoint(s) point here" if pointed else "no demo endpoint")
        )
        stop_on_sigterm()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


def stop_on_sigterm() -> None:
    """Stop on SIGTERM as on Ctrl-C: ``make run``'s supervisor stops its processes with
    SIGTERM, and by default that signal ends Python without its clean-up (the supervisor then
    reports the receiver as killed)."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _secrets() -> list[str]:
    from django.utils import timezone

    found: list[str] = []
    for endpoint in demo.demo_endpoints():
        found += signing_secrets(endpoint, timezone.now())
    close_old_connections()
    return found


def _handler(write: Any) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            header = self.headers.get(HEADER, "")
            now = int(time.time())
            signed = any(verify(header, body, secret, now) for secret in _secrets())
            try:
                event = json.loads(body)
                line = (
                    f"{event['type']} id={event['id']} session={event['session_id']} "
                    f"seq={event['sequence']}"
                )
            except (ValueError, KeyError, TypeError):
                line = "a body that is not an event"
            write(f"received {line} signature {'ok' if signed else 'INVALID'}")
            status = 200 if signed else 401
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
