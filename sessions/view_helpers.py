"""What every session page view shares: the request type, and the active org's sessions.

A session id from the URL is looked up in the active org only, so another org's id answers
404 like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django_htmx.middleware import HtmxDetails

from rensei.access import get_for_org, membership_of, org_of
from rensei.inputs import MAX_ID
from rensei.links import url_for_each
from sessions.models import Session


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def sessions_of(request: HtmxHttpRequest) -> QuerySet[Session]:
    return Session.objects.filter(org=org_of(request)).select_related("issue", "pool")


def session_or_404(request: HtmxHttpRequest, pk: int) -> Session:
    """The active org's session or 404 (also for ids too large to be a row id)."""
    if pk > MAX_ID:
        raise Http404("No such session.")
    return get_for_org(request, Session.objects.select_related("issue", "pool"), pk=pk)


def detail_urls() -> Callable[[int], str]:
    """``url(pk)``: a session page's URL, from one ``reverse`` for a whole table of rows."""
    return url_for_each("session_detail", 987654321)


def can_manage(request: HtmxHttpRequest) -> bool:
    return membership_of(request).can("sessions.manage")
