"""What management commands that call a provider share: the ``--timeout`` option.

A command run by hand or from cron must not hang on a stalled provider: every call it makes
is bounded (``pools.providers.call_timeout``), by 30 s unless told otherwise.
"""

from __future__ import annotations

from argparse import ArgumentParser, ArgumentTypeError

DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 3600.0


def seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if not 0 < value <= MAX_TIMEOUT_S:
        raise ArgumentTypeError(f"give a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}")
    return value


def add_timeout_option(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"give up on any one provider call after this long (default {DEFAULT_TIMEOUT_S:g})",
    )
