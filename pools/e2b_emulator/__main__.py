"""``python -m pools.e2b_emulator``: run the emulator in the foreground."""

from __future__ import annotations

import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main())
