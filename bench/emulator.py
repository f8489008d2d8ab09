"""The local E2B emulator in a process of its own, with latency added to sandbox creation only.

    python -m bench.emulator --create-latency-ms 150

(The emulator's own CLI adds latency to every call; the provisioning benchmark wants E2B's
published start time on ``create`` alone.) Prints ``… listening on http://127.0.0.1:PORT``
and serves until SIGTERM, then kills every sandbox it holds.
"""

from __future__ import annotations

import argparse
import sys

from pools.e2b_emulator.server import BANNER, EmulatorServer
from pools.e2b_emulator.state import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator", description=BANNER)
    parser.add_argument("--create-latency-ms", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args(argv)
    latency = {"create": options.create_latency_ms} if options.create_latency_ms else {}
    server = EmulatorServer(Emulator(latency_by_endpoint=latency), port=options.port)
    sys.stdout.write(f"{BANNER}\nE2B emulator listening on {server.url}\n")
    sys.stdout.flush()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
