"""Serving the emulator with uvicorn: in a background thread (tests) or in the foreground (CLI).

``python -m pools.e2b_emulator --help`` and ``manage.py e2b_emulator`` share the flags
defined in :func:`add_arguments`.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

import uvicorn

from .app import EmulatorApp
from .state import Emulator

BANNER = (
    "Local E2B emulator, for development and tests only. This is NOT E2B: sandboxes are "
    "local processes in temp folders on this machine, each with its own PID namespace and "
    "/tmp where the host allows it, not VMs."
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host == "localhost" else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


class _UvicornServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, emulator: Emulator) -> None:
        super().__init__(config)
        self.emulator = emulator

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal once it has shut down, so SIGTERM's default action
        # would end us with status 143 after a clean stop; a clean stop should exit 0.
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Kill the sandboxes first: that ends their open command streams, which uvicorn
        # would otherwise wait for before it runs the lifespan shutdown.
        await self.emulator.aclose()
        await super().shutdown(sockets)


class EmulatorServer:
    """The emulator bound to a loopback port. ``port=0`` picks a free one.

    Use :meth:`start`/:meth:`stop` (or ``with``) for a background thread, or
    :meth:`serve_forever` to block until Ctrl-C/SIGTERM. Either way, stopping kills every
    sandbox process group and removes every temp directory.
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        log_level: str = "warning",
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"refusing to listen on non-loopback host {host!r}: it runs arbitrary commands "
                "for anyone who can reach it (--allow-remote / allow_remote=True overrides)"
            )
        self.emulator = emulator or Emulator()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio turns Nagle's algorithm off (TCP_NODELAY) only for
        # sockets whose proto says TCP; with proto 0 every kept-alive response waits ~40 ms.
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        # Listen now so clients that connect before uvicorn's loop runs just queue up.
        self._socket.listen(128)
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            EmulatorApp(self.emulator),
            http="h11",
            ws="none",
            loop="asyncio",
            lifespan="on",
            log_level=log_level,
            access_log=False,
            timeout_graceful_shutdown=3,
        )
        self._server = _UvicornServer(config, self.emulator)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return _url(self.host, self.port)

    def start(self, timeout: float = 10) -> EmulatorServer:
        """Serve from a daemon thread; returns once requests are being accepted."""
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="e2b-emulator",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the E2B emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 15) -> None:
        """Stop serving and clean up (kills sandboxes, removes temp dirs)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._socket.close()
        self.emulator.close_sync()

    def serve_forever(self) -> None:
        """Serve in this thread until SIGINT/SIGTERM/SIGHUP, then clean up."""
        # SIGHUP (the terminal closed) would otherwise end the process at once and leave
        # every sandbox running: stop as for SIGTERM. uvicorn handles only INT and TERM.
        if threading.current_thread() is threading.main_thread():
            signal.signal(
                signal.SIGHUP, lambda _sig, frame: self._server.handle_exit(signal.SIGTERM, frame)
            )
        try:
            self._server.run(sockets=[self._socket])
        except KeyboardInterrupt:
            pass  # a second Ctrl-C while stopping; the cleanup below still runs
        finally:
            self._socket.close()
            self.emulator.close_sync()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- command line --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=3000, help="port (0 picks a free one)")
    parser.add_argument(
        "--api-key",
        dest="api_keys",
        action="append",
        default=[],
        help="accepted X-API-Key (repeatable; default: any non-empty key)",
    )
    parser.add_argument("--max-running", type=int, default=None, help="concurrent sandbox limit")
    parser.add_argument(
        "--no-retry-429",
        action="store_true",
        help="send Should-Retry: false with the concurrency 429 (SDKs then fail at once)",
    )
    parser.add_argument("--latency-ms", type=float, default=0, help="latency added to every call")
    parser.add_argument(
        "--template",
        dest="templates",
        action="append",
        default=[],
        metavar="ID:VCPU:MEMORY_MB[:donmai]",
        help="extra template (repeatable)",
    )
    parser.add_argument(
        "--max-timeout", type=int, default=24 * 3600, help="maximum sandbox timeout in seconds"
    )
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow binding a non-loopback address"
    )


def run_from_options(options: Mapping[str, Any], out: Any = None) -> int:
    """Start a foreground server from parsed options; returns a process exit code."""
    out = out or sys.stdout
    try:
        emulator = Emulator(
            api_keys=options["api_keys"],
            max_running=options["max_running"],
            max_running_should_retry=False if options["no_retry_429"] else None,
            latency_ms=options["latency_ms"],
            templates=options["templates"],
            max_timeout_s=options["max_timeout"],
        )
        server = EmulatorServer(
            emulator,
            host=options["host"],
            port=options["port"],
            allow_remote=options["allow_remote"],
        )
    except (ValueError, OSError) as exc:
        print(f"e2b emulator: {exc}", file=sys.stderr)
        return 2
    # Exactly one line carries the URL, so scripts can grep it.
    out.write(f"{BANNER}\n")
    out.write(f"E2B emulator listening on {server.url}\n")
    out.write(
        "Point clients at it with E2B_API_URL and E2B_SANDBOX_URL set to that address "
        "(any E2B_API_KEY unless --api-key is given). Ctrl-C stops it.\n"
    )
    out.flush()
    server.serve_forever()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pools.e2b_emulator", description=BANNER)
    add_arguments(parser)
    return run_from_options(vars(parser.parse_args(argv)))
