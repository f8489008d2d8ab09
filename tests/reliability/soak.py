"""``make soak``: the ``make run`` stack under the demo dispatcher for a long while, then checks.

    python -m tests.reliability.soak --seconds 1800 --port 8700 --emulator-port 3700

It runs ``make run`` as a newcomer would, on the embedded default (SQLite and the filesystem
broker, whatever DATABASE_URL or CELERY_BROKER_URL say) in a var dir of its own, and
``manage.py demo_dispatcher --rate 60`` against it for ``--seconds``. Then:

* no process of the run exited (the supervisor stops the run and says so if one does);
* the dispatcher exited 0 (no API errors);
* every session the dispatcher created reached where its last action sent it: none is left
  provisioning, pausing, resuming or terminating, none failed or was lost, and every command
  it ran finished (sessions still queued for a free slot are counted, not failed);
* stopping the run (SIGHUP to its process group) leaves no process of it behind.

The figures go to ``artifacts/soak/soak.json`` and into the soak section of
docs/reliability.md (which ``python -m tests.reliability.report`` keeps when it rewrites the
rest of the page). Exit status 0 only if every check held. Logs: ``artifacts/soak/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "soak"
DOC = REPO / "docs" / "reliability.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
TRANSIENT = ("provisioning", "pausing", "resuming", "terminating")
SETTLE_SECONDS = 180  # after the dispatcher stops, for the last actions to finish
STOP_WITHIN = 10.0
# Lines in the run's log that mean something went wrong even if no process exited.
BAD_LOG = re.compile(
    r"Unrecoverable error|WorkerLostError|JSONDecodeError|Traceback|CRITICAL|database is locked"
)
DONE_LINE = re.compile(
    r"Done: created (\d+), paused (\d+), resumed (\d+), terminated (\d+), ran (\d+) commands; "
    r"sessions ended: (.*?); (\d+) conflicts \(409\), (\d+) API errors\."
)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def marked(marker: str) -> list[int]:
    needle = marker.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if needle in Path(f"/proc/{entry}/environ").read_bytes():
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry))
        except OSError:
            continue
    return found


def wait_http(url: str, timeout: float, run: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):  # loopback only
                return True
        except urllib.error.HTTPError as exc:
            if exc.code < 500:  # it answers: up
                return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def database_figures(env: dict[str, str], since: datetime) -> dict[str, Any]:
    """What the database says about the sessions made since ``since`` (a subprocess: the
    soak's own var dir, not whatever this process was started with)."""
    script = f"""
import json, os, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "rensei.settings")
django.setup()
from collections import Counter
from datetime import datetime
from sessions.models import CommandRun, Session
since = datetime.fromisoformat({since.isoformat()!r})
made = Session.objects.filter(created_at__gte=since)
states = Counter(made.values_list("state", flat=True))
runs = Counter(CommandRun.objects.filter(created_at__gte=since).values_list("state", flat=True))
bad = list(made.filter(state__in=["failed", "lost"]).values_list("id", "state", "last_error")[:10])
print(json.dumps({{"sessions": dict(states), "commands": dict(runs), "bad": bad}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    data: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


def settle(env: dict[str, str], since: datetime) -> dict[str, Any]:
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        figures = database_figures(env, since)
        pending = sum(figures["sessions"].get(s, 0) for s in TRANSIENT)
        pending += sum(figures["commands"].get(s, 0) for s in ("queued", "running"))
        if not pending or time.monotonic() > deadline:
            return figures
        time.sleep(3)


def stop_run(run: subprocess.Popen[bytes], marker: str) -> tuple[float, list[int]]:
    """SIGHUP to the run's process group, as when its terminal closes; seconds and leftovers."""
    started = time.monotonic()
    if run.poll() is None:
        os.killpg(run.pid, signal.SIGHUP)
    while time.monotonic() - started < STOP_WITHIN and marked(marker):
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    left = marked(marker)
    for pid in left:  # report them, but leave the machine clean
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    try:
        run.wait(timeout=5)
    except subprocess.TimeoutExpired:
        run.kill()
    return elapsed, left


def render_section(fig: dict[str, Any]) -> str:
    ok = "pass" if fig["passed"] else "**FAIL**"
    d = fig["dispatcher"]
    lines = [
        BEGIN,
        "## Soak: `make run` under the demo dispatcher",
        "",
        "Generated by `make soak` (`tests/reliability/soak.py`): the `make run` stack on the "
        "embedded default (SQLite, filesystem broker) with `manage.py demo_dispatcher --rate "
        f"{fig['rate']:g}` against it, then the checks below. CI runs a short one "
        "(`SOAK_SECONDS=120`) after `make reliability`.",
        "",
        "| Figure | Value |",
        "|---|---:|",
        f"| Result | {ok} |",
        f"| Finished (UTC) | {fig['finished']} |",
        f"| Dispatcher duration | {fig['seconds']:,} s |",
        f"| Sessions created | {d.get('created', '–')} |",
        "| Actions requested (pause / resume / terminate / exec) | "
        f"{d.get('paused', '–')} / {d.get('resumed', '–')} / {d.get('terminated', '–')} / "
        f"{d.get('commands', '–')} |",
        f"| Process deaths (a `make run` process exited) | {fig['deaths']} |",
        f"| API errors (dispatcher) | {d.get('errors', '–')} |",
        f"| Conflicts (409: the session moved on first; expected) | {d.get('conflicts', '–')} |",
        f"| Errors in the run's log | {fig['log_errors']} |",
        f"| Sessions left in a transient state | {fig['transient']} |",
        f"| Sessions failed or lost | {fig['failed_or_lost']} |",
        f"| Commands not finished | {fig['commands_unfinished']} |",
        f"| Sessions still queued for a free slot at the end | {fig['still_queued']} |",
        f"| Stop (SIGHUP to the group): seconds, processes left | "
        f"{fig['stop_seconds']:.1f}, {fig['left_after_stop']} |",
        "",
        f"End states of the sessions it created: {fig['end_states'] or 'none'}.",
    ]
    if fig["problems"]:
        lines += ["", "Problems:", ""] + [f"- {p}" for p in fig["problems"]]
    lines.append(END)
    return "\n".join(lines) + "\n"


def current_section(doc: Path = DOC) -> str:
    """The soak section of ``doc`` as it stands (kept by report.py when it rewrites the page)."""
    text = doc.read_text() if doc.exists() else ""
    if BEGIN in text and END in text:
        return "\n" + text[text.index(BEGIN) : text.index(END) + len(END)] + "\n"
    return ""


def write_section(section: str, doc: Path = DOC) -> None:
    text = doc.read_text() if doc.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section.rstrip("\n") + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.write_text(text.rstrip("\n") + "\n")


def soak(seconds: int, port: int, emulator_port: int, rate: float, var_dir: Path) -> int:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for p in (port, emulator_port):
        if not port_is_free(p):
            print(f"soak: port {p} is taken; pass free ones (PORT=, E2B_EMULATOR_PORT=)")
            return 2
    marker = f"soak-{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.pop("CELERY_RESULT_BACKEND", None)
    env.update(
        RENSEI_VAR_DIR=str(var_dir),
        RENSEI_RUN_ID=marker,
        PORT=str(port),
        E2B_EMULATOR_PORT=str(emulator_port),
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    run_log = (ARTIFACTS / "run.log").open("wb")
    dispatcher_log = ARTIFACTS / "dispatcher.log"
    print(f"soak: make run on :{port} (emulator :{emulator_port}), var dir {var_dir}")
    print(f"soak: logs in {ARTIFACTS.relative_to(REPO)}/ (run.log, dispatcher.log)")
    run = subprocess.Popen(
        [
            "make",
            "--no-print-directory",
            "run",
            f"PORT={port}",
            f"E2B_EMULATOR_PORT={emulator_port}",
        ],
        cwd=REPO,
        env=env,
        stdout=run_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    problems: list[str] = []
    dispatcher: dict[str, Any] = {}
    figures: dict[str, Any] = {"sessions": {}, "commands": {}, "bad": []}
    since = datetime.now(UTC)
    try:
        up = wait_http(f"http://127.0.0.1:{port}/accounts/login/", 180, run) and wait_http(
            f"http://127.0.0.1:{emulator_port}/health", 60, run
        )
        if not up:
            problems.append("the stack did not come up (see run.log)")
        else:
            since = datetime.now(UTC)
            print(f"soak: dispatcher at {rate:g} rounds a minute for {seconds} s")
            with dispatcher_log.open("w") as log:
                command = [sys.executable, "manage.py", "demo_dispatcher", "--rate", str(rate)]
                command += ["--duration", str(seconds), "--create-token", "--seed", "14"]
                disp = subprocess.Popen(
                    [*command, "--url", f"http://127.0.0.1:{port}"],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                while disp.poll() is None:
                    if run.poll() is not None:  # the stack stopped under the dispatcher
                        disp.send_signal(signal.SIGINT)
                        disp.wait(timeout=30)
                        break
                    time.sleep(1)
            text = dispatcher_log.read_text(errors="replace")
            if match := DONE_LINE.search(text):
                keys = ("created", "paused", "resumed", "terminated", "commands")
                dispatcher = dict(zip(keys, map(int, match.groups()[:5]), strict=True))
                dispatcher["ended"] = match.group(6)
                dispatcher["conflicts"], dispatcher["errors"] = map(int, match.groups()[6:])
            if disp.returncode != 0:
                problems.append(f"demo_dispatcher exited {disp.returncode} (see dispatcher.log)")
            if run.poll() is None:
                print("soak: dispatcher done; waiting for the last actions to finish")
                figures = settle(env, since)
    finally:
        died_early = run.poll() is not None
        stop_seconds, left = stop_run(run, marker)
        run_log.close()
    log_text = (ARTIFACTS / "run.log").read_text(errors="replace")
    deaths = len(
        re.findall(r"\| \S+ (?:exited with code|was killed by) .*: stopping the others", log_text)
    )
    if died_early:
        deaths = max(deaths, 1)
        problems.append(
            "a process of make run exited during the soak (see run.log, 'system' lines)"
        )
    log_errors = [line for line in log_text.splitlines() if BAD_LOG.search(line)]
    sessions, commands = figures["sessions"], figures["commands"]
    transient = sum(sessions.get(s, 0) for s in TRANSIENT)
    failed_or_lost = sessions.get("failed", 0) + sessions.get("lost", 0)
    unfinished = commands.get("queued", 0) + commands.get("running", 0)
    if transient:
        problems.append(f"{transient} session(s) still in a transient state: {sessions}")
    if failed_or_lost:
        problems.append(f"{failed_or_lost} session(s) failed or lost: {figures['bad']}")
    if unfinished:
        problems.append(f"{unfinished} command(s) never finished: {commands}")
    if log_errors:
        problems.append(f"{len(log_errors)} error line(s) in run.log, first: {log_errors[0][:200]}")
    if left:
        problems.append(f"{len(left)} process(es) left {STOP_WITHIN:.0f} s after SIGHUP")
    if not dispatcher and not problems:
        problems.append("no summary line from the dispatcher (see dispatcher.log)")
    fig = {
        "passed": not problems and deaths == 0,
        "finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "seconds": seconds,
        "rate": rate,
        "dispatcher": dispatcher,
        "deaths": deaths,
        "log_errors": len(log_errors),
        "transient": transient,
        "failed_or_lost": failed_or_lost,
        "commands_unfinished": unfinished,
        "commands": commands,
        "still_queued": sessions.get("queued", 0),
        "end_states": ", ".join(f"{n} {s}" for s, n in sorted(sessions.items())),
        "stop_seconds": stop_seconds,
        "left_after_stop": len(left),
        "problems": problems,
    }
    (ARTIFACTS / "soak.json").write_text(json.dumps(fig, indent=1))
    write_section(render_section(fig))
    print(render_section(fig))
    print(f"soak: {'passed' if fig['passed'] else 'FAILED'}; docs/reliability.md updated")
    return 0 if fig["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.soak", description=__doc__)
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", 1800)))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    parser.add_argument(
        "--emulator-port", type=int, default=int(os.environ.get("E2B_EMULATOR_PORT", 3000))
    )
    parser.add_argument("--rate", type=float, default=60.0)
    parser.add_argument("--var-dir", default=os.environ.get("SOAK_VAR_DIR", ""))
    args = parser.parse_args(argv)
    if args.seconds < 10:
        parser.error("--seconds must be at least 10")
    var_dir = Path(args.var_dir or tempfile.mkdtemp(prefix="rensei-soak-"))
    var_dir.mkdir(parents=True, exist_ok=True)
    status = soak(args.seconds, args.port, args.emulator_port, args.rate, var_dir)
    if status == 0 and not args.var_dir:
        shutil.rmtree(var_dir, ignore_errors=True)  # a failed run keeps its database to look at
    return status


if __name__ == "__main__":
    sys.exit(main())
