"""Settings → Execution → Capacity: the pool pages. New pool (the provider picker, then the
provider's form), one pool (its settings form, health history, recent sessions), and the live
base-template warning.

Every GET needs ``capacity.view`` and every POST ``capacity.manage``; a save is audited with
what changed.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from pools import config as schema
from pools.forms import FORMS, E2BPoolForm
from pools.kinds import default_kinds, effective_provides
from pools.models import CapacityPool, with_session_counts
from pools.providers import PROVIDERS, provider_class
from pools.view_helpers import (
    HtmxHttpRequest,
    can_manage,
    capacity_view,
    config_dict,
    delete_refusal,
    pool_snapshot,
)
from rensei import audit
from rensei.access import get_for_org, org_of, require
from rensei.models import Channel

HISTORY_PAGE_SIZE = 20
RECENT_SESSIONS = 20

# The product doc's Dockerfile and CLI commands for a template with donmai baked in.
DOCKERFILE = (
    "FROM e2bdev/code-interpreter:latest\n"
    "\n"
    "# Install donmai binary\n"
    "ARG DONMAI_VERSION=v0.11.0\n"
    'RUN curl -fsSL "https://github.com/renseiai/donmai/releases/download/'
    '${DONMAI_VERSION}/donmai_linux_amd64" \\\n'
    "    -o /usr/local/bin/donmai && chmod +x /usr/local/bin/donmai\n"
    "\n"
    "# Start command: launch the in-box runner\n"
    'CMD ["donmai", "agent", "run"]'
)
BUILD_COMMANDS = """npm install -g @e2b/cli

e2b template build \\
  --name donmai-worker \\
  --dockerfile worker/e2b.Dockerfile \\
  --start-cmd "donmai agent run\""""


def _provider_info(kind: str) -> dict[str, Any]:
    cls = provider_class(kind)
    runtime, requirement = default_kinds(kind)
    return {
        "kind": kind,
        "label": PROVIDERS[kind][0],
        "capability_rows": cls.capabilities.doc_rows(),
        "runtime_kinds": runtime,
        "requirement_kinds": requirement,
    }


def _reference() -> dict[str, Any]:
    """What the E2B pages show beside the form: schema table, example, template build."""
    return {
        "schema_keys": schema.SCHEMA,
        "example_config": json.dumps(schema.EXAMPLE_CONFIG, indent=2),
        "dockerfile": DOCKERFILE,
        "build_commands": BUILD_COMMANDS,
        "e2b": _provider_info("e2b"),
    }


# -- new pool ----------------------------------------------------------------------------


@capacity_view
@require_GET
def pool_new(request: HtmxHttpRequest) -> HttpResponse:
    cards = [_provider_info(kind) for kind in PROVIDERS if kind in FORMS]
    return render(
        request,
        "pools/new.html",
        {"cards": cards, "can_manage": can_manage(request), "title": "New pool", **_reference()},
    )


@sensitive_post_parameters("envVars", "raw_config")
@capacity_view
@require_http_methods(["GET", "POST"])
def pool_new_kind(request: HtmxHttpRequest, kind: str) -> HttpResponse:
    if kind not in FORMS or kind not in PROVIDERS:
        raise Http404("No such provider.")
    org = org_of(request)
    form_class = FORMS[kind]
    status = 200
    if request.method == "POST":
        require(request, "capacity.manage")
        form = form_class(request.POST, org=org)
        if form.is_valid():
            with transaction.atomic():
                pool = form.save()
                audit.record(
                    org=org,
                    action="pool.created",
                    target=str(pool),
                    actor=request.user,
                    channel=Channel.WEB,
                    detail=pool_snapshot(pool),
                )
            messages.success(request, f"Pool {pool.name} created.")
            url = reverse("pool_detail", args=[pool.pk])
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
        status = 200 if request.htmx else 400
    else:
        form = form_class(org=org)
    context = {
        "form": form,
        "kind": kind,
        "can_manage": can_manage(request),
        "title": f"New {PROVIDERS[kind][0]} pool",
        "action": reverse("pool_new_kind", args=[kind]),
        "base_warning": _form_is_base(form),
        **_reference(),
    }
    if request.htmx and request.method == "POST":
        return render(request, "pools/new_e2b.html#pool-form", context)
    return render(request, "pools/new_e2b.html", context, status=status)


