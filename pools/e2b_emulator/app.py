"""The ASGI application: one port serving both the control plane and envd.

Like E2B's edge proxy, a request carrying ``E2b-Sandbox-Id`` goes to the sandbox's envd;
anything else is the control-plane REST API. Every request is written to the call log,
and the latency/fault knobs are applied here, before the real handler runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from e2b.envd.filesystem import filesystem_connect
from e2b.envd.process import process_connect

from . import rest
from .envd import ProcessService, envd_gate
from .faults import (
    LOGGED_REQUEST_HEADERS,
    LOGGED_RESPONSE_HEADERS,
    CallRecord,
    Fault,
    now,
    pick_headers,
)
from .files import FilesystemService, files_endpoint
from .state import Emulator

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class EmulatorApp:
    """ASGI 3 app around an :class:`Emulator`; its lifespan starts and cleans up the emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.process_app = process_connect.ProcessASGIApplication(ProcessService(emulator))
        self.filesystem_app = filesystem_connect.FilesystemASGIApplication(
            FilesystemService(emulator)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            if "e2b-sandbox-id" in headers:
                await self._envd(scope, receive, send, headers)
            else:
                await self._rest(scope, receive, send, headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.emulator.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.emulator.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _record(
        self, plane: str, endpoint: str, scope: Scope, headers: dict[str, str]
    ) -> CallRecord:
        record = CallRecord(
            time=now(),
            plane=plane,
            endpoint=endpoint,
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            request_headers=pick_headers(headers, LOGGED_REQUEST_HEADERS),
        )
        self.emulator.call_log.add(record)
        return record

    async def _delay(self, endpoint: str) -> None:
        if (ms := self.emulator.faults.latency_for(endpoint)) > 0:
            await asyncio.sleep(ms / 1000)

    async def _rest(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        endpoint, _, params = rest.route(scope["method"], scope["path"])
        record = self._record("api", endpoint, scope, headers)
        body = await _read_body(receive)
        with contextlib.suppress(ValueError):
            record.body = json.loads(body) if body.strip() else None
        record.sandbox_id = params.get("sandbox_id")
        await self._delay(endpoint)
        fault = self.emulator.faults.take_fault(endpoint)
        if fault is not None:
            response = _fault_response(fault)
        else:
            query = parse_qs(record.query, keep_blank_values=True)
            request = rest.Request(scope["method"], scope["path"], query, headers, body)
            response = rest.dispatch(self.emulator, request)
        if isinstance(response.body, dict) and "sandboxID" in response.body:
            record.sandbox_id = response.body["sandboxID"]
        if response.drop:
            record.dropped = True
            await _drop_connection(send, receive)
            return
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        out_headers = [(k.lower(), v) for k, v in response.headers.items()]
        if response.body is not None:
            out_headers.append(("content-type", "application/json"))
        record.status = response.status
        record.response_headers = pick_headers(dict(out_headers), LOGGED_RESPONSE_HEADERS)
        await _send_plain(send, response.status, payload, out_headers)

    async def _envd(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        path: str = scope["path"]
        if path == "/health":
            endpoint = "envd.health"
        elif path.startswith(("/process.Process/", "/filesystem.Filesystem/")):
            endpoint = "envd." + path.rsplit("/", 1)[-1]
        elif path == "/files":
            endpoint = "envd.files"
        else:
            endpoint = "envd.other"
        record = self._record("envd", endpoint, scope, headers)
        record.sandbox_id = headers["e2b-sandbox-id"]
        await self._delay(endpoint)
        fault = self.emulator.faults.take_fault(endpoint)
        if fault is not None:
            response = _fault_response(fault)
            record.status = response.status
            payload = json.dumps(response.body).encode()
            extra = [*response.headers.items(), ("content-type", "application/json")]
            await _send_plain(send, response.status, payload, extra)
            return
        answer = envd_gate(self.emulator, record.sandbox_id, path, headers.get("x-access-token"))
        if answer is not None:
            status, payload, raw_headers = answer
            record.status = status
            await _send_plain(
                send, status, payload, [(k.decode(), v.decode()) for k, v in raw_headers]
            )
            return

        async def logged_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        if path == "/files":
            sandbox = self.emulator.sandboxes[record.sandbox_id]
            query = parse_qs(record.query, keep_blank_values=True)
            body = await _read_body(receive)
            status, payload, raw = files_endpoint(sandbox, scope["method"], query, headers, body)
            record.status = status
            await _send_plain(send, status, payload, [(k.decode(), v.decode()) for k, v in raw])
        elif path.startswith("/filesystem.Filesystem/"):
            await self.filesystem_app(scope, receive, logged_send)  # type: ignore[arg-type]
        else:
            await self.process_app(scope, receive, logged_send)  # type: ignore[arg-type]


def _fault_response(fault: Fault) -> rest.Response:
    return rest.error_response(fault.status, fault.message, dict(fault.headers))


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_plain(send: Send, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _drop_connection(send: Send, receive: Receive) -> None:
    """Close the TCP connection without a response, as when E2B's answer is lost in transit.

    ASGI has no "abort" message. uvicorn's ``send`` is a method of the request cycle that
    holds the transport, so close that directly; then wait for the server to notice, so
    it does not try to answer with its own 500.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None:
        transport.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(receive(), timeout=1)
        return
    # Any other server: start a response and fail, which makes it close the connection.
    await send(
        {"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"1")]}
    )
    raise ConnectionAbortedError("connection dropped on purpose (drop_next_create)")
