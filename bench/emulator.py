"""The local E2B emulator in a process of its own, with latency added to sandbox creation only.

    python -m bench.emulator --create-latency-ms 150

(The emulator's own CLI adds latency to every call; the provisioning benchmark wants E2B's
published start time on ``create`` alone.) Prints ``… listening on http://127.0.0.1:PORT``
and serves until SIGTERM, then kills every sandbox it holds.

``--records``: sandboxes are records only, with no namespace init process each (nothing runs
in them; its start-up took CPU from the processes measured and made creates wait for each
other), and metrics sampled once an hour instead of every 5 s (a sample of each of 5,000
sandboxes walks ``/proc`` 5,000 times). B3 and B5 use it; listing, creating and killing are
the emulator's own, over HTTP as E2B serves them.
"""

from __future__ import annotations

import argparse
import sys

from pools.e2b_emulator import isolation
from pools.e2b_emulator.server import BANNER, EmulatorServer
from pools.e2b_emulator.state import METRICS_INTERVAL_S, Emulator

RECORDS_METRICS_INTERVAL_S = 3600.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator", description=BANNER)
    parser.add_argument("--create-latency-ms", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--records", action="store_true", help="sandboxes as records only")
    options = parser.parse_args(argv)
    latency = {"create": options.create_latency_ms} if options.create_latency_ms else {}
    metrics_interval_s = METRICS_INTERVAL_S
    if options.records:
        isolation.disable_for_tests()  # plain records: no init process per sandbox
        metrics_interval_s = RECORDS_METRICS_INTERVAL_S
    emulator = Emulator(latency_by_endpoint=latency, metrics_interval_s=metrics_interval_s)
    server = EmulatorServer(emulator, port=options.port)
    sys.stdout.write(f"{BANNER}\nE2B emulator listening on {server.url}\n")
    sys.stdout.flush()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
