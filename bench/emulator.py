"""The local E2B emulator in a process of its own, with latency added to sandbox creation only.

    python -m bench.emulator --create-latency-ms 150

(The emulator's own CLI adds latency to every call; the provisioning benchmark wants E2B's
published start time on ``create`` alone.) Prints ``… listening on http://127.0.0.1:PORT``
and serves until SIGTERM, then kills every sandbox it holds.

TCP_NODELAY: asyncio switches Nagle's algorithm off only on connections accepted from a
socket whose ``proto`` is ``IPPROTO_TCP``; ``EmulatorServer`` binds a socket with proto 0,
so on a kept-alive connection every response with a body waits for the client's delayed
ACK (~40 ms on Linux), and the E2B SDK keeps its connections alive. E2B's own API has no
such delay, so the benchmark serves the emulator from a socket made with ``IPPROTO_TCP``.
"""

from __future__ import annotations

import argparse
import socket
import sys

from pools.e2b_emulator.server import BANNER, EmulatorServer
from pools.e2b_emulator.state import Emulator


def tcp_listener(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator", description=BANNER)
    parser.add_argument("--create-latency-ms", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--keep-nagle", action="store_true", help="serve from EmulatorServer's own socket"
    )
    options = parser.parse_args(argv)
    latency = {"create": options.create_latency_ms} if options.create_latency_ms else {}
    server = EmulatorServer(Emulator(latency_by_endpoint=latency), port=options.port)
    if not options.keep_nagle:
        server._socket.close()
        server._socket = tcp_listener("127.0.0.1", options.port)
        server.port = server._socket.getsockname()[1]
    sys.stdout.write(f"{BANNER}\nE2B emulator listening on {server.url}\n")
    sys.stdout.flush()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
