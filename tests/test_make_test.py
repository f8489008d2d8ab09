"""`make test` on a fresh machine: both pytest phases always run and are both reported, the
target fails if either failed, and Debian's chromium is installed (as root) or asked for.

The Makefile runs against a stand-in virtual env whose `python` records its arguments and
exits as the scenario says; tests/ensure-chromium runs against a stand-in `apt-get`, so no
package is ever installed by these tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

REPO = Path(settings.BASE_DIR)
ENSURE = REPO / "tests" / "ensure-chromium"

FAKE_PYTHON = """#!/bin/sh
echo "$*" >> "$CALLS"
case "$*" in
  *"not browser"*) exit "$FIRST" ;;
  *) exit "$SECOND" ;;
esac
"""


def _make_test(
    tmp_path: Path, first: int, second: int, env: dict[str, str] | None = None
) -> tuple[int, str, list[str]]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    (venv / ".installed").touch()  # newer than requirements.lock: nothing to install
    calls = tmp_path / "calls"
    # By default a chromium is "there" (any executable will do: the fake pytest never runs it).
    env = {"CHROMIUM_PATH": shutil.which("true") or "", **(env or os.environ)}
    env.update({"CALLS": str(calls), "FIRST": str(first), "SECOND": str(second)})
    # An outer make's, if any.
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTEST_ARGS", "TEST_PROCESSES"):
        env.pop(name, None)
    out = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(REPO),
            "test",
            f"VENV={venv}",
            f"BIN={venv}/bin",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = calls.read_text().splitlines() if calls.exists() else []
    return out.returncode, out.stdout + out.stderr, lines


@pytest.mark.parametrize(
    ("first", "second", "ok", "first_says", "second_says"),
    [
        (0, 0, True, "passed", "passed"),
        (1, 0, False, "FAILED (pytest exit 1)", "passed"),
        (0, 1, False, "passed", "FAILED (pytest exit 1)"),
        (1, 2, False, "FAILED (pytest exit 1)", "FAILED (pytest exit 2)"),
        (5, 0, True, "no tests selected", "passed"),
    ],
)
def test_both_phases_run_and_either_failing_fails_the_target(  # type: ignore[no-untyped-def]
    tmp_path, first, second, ok, first_says, second_says
):
    code, output, calls = _make_test(tmp_path, first, second)

    assert calls == ["-m pytest -m not browser -n auto", "-m pytest -m browser"]
    assert (code == 0) is ok, output
    assert f"tests without a browser: {first_says}" in output
    assert f"browser tests: {second_says}" in output


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every user can use: the non-root case runs the script as `nobody`."""
    path = Path(tempfile.mkdtemp(prefix="ensure-chromium-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _fake_apt(folder: Path, *, works: bool = True) -> tuple[dict[str, str], Path, Path]:
    """A stand-in apt-get first on PATH; its `install` puts a chromium where the script
    looks, as the Debian package would (or fails, with ``works=False``)."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(mode=0o777)
    log = folder / "apt.log"
    log.touch(mode=0o666)
    log.chmod(0o666)
    chromium = folder / "chromium"
    install = f"printf '#!/bin/sh\\n' > {chromium}; chmod +x {chromium}" if works else "exit 100"
    apt = bin_dir / "apt-get"
    apt.write_text(
        f"""#!/bin/sh
echo "$*" >> {log}
case "$1" in install) {install} ;; esac
"""
    )
    apt.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "CHROMIUM_PATH": str(chromium)}
    return env, log, chromium


def _as(user: str, cmd: list[str]) -> list[str]:
    return cmd if user == "me" else ["runuser", "-u", user, "--", *cmd]


# As root the script installs; as anyone else it asks. Run as root (CI, containers) both
# cases are tested, the other through `runuser -u nobody`.
ROOT = os.geteuid() == 0


def test_present_chromium_needs_nothing(shared_dir):  # type: ignore[no-untyped-def]
    env, log, chromium = _fake_apt(shared_dir)
    chromium.write_text("#!/bin/sh\n")
    chromium.chmod(0o755)
    out = subprocess.run(["bash", str(ENSURE)], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert log.read_text() == ""


if ROOT:  # only root may install; as anyone else the test below covers the one path there is

    def test_as_root_a_missing_chromium_is_installed_with_apt(shared_dir):  # type: ignore[no-untyped-def]
        env, log, chromium = _fake_apt(shared_dir)
        out = subprocess.run(
            ["bash", str(ENSURE)], env=env, capture_output=True, text=True, timeout=30
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert log.read_text().splitlines() == [
            "update -q",
            "install -y -q chromium fonts-dejavu-core",
        ]
        assert os.access(chromium, os.X_OK)


@pytest.mark.parametrize("user", ["nobody"] if ROOT else ["me"])
def test_not_root_a_missing_chromium_gets_one_clear_instruction(shared_dir, user):  # type: ignore[no-untyped-def]
    env, log, chromium = _fake_apt(shared_dir)
    out = subprocess.run(
        _as(user, ["bash", str(ENSURE)]), env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 1
    assert "sudo apt-get install -y chromium fonts-dejavu-core" in out.stderr
    assert log.read_text() == "" and not chromium.exists()


def test_without_chromium_the_other_tests_still_run_and_the_target_fails(tmp_path, shared_dir):  # type: ignore[no-untyped-def]
    # As root apt-get runs and fails; as anyone else the script asks: no chromium either way.
    env, _, _ = _fake_apt(shared_dir, works=False)
    code, output, calls = _make_test(tmp_path, 0, 0, env=env)

    assert code != 0
    assert len(calls) == 1 and "not browser" in calls[0]
    assert "tests without a browser: passed" in output
    assert "browser tests: NOT RUN: chromium is missing" in output
