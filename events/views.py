"""Settings → Webhooks: the org's endpoints, each with its delivery log. Admins only.

    GET  settings/webhooks/                         the list
    GET/POST settings/webhooks/new/                  a new endpoint (its secret shown once)
    GET/POST settings/webhooks/<pk>/                 the endpoint: edit, secret, delivery log
    GET  settings/webhooks/<pk>/log/                 the log partial (htmx polls it)
    POST settings/webhooks/<pk>/rotate/ | test/ | enable/ | disable/
    GET/POST settings/webhooks/<pk>/delete/          confirm, then delete
    POST settings/webhooks/<pk>/deliveries/<id>/redeliver/

Another org's ids answer 404 (``get_for_org``); every change is audited (events.endpoints).
The signing secret is on the page only in the answer that made or rotated it (never cached).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from events import endpoints as ep
from events.forms import RotateForm, WebhookForm
from events.models import Delivery, DeliveryAttempt, WebhookEndpoint
from events.types import EVENT_TYPES
from rensei.access import get_for_org, org_of, org_view
from rensei.models import Channel

CAPABILITY = "integrations.manage"
PER_PAGE = 25
LOG_PER_PAGE = 25


def _endpoint(request: HttpRequest, pk: int) -> WebhookEndpoint:
    return get_for_org(request, WebhookEndpoint.objects.select_related("org"), pk=pk)


@org_view(CAPABILITY)
def webhook_list(request: HttpRequest) -> HttpResponse:
    last = DeliveryAttempt.objects.filter(endpoint=OuterRef("pk")).order_by("-at", "-id")
    rows = (
        WebhookEndpoint.objects.filter(org=org_of(request))
        .annotate(
            last_at=Subquery(last.values("at")[:1]),
            last_status=Subquery(last.values("status_code")[:1]),
            last_error=Subquery(last.values("error")[:1]),
        )
        .order_by("created_at", "id")
    )
    page = Paginator(rows, PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "events/list.html", {"page": page})


@never_cache  # the answer carries the secret's only showing
@org_view(CAPABILITY)
@require_http_methods(["GET", "POST"])
@sensitive_variables("secret")
def webhook_new(request: HttpRequest) -> HttpResponse:
    form = WebhookForm(request.POST or None, initial={"enabled": True})
    if request.method == "POST":
        if form.is_valid():
            endpoint, secret = ep.create_endpoint(
                org_of(request),
                url=form.cleaned_data["url"],
                event_types=form.cleaned_data["event_types"],
                description=form.cleaned_data["description"],
                enabled=form.cleaned_data["enabled"],
                actor=request.user,
                channel=Channel.WEB,
            )
            return _detail(request, endpoint, new_secret=secret, created=True)
        return render(request, "events/new.html", {"form": form}, status=400)
    return render(request, "events/new.html", {"form": form})


def _log_context(request: HttpRequest, endpoint: WebhookEndpoint) -> dict[str, Any]:
    attempts = (
        DeliveryAttempt.objects.filter(endpoint=endpoint)
        .select_related("delivery__event")
        .order_by("-at", "-id")
    )
    page = Paginator(attempts, LOG_PER_PAGE).get_page(request.GET.get("page"))
    pending = Delivery.objects.filter(endpoint=endpoint, state="pending").count()
    return {"endpoint": endpoint, "log": page, "pending": pending}


def _detail(
    request: HttpRequest,
    endpoint: WebhookEndpoint,
    *,
    form: WebhookForm | None = None,
    rotate_form: RotateForm | None = None,
    new_secret: str = "",
    created: bool = False,
    status: int = 200,
) -> HttpResponse:
    form = form or WebhookForm(
        initial={
            "url": endpoint.url,
            "description": endpoint.description,
            "event_types": endpoint.event_types,
            "enabled": endpoint.enabled,
        }
    )
    context = {
        **_log_context(request, endpoint),
        "form": form,
        "rotate_form": rotate_form or RotateForm(),
        "new_secret": new_secret,
        "created": created,
        "types": EVENT_TYPES,
    }
    return render(request, "events/detail.html", context, status=status)


@never_cache
@org_view(CAPABILITY)
@require_http_methods(["GET", "POST"])
def webhook_detail(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    if request.method == "POST":
        form = WebhookForm(request.POST)
        if not form.is_valid():
            return _detail(request, endpoint, form=form, status=400)
        ep.update_endpoint(
            endpoint,
            url=form.cleaned_data["url"],
            event_types=form.cleaned_data["event_types"],
            description=form.cleaned_data["description"],
            enabled=form.cleaned_data["enabled"],
            actor=request.user,
            channel=Channel.WEB,
        )
        messages.success(request, "Webhook endpoint saved.")
        return redirect("webhook_detail", pk=endpoint.pk)
    return _detail(request, endpoint)


@org_view(CAPABILITY)
def webhook_log(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    return render(request, "events/_log.html", _log_context(request, endpoint))


@never_cache
@org_view(CAPABILITY)
@require_POST
@sensitive_variables("secret")
def webhook_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    form = RotateForm(request.POST)
    if not form.is_valid():
        return _detail(request, endpoint, rotate_form=form, status=400)
    hours = form.cleaned_data["overlap_hours"]
    secret = ep.rotate_secret(
        endpoint, overlap=timedelta(hours=hours), actor=request.user, channel=Channel.WEB
    )
    return _detail(request, endpoint, new_secret=secret)


@org_view(CAPABILITY)
@require_POST
def webhook_test(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    ep.send_test(endpoint, actor=request.user, channel=Channel.WEB)
    messages.success(request, "Test event queued: it shows in the delivery log when sent.")
    return redirect("webhook_detail", pk=endpoint.pk)


def _set_enabled(request: HttpRequest, pk: int, enabled: bool) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    ep.set_enabled(endpoint, enabled, actor=request.user, channel=Channel.WEB)
    messages.success(request, "Endpoint enabled." if enabled else "Endpoint disabled.")
    return redirect("webhook_detail", pk=endpoint.pk)


@org_view(CAPABILITY)
@require_POST
def webhook_enable(request: HttpRequest, pk: int) -> HttpResponse:
    return _set_enabled(request, pk, True)


@org_view(CAPABILITY)
@require_POST
def webhook_disable(request: HttpRequest, pk: int) -> HttpResponse:
    return _set_enabled(request, pk, False)


@org_view(CAPABILITY)
@require_http_methods(["GET", "POST"])
def webhook_delete(request: HttpRequest, pk: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    if request.method == "POST":
        ep.delete_endpoint(endpoint, actor=request.user, channel=Channel.WEB)
        messages.success(request, f"Webhook endpoint {endpoint.url} deleted.")
        return redirect("webhook_list")
    return render(
        request,
        "rensei/confirm.html",
        {
            "title": "Delete this webhook endpoint?",
            "question": (
                f"Delete the endpoint {endpoint.url} and its delivery log? Events stop going "
                "to it at once (they stay in the event feed). This cannot be undone."
            ),
            "action": reverse("webhook_delete", args=[endpoint.pk]),
            "button": "Delete endpoint",
            "cancel": reverse("webhook_detail", args=[endpoint.pk]),
        },
    )


@org_view(CAPABILITY)
@require_POST
def webhook_redeliver(request: HttpRequest, pk: int, delivery_id: int) -> HttpResponse:
    endpoint = _endpoint(request, pk)
    delivery = get_object_or_404(
        Delivery.objects.select_related("event", "endpoint__org"), endpoint=endpoint, pk=delivery_id
    )
    if ep.redeliver(delivery, actor=request.user, channel=Channel.WEB):
        messages.success(request, "Queued again: the receiver gets the event with the same id.")
    else:
        messages.info(request, "That delivery is still pending: it will be sent anyway.")
    return redirect("webhook_detail", pk=endpoint.pk)
