"""The session page's exec console: run a one-shot command in the box, and follow its output.

A run's panel polls until the run has finished (286), and tells the page's "Past runs" list
when a run starts or finishes so that list reloads itself.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from rensei.access import org_view
from rensei.inputs import MAX_ID
from rensei.models import Channel
from sessions import services
from sessions.forms import ExecForm
from sessions.models import CommandRun
from sessions.output import HEAD_BYTES, TAIL_BYTES
from sessions.view_helpers import HtmxHttpRequest, session_or_404
from sessions.views_detail import detail_context, exec_context


@org_view("sessions.manage")
@require_POST
def session_exec(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    session = session_or_404(request, pk)
    form = ExecForm(request.POST)
    run = None
    if form.is_valid():
        try:
            run = services.run_command(
                session,
                command=form.cleaned_data["command"],
                env=form.cleaned_data["env"],
                timeout=form.cleaned_data["timeout"],
                actor=request.user,
                channel=Channel.WEB,
            )
        except services.SessionRequestError as exc:
            field = exc.field if exc.field in form.fields else None
            form.add_error(field, exc.message)
    if run is not None:
        if not request.htmx:
            return redirect("session_exec_run", pk=session.pk, run_id=run.pk)
        # A fresh form: the next command starts from the default timeout, not this one's.
        form = ExecForm()
    if run is None and not request.htmx:
        # A plain form post with errors: the whole page again, with the errors beside the form.
        context = detail_context(request, session)
        context.update(exec_context(request, session, exec_form=form))
        return render(request, "sessions/detail.html", context, status=400)
    context = exec_context(request, session, exec_form=form)
    if run is not None:
        context.update(_run_context(run))
    return render(request, "sessions/detail.html#exec_console", context)


def _run_context(run: CommandRun) -> dict[str, Any]:
    # The job stores head and tail capped (sessions.output), while it runs and at the end:
    # shown as stored, partial output included.
    return {
        "run": run,
        "run_finished": run.finished,
        "stdout": run.stdout,
        "stderr": run.stderr,
        "stdout_capped": run.stdout_truncated,
        "stderr_capped": run.stderr_truncated,
        "head_kb": HEAD_BYTES // 1024,
        "tail_kb": TAIL_BYTES // 1024,
    }


@org_view("sessions.manage")
def session_exec_run(request: HtmxHttpRequest, pk: int, run_id: int) -> HttpResponse:
    """One run's output: the polled panel (286 once finished) or a page of its own."""
    session = session_or_404(request, pk)
    if run_id > MAX_ID:
        raise Http404("No such command run.")
    run = get_object_or_404(
        CommandRun.objects.select_related("created_by"), session=session, pk=run_id
    )
    context = {"session": session, **_run_context(run)}
    if request.htmx:
        response = render(request, "sessions/exec_run.html#run_output", context)
        # The "Past runs" list on the detail page listens for these and reloads itself.
        if context["run_finished"]:
            response.status_code = 286
            response["HX-Trigger"] = "runFinished"
        elif request.GET.get("seen", run.state) != run.state:
            response["HX-Trigger"] = "runStarted"  # the panel last showed it queued
        return response
    return render(request, "sessions/exec_run.html", context)
