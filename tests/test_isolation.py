"""A test run shares nothing with a `make run` demo (or another run) on the same machine.

The demo serves on PORT (8000) and E2B_EMULATOR_PORT (3000), keeps its database, broker,
results and beat schedule under the repo's var/, and its gunicorn may hold a control socket.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from django.conf import settings

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DEMO_PORTS = ("8000", "3000")
# A loopback address or a bind/port argument naming one of the demo's ports.
FIXED_PORT = re.compile(
    rf"""(?:127\.0\.0\.1|localhost|0\.0\.0\.0|\[::1\]):(?:{"|".join(DEMO_PORTS)})\b"""
    rf"""|\bport\s*=\s*(?:{"|".join(DEMO_PORTS)})\b"""
    rf"""|["']--port["']\s*,\s*["'](?:{"|".join(DEMO_PORTS)})["']"""
)


def _test_sources() -> list[Path]:
    return [p for p in TESTS.rglob("*.py") if "vendor" not in p.parts]


def test_the_run_has_a_var_directory_of_its_own() -> None:
    var = Path(settings.VAR_DIR).resolve()
    assert var != (REPO / "var").resolve()
    # Subprocesses (workers, servers, commands) inherit it through the environment.
    assert Path(os.environ["RENSEI_VAR_DIR"]).resolve() == var
    inside = [Path(settings.CELERY_BEAT_SCHEDULE_FILENAME), Path(settings.STATIC_ROOT)]
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        inside.append(Path(settings.DATABASES["default"]["TEST"]["NAME"]))
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        inside += [
            Path(str(v))
            for k, v in options.items()
            if k.endswith(("folder", "folder_in", "folder_out"))
        ]
    for path in inside:
        assert var in path.resolve().parents, path


def test_jobs_without_a_worker_of_the_tests_own_never_reach_the_demos_queue() -> None:
    # The demo's worker consumes the default queue, "rensei".
    assert settings.CELERY_TASK_DEFAULT_QUEUE != "rensei"


def test_no_test_hard_codes_the_demos_ports() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in _test_sources()
        if path.name != Path(__file__).name
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if FIXED_PORT.search(line)
    ]
    assert offenders == [], "tests must pick free ports:\n" + "\n".join(offenders)


def test_the_port_guard_catches_what_it_should() -> None:
    for line in ('url = "http://127.0.0.1:8000/"', "serve(port=3000)", '["--port", "3000"]'):
        assert FIXED_PORT.search(line), line
    for line in ('"http://example.com:8000"', "port=0", '"timeout": 3000', "port=30001"):
        assert not FIXED_PORT.search(line), line


def test_every_gunicorn_started_here_keeps_off_the_shared_control_socket() -> None:
    # gunicorn 25.1+ opens a control socket at one user-wide default path
    # ($XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl): a second gunicorn takes it over and
    # removes it when it stops, so the demo's and a test's would fight over it.
    procfile = (REPO / "Procfile").read_text()
    [web] = [line for line in procfile.splitlines() if line.startswith("web:")]
    assert "--no-control-socket" in web or "--control-socket" in web
    starts = re.compile(r"""["']gunicorn["'],\s*["']rensei\.wsgi|bin/gunicorn\b""")
    starters = [p for p in _test_sources() if starts.search(p.read_text())]
    assert starters, "the guard found no test that starts gunicorn: is it still looking?"
    for path in starters:
        text = path.read_text()
        assert "--no-control-socket" in text or "--control-socket" in text, path


def _fresh_run(tmp: Path) -> str:
    """Import the test settings as a new run would (no RENSEI_VAR_DIR); return its var dir."""
    env = {k: v for k, v in os.environ.items() if k not in {"RENSEI_VAR_DIR"}}
    env["TMPDIR"] = str(tmp)
    out = subprocess.run(
        [sys.executable, "-c", "import tests.settings as s; print(s.OWN_VAR_DIR)"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


def test_a_runs_directory_is_removed_when_it_ends_and_a_killed_runs_by_the_next(tmp_path):  # type: ignore[no-untyped-def]
    killed = tmp_path / "rensei-test-var-killed"
    (killed / "broker").mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (killed / "owner.pid").write_text(str(dead.pid))
    alive = tmp_path / "rensei-test-var-alive"
    alive.mkdir()
    (alive / "owner.pid").write_text(str(os.getpid()))  # a run still going: left alone

    var = _fresh_run(tmp_path)

    assert var.startswith(str(tmp_path)) and not Path(var).exists()
    assert not killed.exists() and alive.exists()
