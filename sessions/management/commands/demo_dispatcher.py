"""``manage.py demo_dispatcher``: play Rensei's dispatcher against the JSON API, so the demo
dashboard moves while someone watches.

It talks to the server only through ``/api/v1/`` with an org API token, like the real
dispatcher: it creates sessions for the demo issues (the expensive ones more often), runs
``which donmai`` in each one that starts, pauses some, resumes some and terminates the ones
that have run for a while, printing what it does. It stops after ``--duration`` seconds (or
on Ctrl-C) and exits non-zero if the API answered with errors. A 409 is not an error: the
session moved on between our look and our request, which a dispatcher must expect.

Loopback only: this is a demo tool, never pointed at someone else's server.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from rensei.demo import DEMO_ORG_SLUG, DISPATCHER_MAX_LIVE, ISSUES, LOOPBACK_HOSTS, MAIN_CAP
from rensei.models import ApiToken, Channel, Organization
from rensei.tokens import create_token, revoke

LIVE = ("queued", "provisioning", "running", "pausing", "paused", "resuming", "terminating")
COMMAND = "which donmai"
KINDS = (
    (["npm"], ["git"]),
    (["python-pip"], ["git", "long-running"]),
    (["http"], ["git", "network-egress"]),
)


class ApiFailure(Exception):
    """The API answered an error (or did not answer); counted, and the loop goes on."""


@dataclass
class Seen:
    """What we know about one session between ticks."""

    state: str
    issue: str
    since: int  # the tick it entered this state (as far as we saw)
    lifetime: int  # ticks it may stay running before we terminate it
    ours: bool = False
    exec_sent: bool = False


@dataclass
class Tally:
    created: int = 0
    paused: int = 0
    resumed: int = 0
    terminated: int = 0
    commands: int = 0
    conflicts: int = 0
    errors: int = 0
    ended: dict[str, int] = field(default_factory=dict)


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
        player = Player(client, self, random.Random(options["seed"]), options["max_live"])
        try:
            player.check()
            self._loop(player, 60.0 / options["rate"], options["duration"])
        except KeyboardInterrupt:
            self.say("Ctrl-C: stopping.")
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
        token, plaintext = create_token(org, "demo dispatcher (this run)", None, Channel.CLI)
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


def loopback_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or (parts.hostname or "") not in LOOPBACK_HOSTS:
        raise CommandError(
            f"--url must be an http(s) URL on this machine (127.0.0.1 or localhost), not {url!r}."
        )
    return url


class Player:
    """One dispatcher's rounds. Keeps per-session notes between rounds, nothing else."""

    def __init__(
        self, client: httpx.Client, command: Command, rng: random.Random, max_live: int
    ) -> None:
        self.client = client
        self.command = command
        self.rng = rng
        self.max_live = max_live
        self.seen: dict[int, Seen] = {}
        self.runs: dict[str, int] = {}  # exec run URL → session id, until it finishes
        self.tally = Tally()
        self.tick = 0
        keys = [issue.key for issue in ISSUES]
        self.issue_titles = {issue.key: issue.title for issue in ISSUES}
        self.issue_keys = keys
        self.issue_weights = [issue.hours for issue in ISSUES]

    # -- HTTP ------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> dict[str, Any]:
        """The JSON answer; a 409 becomes ``{"conflict": ...}``; other errors raise."""
        try:
            response = self.client.request(method, path, json=body, headers=headers or None)
        except httpx.HTTPError as exc:
            raise ApiFailure(f"{method} {path}: no answer ({exc})") from None
        if response.status_code == 409:
            return {"conflict": _message(response)}
        if response.status_code >= 400:
            raise ApiFailure(f"{method} {path}: {response.status_code} {_message(response)}")
        data: dict[str, Any] = response.json()
        return data

    def check(self) -> None:
        try:
            self.call("GET", "/sessions?limit=1")
        except ApiFailure as exc:
            raise CommandError(
                f"The API did not accept us: {exc}. Is the server up (make run) and the token "
                "one of this org's live tokens?"
            ) from None

    # -- one round -------------------------------------------------------------------------

    def round(self, tick: int) -> None:
        self.tick = tick
        try:
            sessions = self.live_sessions()
        except ApiFailure as exc:
            self.error(exc)
            return
        self.notice_changes(sessions)
        steps = (
            self.finish_runs,
            self.exec_new,
            self.create,
            self.terminate,
            self.pause,
            self.resume,
        )
        for step in steps:
            try:
                step(sessions)
            except ApiFailure as exc:
                self.error(exc)

    def live_sessions(self) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        for state in LIVE:
            for item in self.call("GET", f"/sessions?state={state}&limit=100")["results"]:
                found[item["id"]] = item
        return found

    def notice_changes(self, sessions: dict[int, dict[str, Any]]) -> None:
        for sid, item in sessions.items():
            note = self.seen.get(sid)
            issue = (item.get("issue") or {}).get("key") or "unattributed"
            if note is None:
                self.seen[sid] = Seen(item["state"], issue, self.tick, self._lifetime())
                continue
            if note.state != item["state"]:
                self.say(sid, f"{note.state} → {item['state']}" + _detail(item))
                note.state, note.since = item["state"], self.tick
        # No longer live: ask how it ended.
        for sid in [sid for sid in self.seen if sid not in sessions]:
            note = self.seen.pop(sid)
            item = self.call("GET", f"/sessions/{sid}")
            if item["state"] in LIVE:  # moved between our list calls; look again next round
                self.seen[sid] = note
                continue
            self.tally.ended[item["state"]] = self.tally.ended.get(item["state"], 0) + 1
            self.say(sid, f"{note.state} → {item['state']}" + _detail(item), issue=note.issue)

    def finish_runs(self, sessions: dict[int, dict[str, Any]]) -> None:
        for url, sid in list(self.runs.items()):
            run = self.call("GET", url)
            if run["state"] not in ("done", "error"):
                continue
            del self.runs[url]
            if run["state"] == "done":
                out = (run["stdout"] or run["stderr"]).strip().splitlines()
                self.say(sid, f"`{COMMAND}` → exit {run['exit_code']}: {out[-1] if out else ''}")
            else:
                self.say(sid, f"`{COMMAND}` did not run: {run['error']}")

    def exec_new(self, sessions: dict[int, dict[str, Any]]) -> None:
        for sid, item in sessions.items():
            note = self.seen[sid]
            if item["state"] != "running" or note.exec_sent:
                continue
            note.exec_sent = True
            run = self.call("POST", f"/sessions/{sid}/exec", {"command": COMMAND, "timeout": 60})
            if "conflict" in run:
                self.tally.conflicts += 1
                continue
            self.tally.commands += 1
            self.runs[f"/sessions/{sid}/exec/{run['id']}"] = sid

    def create(self, sessions: dict[int, dict[str, Any]]) -> None:
        if len(sessions) >= self.max_live:
            return
        key = self.rng.choices(self.issue_keys, weights=self.issue_weights)[0]
        runtime, requirement = self.rng.choice(KINDS)
        body = {
            "issue": {"key": key, "title": self.issue_titles[key]},
            "runtime_kinds": runtime,
            "requirement_kinds": requirement,
            "env": {"DONMAI_ISSUE": key},
        }
        item = self.call(
            "POST", "/sessions", body, **{"Idempotency-Key": f"demo-dispatcher-{uuid.uuid4()}"}
        )
        self.tally.created += 1
        sid = item["id"]
        self.seen[sid] = Seen(item["state"], key, self.tick, self._lifetime(), ours=True)
        where = f" on {item['pool']}" if item.get("pool") else ""
        waiting = (item.get("routing") or {}).get("waiting_for")
        if waiting:
            where += f", waiting for a slot in {', '.join(waiting)}"
        self.say(sid, f"created ({item['state']}{where})", issue=key)

    def terminate(self, sessions: dict[int, dict[str, Any]]) -> None:
        """The oldest session that has run (or sat paused) past its lifetime."""
        due = [
            sid
            for sid, item in sessions.items()
            if item["state"] in ("running", "paused")
            and self.tick - self.seen[sid].since >= self.seen[sid].lifetime
        ]
        if due:
            self.act(sessions, min(due), "terminate")

    def pause(self, sessions: dict[int, dict[str, Any]]) -> None:
        self.maybe(sessions, "running", "pause", chance=0.3)

    def resume(self, sessions: dict[int, dict[str, Any]]) -> None:
        self.maybe(sessions, "paused", "resume", chance=0.5)

    def maybe(
        self, sessions: dict[int, dict[str, Any]], state: str, action: str, chance: float
    ) -> None:
        """Now and then, ``action`` on a random session that has been ``state`` a round."""
        settled = [
            sid
            for sid, item in sessions.items()
            if item["state"] == state and self.tick > self.seen[sid].since
        ]
        if settled and self.rng.random() < chance:
            self.act(sessions, self.rng.choice(settled), action)

    def act(self, sessions: dict[int, dict[str, Any]], sid: int, action: str) -> None:
        answer = self.call("POST", f"/sessions/{sid}/{action}")
        if "conflict" in answer or not answer.get("accepted"):
            self.tally.conflicts += 1
            self.say(sid, f"{action}: not now ({answer.get('conflict') or answer.get('state')})")
            return
        # What the server says now, so the rest of this round leaves the session alone.
        sessions[sid] = {**sessions[sid], "state": answer.get("state") or action}
        counter = {"pause": "paused", "resume": "resumed", "terminate": "terminated"}[action]
        setattr(self.tally, counter, getattr(self.tally, counter) + 1)
        self.say(sid, f"{action} requested")

    # -- output ----------------------------------------------------------------------------

    def _lifetime(self) -> int:
        return self.rng.randint(3, 8)

    def say(self, sid: int, message: str, issue: str = "") -> None:
        note = self.seen.get(sid)
        label = issue or (note.issue if note else "")
        self.command.say(f"session #{sid} {label}: {message}")

    def error(self, exc: Exception) -> None:
        self.tally.errors += 1
        self.command.say(f"API ERROR {exc}")


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error") or response.reason_phrase)
    except ValueError:
        return response.reason_phrase


def _detail(item: dict[str, Any]) -> str:
    if item["state"] == "running" and item.get("sandbox_id"):
        return f" (sandbox {item['sandbox_id']} on {item.get('pool')})"
    if item["state"] in ("failed", "lost") and item.get("last_error"):
        return f": {item['last_error'][:200]}"
    return ""
