"""The local E2B emulator for an org of thousands of idle sandboxes (B5, the reconciler).

    python -m bench.b5_emulator

Sandboxes here are records only: no namespace init process each (nothing ever runs in
them), and metrics samples once an hour instead of E2B's every 5 s (a sample of each of
5,000 sandboxes walks ``/proc`` 5,000 times, CPU the listing under measurement would share).
Listing, creating and killing are the emulator's own, over HTTP as E2B serves them. Prints
``… listening on http://127.0.0.1:PORT`` and serves until SIGTERM, like bench/emulator.py.
"""

from __future__ import annotations

import argparse
import sys

from pools.e2b_emulator import isolation
from pools.e2b_emulator.server import BANNER, EmulatorServer
from pools.e2b_emulator.state import Emulator

METRICS_INTERVAL_S = 3600.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.b5_emulator", description=BANNER)
    parser.add_argument("--create-latency-ms", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args(argv)
    isolation.disable_for_tests()  # plain records: no init process per sandbox
    latency = {"create": options.create_latency_ms} if options.create_latency_ms else {}
    emulator = Emulator(latency_by_endpoint=latency, metrics_interval_s=METRICS_INTERVAL_S)
    server = EmulatorServer(emulator, port=options.port)
    sys.stdout.write(f"{BANNER}\nE2B emulator listening on {server.url}\n")
    sys.stdout.flush()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
