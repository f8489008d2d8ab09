"""The demo dispatcher's rounds, as a client of the JSON API (``manage.py demo_dispatcher``
runs them): each round creates a session for a demo issue now and then (the expensive ones
more often), runs ``which donmai`` in each one that starts, pauses some, resumes some and
terminates the ones that have run for a while.

It knows the server only through ``/api/v1/`` with an org API token, like the real
dispatcher. A 409 is not an error: the session moved on between our look and our request,
which a dispatcher must expect; other errors are counted and the rounds go on.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from rensei.demo import ISSUES

LIVE = ("queued", "provisioning", "running", "pausing", "paused", "resuming", "terminating")
COMMAND = "which donmai"
KINDS = (
    (["npm"], ["git"]),
    (["python-pip"], ["git", "long-running"]),
    (["http"], ["git", "network-egress"]),
)


class NotAccepted(Exception):
    """The API refused the dispatcher's first look (server down, token not valid)."""


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


class Player:
    """One dispatcher's rounds. Keeps per-session notes between rounds, nothing else."""

    def __init__(
        self, client: httpx.Client, say: Callable[[str], None], rng: random.Random, max_live: int
    ) -> None:
        self.client = client
        self.out = say  # one line for the person watching
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
            raise NotAccepted(
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
        self.out(f"session #{sid} {label}: {message}")

    def error(self, exc: Exception) -> None:
        self.tally.errors += 1
        self.out(f"API ERROR {exc}")


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
