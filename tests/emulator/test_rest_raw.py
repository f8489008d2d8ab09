"""Raw HTTP exactly as E2B's OpenAPI spec and envd's Connect API define them.

This is what clients other than the Python SDK send (the JS SDK, the E2B CLI's
``sandbox resume``/``exec`` and older SDKs use the v1 paths), so the emulator is not
tied to one client's quirks.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from pools.e2b_emulator.testing import RunningEmulator, running_emulator

KEY = "e2b_raw_client"


@pytest.fixture
def api() -> Iterator[tuple[httpx.Client, RunningEmulator]]:
    with (
        running_emulator() as emu,
        httpx.Client(base_url=emu.url, headers={"X-API-Key": KEY}, trust_env=False) as client,
    ):
        yield client, emu


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == status
    return str(body["message"])


def test_v1_paths_used_by_other_clients(api: tuple[httpx.Client, RunningEmulator]) -> None:
    client, _ = api
    created = client.post(
        "/sandboxes", json={"templateID": "base", "timeout": 60, "metadata": {"cli": "yes"}}
    )
    assert created.status_code == 201
    sandbox = created.json()
    sandbox_id = sandbox["sandboxID"]
    assert sandbox["templateID"] == "base" and sandbox["envdVersion"] == "0.6.13"
    assert sandbox["envdAccessToken"]

    listed = client.get("/sandboxes", params={"metadata": "cli=yes"}).json()
    assert [s["sandboxID"] for s in listed] == [sandbox_id]
    assert listed[0]["state"] == "running" and listed[0]["memoryMB"] == 512

    assert "already running" in _error(client.post(f"/sandboxes/{sandbox_id}/resume", json={}), 409)
    assert client.post(f"/sandboxes/{sandbox_id}/pause").status_code == 204
    assert "already paused" in _error(client.post(f"/sandboxes/{sandbox_id}/pause"), 409)
    assert client.get("/sandboxes").json() == []  # the v1 list shows running ones only

    resumed = client.post(f"/sandboxes/{sandbox_id}/connect", json={"timeout": 60})
    assert resumed.status_code == 201 and resumed.json()["sandboxID"] == sandbox_id
    assert client.post(f"/sandboxes/{sandbox_id}/connect", json={"timeout": 60}).status_code == 200
    _error(client.post(f"/sandboxes/{sandbox_id}/connect", json={}), 400)  # timeout is required

    assert client.post(f"/sandboxes/{sandbox_id}/pause").status_code == 204
    resumed = client.post(f"/sandboxes/{sandbox_id}/resume", json={"timeout": 60})
    assert resumed.status_code == 201
    detail = client.get(f"/sandboxes/{sandbox_id}").json()
    assert detail["state"] == "running"
    assert detail["lifecycle"] == {"onTimeout": "kill", "autoResume": False}

    assert client.post(f"/sandboxes/{sandbox_id}/timeout", json={"timeout": 5}).status_code == 204
    assert client.delete(f"/sandboxes/{sandbox_id}").status_code == 204
    message = _error(client.delete(f"/sandboxes/{sandbox_id}"), 404)
    assert message == f"Sandbox \"{sandbox_id}\" doesn't exist or you don't have access to it"
    _error(client.post(f"/sandboxes/{sandbox_id}/connect", json={"timeout": 60}), 404)


def test_error_bodies(api: tuple[httpx.Client, RunningEmulator]) -> None:
    client, _ = api
    assert "Invalid API key" in _error(client.get("/v2/sandboxes", headers={"X-API-Key": ""}), 401)
    assert _error(client.post("/v2/sandboxes", json={"templateID": "nope"}), 404) == (
        "template 'nope' not found"
    )
    assert _error(client.post("/v2/sandboxes", json={"templateID": "base", "timeout": 0}), 400) == (
        "Timeout must be greater than 0"
    )
    _error(client.post("/v2/sandboxes", content=b"{not json"), 400)
    _error(client.get("/v2/sandboxes", params={"limit": 101}), 400)
    _error(client.get("/sandboxes/abc/logs"), 501)
    assert "doesn't exist" in _error(client.get("/sandboxes/abc/metrics"), 404)
    _error(client.get("/nowhere"), 404)


def test_create_defaults_to_300_seconds(api: tuple[httpx.Client, RunningEmulator]) -> None:
    client, _ = api
    sandbox_id = client.post("/v2/sandboxes", json={"templateID": "base"}).json()["sandboxID"]
    detail = client.get(f"/sandboxes/{sandbox_id}").json()
    lifetime = datetime.fromisoformat(detail["endAt"]) - datetime.fromisoformat(detail["startedAt"])
    assert 290 < lifetime.total_seconds() <= 300
    [listed] = client.get("/v2/sandboxes").json()
    assert listed["sandboxID"] == sandbox_id and listed["diskSizeMB"] > 0


def _envelope(message: dict[str, Any]) -> bytes:
    payload = json.dumps(message).encode()
    return struct.pack(">BI", 0, len(payload)) + payload


def _read_envelopes(raw: bytes) -> list[tuple[int, dict[str, Any]]]:
    out = []
    while raw:
        flags, length = struct.unpack(">BI", raw[:5])
        out.append((flags, json.loads(raw[5 : 5 + length])))
        raw = raw[5 + length :]
    return out


def test_envd_over_raw_connect(api: tuple[httpx.Client, RunningEmulator]) -> None:
    client, emu = api
    sandbox = client.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60}).json()
    envd = {"E2b-Sandbox-Id": sandbox["sandboxID"], "E2b-Sandbox-Port": "49983"}
    auth = {**envd, "X-Access-Token": sandbox["envdAccessToken"]}

    assert client.get("/health", headers=envd).status_code == 204
    assert _error(client.post("/process.Process/List", headers=envd, json={}), 401)

    listed = client.post("/process.Process/List", headers=auth, json={})
    assert listed.status_code == 200 and listed.json() == {}

    start = client.post(
        "/process.Process/Start",
        headers={
            **auth,
            "Content-Type": "application/connect+json",
            "Connect-Protocol-Version": "1",
            "Connect-Timeout-Ms": "10000",
        },
        content=_envelope(
            {"process": {"cmd": "/bin/bash", "args": ["-l", "-c", "echo hi; exit 4"]}}
        ),
    )
    assert start.headers["content-type"] == "application/connect+json"
    frames = _read_envelopes(start.content)
    assert "pid" in frames[0][1]["event"]["start"]
    events = [f["event"] for flags, f in frames if flags == 0]
    stdout = b"".join(base64.b64decode(e["data"]["stdout"]) for e in events if "data" in e)
    assert stdout == b"hi\n"
    end = next(e["end"] for e in events if "end" in e)
    assert end == {
        "exitCode": 4,
        "exited": True,
        "status": "exit status 4",
        "error": "exit status 4",
    }
    assert frames[-1] == (2, {})

    client.post(f"/sandboxes/{sandbox['sandboxID']}/pause")
    gone = client.get("/health", headers=envd)
    assert gone.status_code == 502
    assert gone.json() == {
        "sandboxId": sandbox["sandboxID"],
        "message": "The sandbox was not found",
        "code": 502,
    }
    assert [c.endpoint for c in emu.emulator.calls if c.plane == "envd"] == [
        "envd.health",
        "envd.List",
        "envd.List",
        "envd.Start",
        "envd.health",
    ]
