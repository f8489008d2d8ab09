"""Every URL pattern of the product, and how to fill its parameters with one org's objects.

``product_routes()`` walks the URLconf (``get_resolver()``), so a new view shows up here by
itself. ``ROUTE_ARGS`` says, for each parameterised route, which object of an org fills it;
a route missing from it fails the suites that use this module with a message naming it.
``build_world(org, admin, tag)`` makes one of every object a route can point at, with names
that carry ``tag`` so a page or an export holding one of them is easy to spot.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from billing.closing import close_month
from billing.models import CostEvent, Discrepancy, MonthClose, ReconciliationRun
from budgets.models import Budget, BudgetState
from events import endpoints as webhook_endpoints
from events.models import Delivery, WebhookEndpoint
from events.outbox import emit
from events.publish import publish
from events.types import POOL_HEALTH_CHANGED
from pools.config import validate_e2b_config
from pools.models import CapacityPool, HealthStatus, PoolHealthCheck
from rensei import credentials, tokens
from rensei.models import ApiToken, AuditEvent, Channel, Credential, Organization
from sessions.intervals import close_open_interval, open_interval
from sessions.models import CommandRun, CommandRunState, Issue, Session, SessionState
from sessions.state import record_created
from tests.factories import CapacityPoolFactory, CommandRunFactory, IssueFactory, SessionFactory
from tests.sessions_engine.conftest import ensure_rate_cards

CLOSED_MONTH = date(2024, 1, 1)  # every world's org has closed January 2024
PARAM_RE = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


@dataclass(frozen=True)
class Route:
    route: str  # e.g. "sessions/<int:pk>/exec/<int:run_id>/"
    name: str
    callback: Callable[..., Any]
    defaults: dict[str, Any]

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(m.group("name") for m in PARAM_RE.finditer(self.route))

    @property
    def is_api(self) -> bool:
        return self.route.startswith("api/")

    def key(self) -> str:
        """Unique per pattern (some views share a name-less pattern or a name)."""
        return self.name or self.route


def _walk(patterns: list[Any], prefix: str = "") -> list[Route]:
    out: list[Route] = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.app_name == "admin":
                continue  # the Django admin: staff-only, covered by the admin walks
            out += _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            out.append(
                Route(
                    prefix + str(entry.pattern),
                    entry.name or "",
                    entry.callback,
                    dict(entry.default_args),
                )
            )
    return out


def product_routes() -> list[Route]:
    return _walk(get_resolver().url_patterns)


@dataclass
class World:
    """One org with one of everything a URL can name."""

    org: Organization
    tag: str
    admin: Any
    token: ApiToken
    token_plaintext: str
    credential: Credential
    pool: CapacityPool
    issue: Issue
    session: Session  # running, with a sandbox id and a closed + an open interval
    paused_session: Session
    run: CommandRun
    cost_event: CostEvent
    check: PoolHealthCheck
    webhook: WebhookEndpoint
    delivery: Delivery  # the webhook's, of an event of this org
    budget: Budget  # the org's monthly budget, blocking
    recon_run: ReconciliationRun  # a reconciliation of today, with one unsettled finding
    finding: Discrepancy
    # Strings that identify this org's rows on a page or in an export.
    markers: list[str] = field(default_factory=list)


def _session(org: Organization, pool: CapacityPool, issue: Issue, state: str, sandbox: str):  # type: ignore[no-untyped-def]
    session = SessionFactory.create(
        org=org,
        issue=issue,
        pool=pool,
        state=state,
        started=True,
        sandbox_id=sandbox,
        runtime_kinds=["npm"],
        requirement_kinds=["git"],
        started_at=timezone.now() - timedelta(hours=1),
    )
    record_created(session, note="made by the reliability suite")
    return session


def build_world(org: Organization, admin: Any, tag: str) -> World:
    """Objects of ``org`` whose names all contain ``tag`` (e.g. ``ORGA``)."""
    ensure_rate_cards()
    token, plaintext = tokens.create_token(
        org, f"token-{tag}", admin, Channel.WEB, scopes=tokens.SCOPES
    )
    credential = credentials.set_credential(org, "e2b", f"e2b_key_{tag}_wxyz", admin, Channel.WEB)
    pool = CapacityPoolFactory.create(
        org=org,
        name=f"pool-{tag}",
        config=validate_e2b_config({"templateId": f"tpl-{tag.lower()}"}),
    )
    issue = IssueFactory.create(org=org, key=f"ISS-{tag}", title=f"Issue title {tag}")
    session = _session(org, pool, issue, SessionState.RUNNING, f"sbx-{tag.lower()}-running")
    paused = _session(org, pool, issue, SessionState.PAUSED, f"sbx-{tag.lower()}-paused")
    start = timezone.now() - timedelta(minutes=30)
    open_interval(session, start)
    interval = close_open_interval(session, start + timedelta(minutes=5), "pause")
    assert interval is not None
    open_interval(session, start + timedelta(minutes=10))
    cost_event = CostEvent.objects.get(session=session)
    run = CommandRunFactory.create(
        session=session,
        command=f"echo command-{tag}",
        state=CommandRunState.DONE,
        exit_code=0,
        stdout=f"output-{tag}\n",
        created_by=admin,
    )
    check = PoolHealthCheck.objects.create(
        pool=pool,
        status=HealthStatus.PASSING,
        output=f"health-{tag}",
        finished_at=timezone.now(),
        requested_by=admin,
    )
    webhook, _secret = webhook_endpoints.create_endpoint(
        org, url=f"http://127.0.0.1:9/hook-{tag}", actor=admin, channel=Channel.WEB
    )
    emit(org.pk, POOL_HEALTH_CHANGED, {"pool": {"name": f"pool-{tag}"}})
    publish()
    delivery = Delivery.objects.get(endpoint=webhook)
    budget = Budget.objects.create(
        org=org, scope="org", amount_usd=Decimal("1234.56"), enforcement="block"
    )
    recon_run = ReconciliationRun.objects.create(
        org=org, day=timezone.now().date(), ran_at=timezone.now()
    )
    finding = Discrepancy.objects.create(
        run=recon_run,
        org=org,
        day=recon_run.day,
        kind="ghost",
        session=session,
        sandbox_id=f"sbx-{tag.lower()}-running",
        seconds=Decimal("-60"),
        amount=Decimal("-0.01"),
        note=f"finding-{tag}",
    )
    close_month(org, CLOSED_MONTH, actor=admin)
    markers = [
        f"finding-{tag}",
        f"hook-{tag}",
        f"token-{tag}",
        token.prefix,
        f"pool-{tag}",
        f"tpl-{tag.lower()}",
        f"ISS-{tag}",
        f"Issue title {tag}",
        f"sbx-{tag.lower()}",
        f"command-{tag}",
        f"output-{tag}",
        f"health-{tag}",
    ]
    return World(
        org=org,
        tag=tag,
        admin=admin,
        token=token,
        token_plaintext=plaintext,
        credential=credential,
        pool=pool,
        issue=issue,
        session=session,
        paused_session=paused,
        run=run,
        cost_event=cost_event,
        check=check,
        webhook=webhook,
        delivery=delivery,
        budget=budget,
        recon_run=recon_run,
        finding=finding,
        markers=markers,
    )


# How each parameterised route is filled with an org's objects. Routes whose parameters are
# not objects of an org (a provider kind, a catch-all path) are in OWN_ORG_ROUTES instead:
# they act on the caller's own org whatever the URL says.
ROUTE_ARGS: dict[str, Callable[[World], dict[str, Any]]] = {
    "api_token_revoke": lambda w: {"pk": w.token.pk},
    "pool_detail": lambda w: {"pk": w.pool.pk},
    "pool_move": lambda w: {"pk": w.pool.pk, "direction": "down"},
    "pool_enable": lambda w: {"pk": w.pool.pk},
    "pool_disable": lambda w: {"pk": w.pool.pk},
    "pool_delete": lambda w: {"pk": w.pool.pk},
    "pool_check": lambda w: {"pk": w.pool.pk},
    "pool_health": lambda w: {"pk": w.pool.pk},
    "session_detail": lambda w: {"pk": w.session.pk},
    "session_status": lambda w: {"pk": w.session.pk},
    "session_pause": lambda w: {"pk": w.session.pk},
    "session_resume": lambda w: {"pk": w.paused_session.pk},
    "session_terminate": lambda w: {"pk": w.session.pk},
    "session_exec": lambda w: {"pk": w.session.pk},
    "session_exec_run": lambda w: {"pk": w.session.pk, "run_id": w.run.pk},
    "session_metrics": lambda w: {"pk": w.session.pk},
    "session_log": lambda w: {"pk": w.session.pk},
    "session_files": lambda w: {"pk": w.session.pk},
    "session_file_download": lambda w: {"pk": w.session.pk},
    "issue_cost": lambda w: {"key": w.issue.key},
    "api_session": lambda w: {"session_id": w.session.pk},
    "api_session_pause": lambda w: {"session_id": w.session.pk},
    "api_session_resume": lambda w: {"session_id": w.paused_session.pk},
    "api_session_terminate": lambda w: {"session_id": w.session.pk},
    "api_session_exec": lambda w: {"session_id": w.session.pk},
    "api_session_exec_run": lambda w: {"session_id": w.session.pk, "run_id": w.run.pk},
    "webhook_detail": lambda w: {"pk": w.webhook.pk},
    "webhook_log": lambda w: {"pk": w.webhook.pk},
    "webhook_rotate": lambda w: {"pk": w.webhook.pk},
    "webhook_test": lambda w: {"pk": w.webhook.pk},
    "webhook_enable": lambda w: {"pk": w.webhook.pk},
    "webhook_disable": lambda w: {"pk": w.webhook.pk},
    "webhook_delete": lambda w: {"pk": w.webhook.pk},
    "webhook_redeliver": lambda w: {"pk": w.webhook.pk, "delivery_id": w.delivery.pk},
    "api_webhook": lambda w: {"webhook_id": w.webhook.pk},
    "api_webhook_rotate": lambda w: {"webhook_id": w.webhook.pk},
    "api_webhook_test": lambda w: {"webhook_id": w.webhook.pk},
    "api_webhook_deliveries": lambda w: {"webhook_id": w.webhook.pk},
    "budget_detail": lambda w: {"pk": w.budget.pk},
    "budget_release": lambda w: {"pk": w.budget.pk},
    "budget_delete": lambda w: {"pk": w.budget.pk},
    "reconciliation_run": lambda w: {"pk": w.recon_run.pk},
    "reconciliation_settle": lambda w: {"pk": w.finding.pk},
    "api_webhook_redeliver": lambda w: {
        "webhook_id": w.webhook.pk,
        "delivery_id": w.delivery.pk,
    },
}
OWN_ORG_ROUTES: dict[str, dict[str, Any]] = {
    "integration_key": {"provider": "e2b"},
    "integration_remove": {"provider": "e2b"},
    "integration_test": {"provider": "e2b"},
    "pool_new_kind": {"kind": "e2b"},
    "api_not_found": {"unknown": "no/such/route"},
    # Months are the caller's own org's: a close or reopen acts on that org only.
    "billing_month_close": {"month": "2024-02"},
    "billing_month_reopen": {"month": "2024-01"},
}


def snapshot(world: World) -> dict[str, Any]:
    """Everything of an org that a stray request could change."""
    return {
        "sessions": sorted(
            Session.objects.filter(org=world.org).values_list("pk", "state", "sandbox_id")
        ),
        "pools": sorted(world.org.pools.values_list("pk", "name", "enabled", "order")),
        "tokens": sorted(
            ApiToken.objects.filter(org=world.org).values_list("pk", "revoked_at", "name")
        ),
        "credentials": sorted(
            Credential.objects.filter(org=world.org).values_list("pk", "secret_encrypted")
        ),
        "runs": CommandRun.objects.filter(session__org=world.org).count(),
        "cost_events": CostEvent.objects.filter(org=world.org).count(),
        "audit": AuditEvent.objects.filter(org=world.org).count(),
        "webhooks": sorted(
            WebhookEndpoint.objects.filter(org=world.org).values_list(
                "pk", "url", "enabled", "secret_encrypted"
            )
        ),
        "deliveries": sorted(
            Delivery.objects.filter(endpoint__org=world.org).values_list("pk", "state")
        ),
        "budgets": sorted(
            Budget.objects.filter(org=world.org).values_list(
                "pk", "amount_usd", "enforcement", "thresholds"
            )
        ),
        "month_closes": sorted(
            MonthClose.objects.filter(org=world.org).values_list("pk", "month", "reopened_at")
        ),
        "findings": sorted(
            Discrepancy.objects.filter(org=world.org).values_list("pk", "settled_at")
        ),
        "budget_states": sorted(
            BudgetState.objects.filter(budget__org=world.org).values_list(
                "pk", "enforced_at", "released_at"
            )
        ),
    }


def route_kwargs(route: Route, world: World) -> dict[str, Any]:
    """The URL kwargs of ``route`` pointing at ``world``'s objects (or AssertionError)."""
    if not route.params:
        return {}
    builder = ROUTE_ARGS.get(route.name)
    if builder is not None:
        return builder(world)
    if route.name in OWN_ORG_ROUTES:
        return dict(OWN_ORG_ROUTES[route.name])
    raise AssertionError(
        f"URL pattern {route.route!r} (name {route.name!r}) takes {route.params} but "
        "tests/reliability/routes.py ROUTE_ARGS has no case for it: add how to fill it with "
        "an org's object (or list it in OWN_ORG_ROUTES when it names no org object)."
    )


def url_of(route: Route, world: World) -> str:
    kwargs = route_kwargs(route, world)
    return reverse(route.name, kwargs=kwargs)


def uncovered(routes: list[Route]) -> list[str]:
    return [
        f"{r.route} ({r.name or 'unnamed'})"
        for r in routes
        if r.params and r.name not in ROUTE_ARGS and r.name not in OWN_ORG_ROUTES
    ]