def _form_is_base(form: E2BPoolForm) -> bool:
    if form.is_bound:
        if (form.data.get("raw_config") or "").strip():
            return bool(form.config) and schema.is_base_template(form.config)
        return schema.is_base_template(
            {
                "templateId": form.data.get("templateId", ""),
                "snapshotId": form.data.get("snapshotId"),
            }
        )
    return schema.is_base_template({"templateId": form.initial.get("templateId", "")})


@capacity_view
@require_GET
def template_hint(request: HtmxHttpRequest) -> HttpResponse:
    """The base-template warning, live as the templateId field changes (htmx)."""
    is_base = schema.is_base_template(
        {
            "templateId": request.GET.get("templateId", "")[:200],
            "snapshotId": request.GET.get("snapshotId", "")[:200],
        }
    )
    return render(request, "pools/_template_hint.html", {"base_warning": is_base, **_reference()})


# -- one pool ----------------------------------------------------------------------------


@sensitive_post_parameters("envVars", "raw_config")
@capacity_view
@require_http_methods(["GET", "POST"])
def pool_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    pool = get_for_org(
        request, with_session_counts(CapacityPool.objects.select_related("org")), pk=pk
    )
    form_class = FORMS.get(pool.provider)
    status = 200
    form = None
    if request.method == "POST":
        require(request, "capacity.manage")
        if form_class is None:
            raise Http404("This provider's pools cannot be edited here.")
        before = pool_snapshot(pool)
        form = form_class(request.POST, instance=pool, org=pool.org)
        if form.is_valid():
            with transaction.atomic():
                pool = form.save()
                after = pool_snapshot(pool)
                changes = {
                    key: {"before": before[key], "after": after[key]}
                    for key in after
                    if before[key] != after[key]
                }
                if changes:
                    audit.record(
                        org=pool.org,
                        action="pool.changed",
                        target=str(pool),
                        actor=request.user,
                        channel=Channel.WEB,
                        detail=changes,
                    )
            messages.success(request, f"Pool {pool.name} saved.")
            url = reverse("pool_detail", args=[pool.pk])
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
        status = 200 if request.htmx else 400
        # The failed form must not leak its half-applied values into the page's pool.
        pool = get_for_org(
            request, with_session_counts(CapacityPool.objects.select_related("org")), pk=pk
        )
    elif form_class is not None and can_manage(request):
        form = form_class(instance=pool, org=pool.org)

    checks = Paginator(pool.health_checks.select_related("requested_by"), HISTORY_PAGE_SIZE)
    sessions = pool.sessions.order_by("-created_at", "-id")[:RECENT_SESSIONS]  # type: ignore[attr-defined]
    latest = pool.health_checks.first()
    context = {
        "pool": pool,
        "form": form,
        "kind": pool.provider,
        "can_manage": can_manage(request),
        "title": f"Pool {pool.name}",
        "action": reverse("pool_detail", args=[pool.pk]),
        "config_json": json.dumps(config_dict(pool.config), indent=2, ensure_ascii=False),
        "provides": sorted(effective_provides(pool)),
        "override": list(pool.runtime_provides or []),
        "checks_page": checks.get_page(request.GET.get("checks")),
        "latest_check": latest,
        "sessions": list(sessions.values("id", "state", "created_at")),
        "base_warning": _form_is_base(form)
        if form is not None and form.is_bound
        else pool.provider == "e2b" and schema.is_base_template(pool.config or {}),
        "delete_refusal": delete_refusal(pool),
        **_reference(),
    }
    if pool.provider in PROVIDERS:
        context["provider"] = _provider_info(pool.provider)
    if request.htmx and request.method == "POST":
        return render(request, "pools/detail.html#pool-form", context)
    return render(request, "pools/detail.html", context, status=status)
