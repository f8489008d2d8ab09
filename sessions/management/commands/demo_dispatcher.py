"""``manage.py demo_dispatcher``: play Rensei's dispatcher against the JSON API, so the demo
dashboard moves while someone watches (the rounds themselves: ``sessions.demo_dispatcher``).

It talks to the server only through ``/api/v1/`` with an org API token, like the real
dispatcher: it creates sessions for the demo issues (the expensive ones more often), runs
``which donmai`` in each one that starts, pauses some, resumes some and terminates the ones
that have run for a while, printing what it does. It stops after ``--duration`` seconds, or
on Ctrl-C, SIGINT or SIGTERM (also when started in the background, where a shell leaves
SIGINT ignored), revoking the token it made for the run, and exits non-zero if the API
answered with errors. A 409 is not an error: the session moved on between our look and our
request, which a dispatcher must expect.

Loopback only: this is a demo tool, never pointed at someone else's server.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from rensei.demo import DEMO_ORG_SLUG, DISPATCHER_MAX_LIVE, LOOPBACK_HOSTS, MAIN_CAP
from rensei.models import ApiToken, Channel, Organization
from rensei.tokens import SCOPES, create_token, revoke
from sessions.demo_dispatcher import NotAccepted, Player


class Command(BaseCommand):
    help = (
        "Play the dispatcher through the JSON API (create, exec, pause, resume, terminate "
        "sessions) so the demo dashboard moves. Loopback servers only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--rate",
            type=float,
            default=12.0,
            help="Rounds per minute; each round may create one session and act on others "
            "(default 12).",
        )
        parser.add_argument(
            "--duration",
            type=float,
            default=0,
            help="Stop after this many seconds (default: run until Ctrl-C).",
        )
        parser.add_argument(
            "--url",
            default=f"http://127.0.0.1:{os.environ.get('PORT') or 8000}",
            help="The server (default: http://127.0.0.1:$PORT, port 8000 when PORT is unset).",
        )
        parser.add_argument(
            "--token", default="", help="An org API token (default: $RENSEI_API_TOKEN)."
        )
        parser.add_argument(
            "--create-token",
            action="store_true",
            help=f"Create a token for the '{DEMO_ORG_SLUG}' org for this run, revoked when it "
            "stops (needs this server's database).",
        )
        parser.add_argument(
            "--max-live",
            type=int,
            default=DISPATCHER_MAX_LIVE,
            help="Create sessions only while fewer than this many are live (queued and "
            f"paused included; default {DISPATCHER_MAX_LIVE}: below demo-e2b's cap of "
            f"{MAIN_CAP}, so a session you start yourself runs at once).",
        )
        parser.add_argument("--seed", type=int, default=None, help="Random seed (repeatable runs).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["rate"] <= 0 or options["rate"] > 600:
            raise CommandError("--rate must be between 0 and 600 rounds per minute.")
        if options["duration"] < 0:
            raise CommandError("--duration must be 0 (until Ctrl-C) or a number of seconds.")
        if options["max_live"] < 1:
            raise CommandError("--max-live must be at least 1.")
        url = loopback_url(options["url"])
        token = options["token"] or os.environ.get("RENSEI_API_TOKEN", "")
        made: ApiToken | None = None
        if options["create_token"]:
            made, token = self._create_token()
        if not token:
            raise CommandError(
                "No API token. Pass --token (or set RENSEI_API_TOKEN), or --create-token to "
                f"make one for the '{DEMO_ORG_SLUG}' org (seed_demo printed one on its first run)."
            )
        client = httpx.Client(
            base_url=url.rstrip("/") + "/api/v1",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=15.0,
            trust_env=False,  # loopback: never through a proxy from the environment
        )
        player = Player(client, self.say, random.Random(options["seed"]), options["max_live"])
        try:
            with stopping_on_signals():
                player.check()
                self._loop(player, 60.0 / options["rate"], options["duration"])
        except NotAccepted as exc:
            raise CommandError(str(exc)) from None
        except KeyboardInterrupt:
            self.say("Stopping (Ctrl-C or a signal).")
        finally:
            client.close()
            if made is not None:  # a token made for this run does not outlive it
                revoke(made, actor=None, channel=Channel.CLI)
                self.say(f"Revoked API token {made.prefix}… (made for this run).")
        tally = player.tally
        ended = ", ".join(f"{n} {state}" for state, n in sorted(tally.ended.items())) or "none"
        self.say(
            f"Done: created {tally.created}, paused {tally.paused}, resumed {tally.resumed}, "
            f"terminated {tally.terminated}, ran {tally.commands} commands; sessions ended: "
            f"{ended}; {tally.conflicts} conflicts (409), {tally.errors} API errors."
        )
        if tally.errors:
            raise CommandError(f"The API answered {tally.errors} error(s); see above.")

    def _create_token(self) -> tuple[ApiToken, str]:
        org = Organization.objects.filter(slug=DEMO_ORG_SLUG).first()
        if org is None:
            raise CommandError(
                f"No '{DEMO_ORG_SLUG}' organisation in this database: run `manage.py seed_demo` "
                "(or `make run`) first, or pass --token."
            )
        # It reads, acts on and runs commands in sessions: every scope.
        token, plaintext = create_token(
            org, "demo dispatcher (this run)", None, Channel.CLI, scopes=SCOPES
        )
        self.say(f"Created API token {token.prefix}… for the '{org.slug}' org, for this run.")
        return token, plaintext

    def _loop(self, player: Player, interval: float, duration: float) -> None:
        started = time.monotonic()
        deadline = started + duration if duration else None
        self.say(
            f"Dispatching against {player.client.base_url} every {interval:.1f} s"
            + (f" for {duration:.0f} s" if duration else " until Ctrl-C")
            + "."
        )
        tick = 0
        while deadline is None or time.monotonic() < deadline:
            player.round(tick)
            tick += 1
            wake = started + tick * interval
            while (now := time.monotonic()) < wake and (deadline is None or now < deadline):
                time.sleep(min(0.2, wake - now))

    def say(self, message: str) -> None:
        self.stdout.write(f"{timezone.now():%H:%M:%S} {message}")
        self.stdout.flush()


@contextmanager
def stopping_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM stop the run as Ctrl-C does (signal handlers: main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    saved = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def loopback_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or (parts.hostname or "") not in LOOPBACK_HOSTS:
        raise CommandError(
            f"--url must be an http(s) URL on this machine (127.0.0.1 or localhost), not {url!r}."
        )
    return url
