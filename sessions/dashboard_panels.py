"""Panels higher apps add to the dashboard (budgets' spend panel), handed down at start-up.

The dashboard (``sessions.views.dashboard``) lives in sessions, below the apps whose figures
it shows; an app registers a function here in its ``AppConfig.ready``. Each takes the
request and returns (template name, context) or None (nothing to show this person); the
dashboard renders them in registration order inside its polled region.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe

Panel = Callable[[HttpRequest], tuple[str, dict[str, Any]] | None]
_panels: list[Panel] = []


def register(panel: Panel) -> None:
    if panel not in _panels:
        _panels.append(panel)


def render_panels(request: HttpRequest) -> list[SafeString]:
    rendered = []
    for panel in _panels:
        shown = panel(request)
        if shown is not None:
            template, context = shown
            # Without the request: the context processors (navigation) ran for the page
            # already, and a panel gets what it needs in its own context. render_to_string
            # escapes the context; the result is the template's HTML.
            rendered.append(mark_safe(render_to_string(template, context)))
    return rendered
