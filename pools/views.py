"""Settings → Execution → Capacity: the pools table (order, enable, delete) and health checks.

The pool pages (new pool, one pool) are ``pools.views_pool``. Admins (``capacity.manage``)
change things; members (``capacity.view``) read every page; finance sees none of it. Every
GET here needs ``capacity.view`` and every POST ``capacity.manage``. htmx requests get the
changed partial back; plain form posts get a redirect (or the page with the error and a 4xx).
"""

from __future__ import annotations

import hashlib
from typing import Any, cast

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import ProtectedError, QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling, reswap, retarget

from pools.models import CapacityPool, PoolHealthCheck, with_session_counts
from pools.tasks import check_pool, start_check
from pools.view_helpers import (
    HtmxHttpRequest,
    can_manage,
    capacity_view,
    delete_refusal,
    pool_snapshot,
)
from rensei import audit
from rensei.access import get_for_org, org_of, require
from rensei.models import Channel, Organization

PAGE_SIZE = 50


def _pools(org: Organization) -> QuerySet[CapacityPool]:
    return with_session_counts(CapacityPool.objects.filter(org=org)).order_by("order", "name", "id")


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
        "can_manage": can_manage(request),
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
    refusal = delete_refusal(pool)
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
                snapshot = pool_snapshot(pool)
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
    context = {"pool": pool, "check": check, "can_manage": can_manage(request)}
    name = "pools/detail.html#check-panel" if where == "detail" else "pools/capacity.html#health"
    response = render(request, name, context)
    if check is None or check.finished:
        # 286: htmx swaps this final state in and stops polling.
        return HttpResponseStopPolling(response.content)
    return response
