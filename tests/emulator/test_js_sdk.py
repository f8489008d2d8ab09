"""The official E2B JavaScript SDK (npm ``e2b``, pinned in js/package.json) against the emulator.

Proves the emulator is not shaped around the Python SDK alone: a second official client
creates, runs commands in, pauses, resumes, lists and kills a sandbox, pointed at the
emulator only through the SDK's own E2B_API_URL / E2B_SANDBOX_URL / E2B_API_KEY (never
debug mode). Node and npm come from the machine; outside CI their absence skips.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pools.e2b_emulator.testing import running_emulator
from tests.services import IN_CI

JS_DIR = Path(__file__).resolve().parent / "js"
API_KEY = "e2b_js_sdk_check_key"
STAMP = "node_modules/.rensei-lock-sha256"  # lock hash of the last successful `npm ci`


def _pinned_version() -> str:
    return str(json.loads((JS_DIR / "package.json").read_text())["dependencies"]["e2b"])


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI must provide it)", pytrace=False)
    pytest.skip(reason)


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        _missing(f"needs `{tool}` (Node.js 20+) on PATH to run the E2B JavaScript SDK")
    assert path is not None
    return path


def _require_node() -> str:
    node = _require("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    major = int(version.lstrip("v").split(".")[0] or 0)
    if major < 20:
        _missing(f"the E2B JavaScript SDK needs Node.js 20+, found {version or 'unknown'}")
    return node


def _install_sdk(npm: str) -> None:
    """`npm ci` into js/node_modules unless it already holds exactly package-lock.json."""
    lock = JS_DIR / "package-lock.json"
    # Parallel test processes must not run `npm ci` over each other's tree.
    with lock.open("rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        wanted = hashlib.sha256(handle.read()).hexdigest()
        stamp = JS_DIR / STAMP
        if stamp.is_file() and stamp.read_text() == wanted:
            return
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
        stamp.write_text(wanted)


def _node_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("E2B_")}
    env.update(E2B_API_URL=url, E2B_SANDBOX_URL=url, E2B_API_KEY=API_KEY)
    # Node's fetch (undici) only proxies when asked, but keep loopback direct regardless.
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def test_official_js_sdk_drives_the_sandbox_lifecycle() -> None:
    node, npm = _require_node(), _require("npm")
    _install_sdk(npm)
    version = _pinned_version()

    with running_emulator(api_keys={API_KEY}, metrics_interval_s=0.2) as emu:
        done = subprocess.run(
            [node, "sdk_check.mjs"],
            cwd=JS_DIR,
            env=_node_env(emu.url),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"JS SDK check failed:\n{done.stdout}\n{done.stderr}"
        summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        calls = emu.emulator.calls
        left_running = emu.emulator.sandbox_ids()

    sandbox_id = summary["create"]["sandboxId"]
    metadata = {"check_run": summary["runId"], "client": "e2b-js"}
    assert summary["ok"] is True and summary["sdkVersion"] == version
    assert summary["create"] == {
        "sandboxId": sandbox_id,
        "templateId": "donmai-worker",
        "metadata": metadata,
        "state": "running",
        "timeoutS": 120,
    }
    assert summary["run"]["which"]["exitCode"] == 0
    assert summary["run"]["which"]["stdout"].endswith("/donmai")
    assert summary["run"]["env"] == "hello-from-js"
    assert summary["runFailure"] == {
        "errorClass": "CommandExitError",
        "exitCode": 3,
        "stdout": "partial\n",
        "stderr": "broken\n",
        "error": "exit status 3",
    }
    assert summary["files"] == {
        "written": {"name": "js.txt", "path": "/home/user/notes/js.txt"},
        "text": "written by js",
        "bytesEqual": True,
        "fromCommand": "written by js",
        "listed": ["dir:notes", "file:blob.bin"],
        "exists": [True, False],
        "info": "dir",
        "madeDir": [True, False],
        "missingRead": {
            "errorClass": "FileNotFoundError",
            "message": "path '/home/user/missing.txt' does not exist",
            "isFileNotFound": True,
        },
        "missingInfo": "FileNotFoundError",
        "removed": True,
    }
    assert summary["metrics"] == {
        "cpuCount": 2,
        "memTotal": 1024 * 1024 * 1024,
        "diskTotal": 10240 * 1024 * 1024,
        "cpuInRange": True,
        "memUsedPositive": True,
        "timestampIsDate": True,
        "future": 0,
    }
    assert summary["pause"] == {
        "paused": True,
        "info": "paused",
        "listed": [{"sandboxId": sandbox_id, "state": "paused", "metadata": metadata}],
        "again": False,
    }
    assert summary["connect"] == {
        "sandboxId": sandbox_id,
        "state": "running",
        "stdout": "hello-from-js",
    }
    assert summary["kill"] == {"killed": True, "again": False, "listed": []}

    # The emulator's side of the same story, from its call log.
    api = [c for c in calls if c.plane == "api"]
    [create] = [c for c in api if c.endpoint == "create"]
    assert create.status == 201
    assert create.body["templateID"] == "donmai-worker"
    assert create.body["timeout"] == 120
    assert create.body["metadata"] == metadata
    assert create.body["envVars"] == {"GREETING": "hello-from-js"}
    lifecycle = [(c.endpoint, c.status) for c in api if c.endpoint in ("pause", "connect", "kill")]
    assert lifecycle == [
        ("pause", 204),
        ("pause", 409),
        ("connect", 201),
        ("kill", 204),
        ("kill", 404),
    ]
    assert {c.sandbox_id for c in api if c.endpoint in ("pause", "connect", "kill")} == {sandbox_id}
    assert any(c.endpoint == "list" and "metadata" in c.query for c in api)
    assert left_running == []
    # Every control-plane call came from the JS SDK with our key; commands went through envd.
    assert {c.request_headers.get("user-agent", "").split()[0] for c in api} == {
        f"e2b-js-sdk/{version}"
    }
    assert {c.request_headers.get("x-api-key") for c in api} == {API_KEY}
    assert any(c.plane == "envd" and c.endpoint.startswith("envd.") for c in calls)
