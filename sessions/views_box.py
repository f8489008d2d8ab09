"""Inside the box, on the session page: CPU and memory charts, the runner's log tail and a
read-only file browser.

Each partial makes one provider call (bounded by ``RENSEI_WEB_PROVIDER_TIMEOUT``, through
the factory) and a fixed number of queries; a provider error is shown as its message, never
a 500. The charts and the log poll themselves while the session is live and stop (286) once
it has ended. Who sees what: metrics are for everyone who sees sessions (members, finance,
admins); logs and files may hold secrets, so they need ``sessions.manage`` (admins).
Paths go through one rule, ``pools.box_paths.box_path``.
"""

from __future__ import annotations

import posixpath
from typing import Any

from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from pools import box_paths
from pools.connection import web_timeout
from pools.providers import for_pool
from pools.providers.base import MetricSample, Provider, ProviderError
from rensei.access import org_view
from rensei.inputs import InputError
from sessions.box_charts import LONGEST, cpu_chart, memory_chart, window_for
from sessions.cpu_samples import remember_cpu
from sessions.models import TERMINAL_STATES, Session, SessionState
from sessions.view_helpers import HtmxHttpRequest, session_or_404

LOG_LINES = 200
# The box is reachable (its files and commands) only while it runs; metrics also while paused.
REACHABLE = {SessionState.RUNNING}
METERED = {SessionState.RUNNING, SessionState.PAUSED, SessionState.PAUSING}


def _provider(session: Session) -> Provider:
    if session.pool is None:
        raise ProviderError(
            "This session has no pool, so no sandbox to look into.", permanent=True, status_code=409
        )
    return for_pool(session.pool, timeout=web_timeout())


def _live(response: HttpResponse, session: Session) -> HttpResponse:
    """Stop the poll (htmx reads 286 as "stop") once the session has ended."""
    if session.state in TERMINAL_STATES:
        response.status_code = 286
    return response


@org_view("sessions.view")
@require_GET
def session_metrics(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    session = session_or_404(request, pk)
    now = timezone.now()
    context: dict[str, Any] = {"session": session, "live": session.state not in TERMINAL_STATES}
    samples: list[MetricSample] = []
    if not session.sandbox_id or session.state not in METERED:
        context["note"] = (
            "The sandbox has ended: E2B keeps no metrics after that."
            if session.state in TERMINAL_STATES
            else "No sandbox is running yet."
        )
    else:
        try:
            samples = _provider(session).metrics(session.sandbox_id, now - LONGEST, now)
        except ProviderError as exc:
            context["error"] = exc.message
    if samples:  # without one the section draws no chart (templates/sessions/_metrics.html)
        remember_cpu(session.pk, samples[-1].at, samples[-1].cpu_pct)
        context["latest"] = samples[-1]
        window = window_for(samples, now)
        context["window"] = window.label
        context["cpu_chart"] = cpu_chart(samples, now, window)
        context["memory_chart"] = memory_chart(samples, now, window)
    return _live(render(request, "sessions/_metrics.html", context), session)


@org_view("sessions.manage")
@require_GET
def session_log(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    session = session_or_404(request, pk)
    context: dict[str, Any] = {"session": session, "path": box_paths.RUNNER_LOG, "lines": []}
    context["live"] = session.state not in TERMINAL_STATES
    if session.state not in REACHABLE or not session.sandbox_id:
        context["note"] = "The log can be read while the session is running."
    else:
        # tail in the box: a log of any size answers with its last lines only.
        command = f"tail -n {LOG_LINES} -- {box_paths.RUNNER_LOG}"
        try:
            result = _provider(session).exec_command(session.sandbox_id, command, timeout=10)
        except ProviderError as exc:
            context["error"] = exc.message
        else:
            if result.exit_code != 0:
                context["note"] = f"The runner has written no log yet ({box_paths.RUNNER_LOG})."
            else:
                context["lines"] = result.stdout.splitlines()[-LOG_LINES:]
    return _live(render(request, "sessions/_log_tail.html", context), session)


@org_view("sessions.manage")
@require_GET
def session_files(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """A directory listing (default) or, with ``view=file``, a text file up to 1 MB."""
    session = session_or_404(request, pk)
    context: dict[str, Any] = {"session": session, "path": box_paths.HOME}
    try:
        path = box_paths.box_path(request.GET.get("path"))
    except InputError as exc:
        context["error"] = exc.message
        return render(request, "sessions/_files.html", context, status=400)
    context.update(path=path, parent=box_paths.parent_of(path))
    if session.state not in REACHABLE or not session.sandbox_id:
        context["note"] = "Files can be browsed while the session is running."
        return render(request, "sessions/_files.html", context)
    try:
        provider = _provider(session)
        if request.GET.get("view") == "file":
            content = provider.read_file(session.sandbox_id, path, box_paths.VIEW_LIMIT)
            context["file"] = content
            context["binary"] = box_paths.looks_binary(content.data)
            context["downloadable"] = content.size <= box_paths.DOWNLOAD_LIMIT
            if not content.truncated and not context["binary"]:
                context["text"] = content.data.decode("utf-8", errors="replace")
        else:
            context["entries"] = provider.list_files(session.sandbox_id, path)
    except ProviderError as exc:
        context["error"] = exc.message
    return render(request, "sessions/_files.html", context)


@org_view("sessions.manage")
@require_GET
def session_file_download(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The file as an attachment, up to 10 MB; over that, or a bad path, a message (4xx)."""
    session = session_or_404(request, pk)
    context: dict[str, Any] = {"session": session, "path": box_paths.HOME}
    try:
        path = box_paths.box_path(request.GET.get("path"))
    except InputError as exc:
        context["error"] = exc.message
        return render(request, "sessions/_files.html", context, status=400)
    context["path"] = path
    if session.state not in REACHABLE or not session.sandbox_id:
        context["error"] = "Files can be downloaded while the session is running."
        return render(request, "sessions/_files.html", context, status=409)
    try:
        content = _provider(session).read_file(session.sandbox_id, path, box_paths.DOWNLOAD_LIMIT)
    except ProviderError as exc:
        context["error"] = exc.message
        status = exc.status_code if exc.status_code in (400, 404, 409) else 502
        return render(request, "sessions/_files.html", context, status=status)
    if content.truncated:
        limit = box_paths.DOWNLOAD_LIMIT // (1024 * 1024)
        context["error"] = f"{path} is larger than {limit} MB, the most that can be downloaded."
        return render(request, "sessions/_files.html", context, status=413)
    response = HttpResponse(content.data, content_type="application/octet-stream")
    name = posixpath.basename(path).replace('"', "") or "file"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
