"""Settings → Execution → Capacity: pools, the provider picker, pool pages, health checks.

Admins (``capacity.manage``) change things; members (``capacity.view``) read every page;
finance sees none of it. Every GET here needs ``capacity.view`` and every POST
``capacity.manage``. htmx requests get the changed partial back; plain form posts get a
redirect (or the page with the error and a 4xx).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, cast

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import ProtectedError, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling, reswap, retarget
from django_htmx.middleware import HtmxDetails

from pools import config as schema
from pools.forms import FORMS, E2BPoolForm
from pools.kinds import default_kinds, effective_provides
from pools.models import CapacityPool, PoolHealthCheck, with_session_counts
from pools.providers import PROVIDERS, provider_class
from pools.tasks import check_pool, start_check
from rensei import audit
from rensei.access import get_for_org, org_of, require
from rensei.access import org_view as _org_view
from rensei.models import Channel, Organization


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


PAGE_SIZE = 50
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


def capacity_view(view: Any) -> Any:
    """GET needs capacity.view; anything else needs capacity.manage (checked in the body)."""
    return _org_view("capacity.view")(view)


def _can_manage(request: HtmxHttpRequest) -> bool:
    membership = getattr(request, "membership", None)
    return bool(membership and membership.can("capacity.manage"))


def _pools(org: Organization) -> QuerySet[CapacityPool]:
    return with_session_counts(CapacityPool.objects.filter(org=org)).order_by("order", "name", "id")


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


def _config_dict(config: Any) -> dict[str, Any]:
    out = schema.masked(config)
    return out if isinstance(out, dict) else {}


def _snapshot(pool: CapacityPool) -> dict[str, Any]:
    return {
        "name": pool.name,
        "config": _config_dict(pool.config),
        "runtime_provides": list(pool.runtime_provides or []),
        "order": pool.order,
        "concurrency_cap": pool.concurrency_cap,
        "enabled": pool.enabled,
    }


# -- the pools table ---------------------------------------------------------------------


def _table_shape(page: Any) -> str:
    """A digest of what the table shows besides the live counts and health: the rows, their
    order, names, caps and buttons. A poll that finds it changed redraws the whole table;
    otherwise it swaps only the count and health cells."""
    # The Delete button's state and wording depend on whether sessions exist / are live.
    rows = [
        (
            p.pk,
            p.name,
            p.order,
            p.enabled,
            p.concurrency_cap,
            p.template_label,
            p.session_count > 0,
            p.live_count > 0,
        )
        for p in page.object_list
    ]
    key = repr((page.number, page.paginator.num_pages, rows))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _table_context(request: HtmxHttpRequest, notice: str = "") -> dict[str, Any]:
    org = org_of(request)
    paginator = Paginator(_pools(org), PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    return {
        "page": page,
        "pools": page.object_list,
        "shape": _table_shape(page),
        "can_manage": _can_manage(request),
        "notice": notice,
        "title": "Capacity",
    }


def _table_response(request: HtmxHttpRequest, notice: str = "", status: int = 200) -> HttpResponse:
    context = _table_context(request, notice)
    if request.htmx:
        return render(request, "pools/capacity.html#pool-table", context)
    if notice:
        return render(request, "pools/capacity.html", context, status=status)
    return redirect("capacity")


@capacity_view
@require_GET
def capacity(request: HtmxHttpRequest) -> HttpResponse:
    """The pools table. Its htmx poll gets the live counts and health, swapped out of band
    cell by cell so the buttons a person may be using stay put; when the rows themselves
    changed (another tab, the API) it gets the whole table instead."""
    context = _table_context(request)
    if not request.htmx:
        return render(request, "pools/capacity.html", context)
    if request.GET.get("shape") == context["shape"]:
        return render(request, "pools/capacity.html#live", context)
    response = render(request, "pools/capacity.html#pool-table", context)
    return reswap(retarget(response, "#pool-table"), "outerHTML")


@capacity_view
@require_POST
def pool_move(request: HtmxHttpRequest, pk: int, direction: str) -> HttpResponse:
    require(request, "capacity.manage")
    if direction not in ("up", "down"):
        raise Http404("No such direction.")
    org = org_of(request)
    with transaction.atomic():
        # Renumber 0..n-1 in display order, then swap with the neighbour: stable even when
        # several pools share an order value.
        pools = list(
            CapacityPool.objects.select_for_update().filter(org=org).order_by("order", "name", "id")
        )
        index = next((i for i, p in enumerate(pools) if p.pk == pk), None)
        if index is None:
            raise Http404("No such pool.")
        other = index - 1 if direction == "up" else index + 1
        if 0 <= other < len(pools):
            pools[index], pools[other] = pools[other], pools[index]
            for position, pool in enumerate(pools):
                if pool.order != position:
                    CapacityPool.objects.filter(pk=pool.pk).update(order=position)
            moved = pools[other]
            audit.record(
                org=org,
                action="pool.changed",
                target=str(moved),
                actor=request.user,
                channel=Channel.WEB,
                detail={"order": {"before": index, "after": other}},
            )
    return _table_response(request)


@capacity_view
@require_POST
def pool_enable(request: HtmxHttpRequest, pk: int, enable: bool) -> HttpResponse:
    require(request, "capacity.manage")
    pool = get_for_org(request, CapacityPool.objects.all(), pk=pk)
    # Conditional: a double click (or two admins) changes it once and audits it once.
    changed = CapacityPool.objects.filter(pk=pool.pk, enabled=not enable).update(enabled=enable)
    if changed:
        audit.record(
            org=pool.org,
            action="pool.enabled" if enable else "pool.disabled",
            target=str(pool),
            actor=request.user,
            channel=Channel.WEB,
        )
    if request.POST.get("from") == "detail" and not request.htmx:
        return redirect("pool_detail", pk=pool.pk)
    if request.POST.get("from") == "detail":
        return HttpResponseClientRedirect(reverse("pool_detail", args=[pool.pk]))
    return _table_response(request)


@capacity_view
@require_http_methods(["GET", "POST"])
def pool_delete(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """POST deletes; GET is the confirmation page for browsers without JavaScript."""
    require(request, "capacity.manage")
    pool = get_for_org(request, with_session_counts(CapacityPool.objects.all()), pk=pk)
    refusal = _delete_refusal(pool)
    if request.method == "GET":
        if refusal:
            return _table_response(request, notice=refusal, status=409)
        return render(
            request,
            "rensei/confirm.html",
            {
                "title": f"Delete pool {pool.name}?",
                "question": f"Delete pool {pool.name}? This cannot be undone.",
                "action": reverse("pool_delete", args=[pool.pk]),
                "button": "Delete pool",
                "cancel": reverse("capacity"),
            },
        )
    if not refusal:
        try:
            with transaction.atomic():
                snapshot = _snapshot(pool)
                name = str(pool)
                pool.delete()
                audit.record(
                    org=org_of(request),
                    action="pool.deleted",
                    target=name,
                    actor=request.user,
                    channel=Channel.WEB,
                    detail=snapshot,
                )
        except ProtectedError:
            refusal = (
                f"Pool {pool.name} is still referenced by sessions or cost records, so it "
                "cannot be deleted. Disable it instead."
            )
    if refusal:
        return _table_response(request, notice=refusal, status=409)
    if request.htmx:
        if request.POST.get("from") == "detail":
            return HttpResponseClientRedirect(reverse("capacity"))
        return _table_response(request, notice=f"Pool {pool.name} deleted.")
    messages.success(request, f"Pool {pool.name} deleted.")
    return redirect("capacity")


def _delete_refusal(pool: CapacityPool) -> str:
    live = getattr(pool, "live_count", 0)
    total = getattr(pool, "session_count", 0)
    if live:
        return (
            f"Pool {pool.name} has {live} live session{'s' if live != 1 else ''}, so it cannot "
            "be deleted. Disable it instead: dispatch stops using it and the sessions finish."
        )
    # Sessions and ledger rows keep pointing at their pool (the ledger is append-only).
    if total or pool.cost_events.exists():  # type: ignore[attr-defined]
        return (
            f"Pool {pool.name} has session history and cost records that refer to it, so it "
            "cannot be deleted. Disable it instead."
        )
    return ""


# -- new pool ----------------------------------------------------------------------------


@capacity_view
@require_GET
def pool_new(request: HtmxHttpRequest) -> HttpResponse:
    cards = [_provider_info(kind) for kind in PROVIDERS if kind in FORMS]
    return render(
        request,
        "pools/new.html",
        {"cards": cards, "can_manage": _can_manage(request), "title": "New pool", **_reference()},
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
                    detail=_snapshot(pool),
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
        "can_manage": _can_manage(request),
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
        before = _snapshot(pool)
        form = form_class(request.POST, instance=pool, org=pool.org)
        if form.is_valid():
            with transaction.atomic():
                pool = form.save()
                after = _snapshot(pool)
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
    elif form_class is not None and _can_manage(request):
        form = form_class(instance=pool, org=pool.org)

    checks = Paginator(pool.health_checks.select_related("requested_by"), HISTORY_PAGE_SIZE)
    sessions = pool.sessions.order_by("-created_at", "-id")[:RECENT_SESSIONS]  # type: ignore[attr-defined]
    latest = pool.health_checks.first()
    context = {
        "pool": pool,
        "form": form,
        "kind": pool.provider,
        "can_manage": _can_manage(request),
        "title": f"Pool {pool.name}",
        "action": reverse("pool_detail", args=[pool.pk]),
        "config_json": json.dumps(_config_dict(pool.config), indent=2, ensure_ascii=False),
        "provides": sorted(effective_provides(pool)),
        "override": list(pool.runtime_provides or []),
        "checks_page": checks.get_page(request.GET.get("checks")),
        "latest_check": latest,
        "sessions": list(sessions.values("id", "state", "created_at")),
        "base_warning": _form_is_base(form)
        if form is not None and form.is_bound
        else pool.provider == "e2b" and schema.is_base_template(pool.config or {}),
        "delete_refusal": _delete_refusal(pool),
        **_reference(),
    }
    if pool.provider in PROVIDERS:
        context["provider"] = _provider_info(pool.provider)
    if request.htmx and request.method == "POST":
        return render(request, "pools/detail.html#pool-form", context)
    return render(request, "pools/detail.html", context, status=status)


# -- health checks -----------------------------------------------------------------------


@capacity_view
@require_POST
def pool_check(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    require(request, "capacity.manage")
    pool = get_for_org(request, CapacityPool.objects.select_related("org"), pk=pk)
    with transaction.atomic():
        check = start_check(pool, user=request.user, channel=Channel.WEB)
        cast(Any, check_pool).delay_on_commit(check.pk)
    where = request.POST.get("in", "row")
    if request.htmx:
        return _check_partial(request, pool, check, where)
    return redirect("pool_detail", pk=pool.pk)


@capacity_view
@require_GET
def pool_health(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The pool's health (table cell or detail panel); htmx polls it while a check runs."""
    pool = get_for_org(request, CapacityPool.objects.all(), pk=pk)
    check = pool.health_checks.first()
    return _check_partial(request, pool, check, request.GET.get("in", "row"))


def _check_partial(
    request: HtmxHttpRequest, pool: CapacityPool, check: PoolHealthCheck | None, where: str
) -> HttpResponse:
    context = {"pool": pool, "check": check, "can_manage": _can_manage(request)}
    name = "pools/detail.html#check-panel" if where == "detail" else "pools/capacity.html#health"
    response = render(request, name, context)
    if check is None or check.finished:
        # 286: htmx swaps this final state in and stops polling.
        return HttpResponseStopPolling(response.content)
    return response
