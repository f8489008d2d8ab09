"""B2: the SQL queries each list page runs with 10 rows and with 10,000 rows: must be equal.

Two organisations, ``b2-10`` and ``b2-10000``, each with N of everything a list shows:
N sessions (``bench.seed_costs``: N issues, one ledger row per session, last 20 days), N capacity
pools, N API tokens and N audit events, all made by the org's admin, plus one E2B key. Each
page is requested once to warm up (the first request also touches the login session), then
once with the queries captured, through Django's test client in this process.
"""

from __future__ import annotations

import hashlib
from typing import Any

from bench.common import Context, log, member

SIZES = (10, 10_000)
PAGES = {
    "dashboard": "/",
    "sessions list": "/sessions/",
    "capacity": "/settings/execution/capacity/",
    "cost per issue": "/analytics/cost-per-issue/",
    "ledger": "/billing/ledger/",
    "integrations": "/settings/integrations/",
    "api tokens": "/settings/api-tokens/",
    "API sessions list": "/api/v1/sessions?limit=100",
}


def build(n: int) -> tuple[Any, str]:
    """The org with n rows of everything; returns (admin user, API token)."""
    from bench.seed_costs import seed_costs
    from pools.models import CapacityPool
    from rensei.credentials import set_credential
    from rensei.models import ApiToken, AuditEvent, Channel, Organization, Role
    from rensei.tokens import create_token

    slug = f"b2-{n}"
    existing = Organization.objects.filter(slug=slug).first()
    if existing is not None:  # --reuse-db
        admin = member(existing, f"{slug}-admin", Role.ADMIN)
        return admin, create_token(existing, "bench", admin, Channel.CLI)[1]
    seed_costs(
        events=n,
        issues=n,
        sessions=n,
        days=20,
        pools=1,
        org=slug,
        prefix="B2",
        force=True,
    )
    org = Organization.objects.get(slug=slug)
    admin = member(org, f"{slug}-admin", Role.ADMIN)
    CapacityPool.objects.bulk_create(
        [
            CapacityPool(org=org, name=f"pool-{i}", order=i, config={"templateId": "base"})
            for i in range(n - 1)
        ],
        batch_size=2_000,
    )
    ApiToken.objects.bulk_create(
        [
            ApiToken(
                org=org,
                name=f"token {i}",
                prefix=f"rsn_{i:08d}"[:16],
                token_hash=hashlib.sha256(f"{slug}-{i}".encode()).hexdigest(),
                created_by=admin,
            )
            for i in range(n - 1)
        ],
        batch_size=2_000,
    )
    AuditEvent.objects.bulk_create(
        [
            AuditEvent(
                org=org,
                actor=admin,
                actor_label=admin.username,
                action="pool.changed",
                target=f"pool-{i}",
                channel=Channel.WEB,
            )
            for i in range(n)
        ],
        batch_size=2_000,
    )
    set_credential(org, "e2b", "e2b_bench_0000000000000000", admin, Channel.CLI)
    _, token = create_token(org, "bench", admin, Channel.CLI)
    return admin, token


def count_queries(client: Any, url: str, **headers: str) -> tuple[int, int, int]:
    """(queries, status, rows shown: table rows of a page, results of the API)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(url, **headers)  # warm-up
    with CaptureQueriesContext(connection) as captured:
        resp = client.get(url, **headers)
    if url.startswith("/api/"):
        shown = len(resp.json()["results"])
    else:
        shown = resp.content.decode().count("<tr")
    return len(captured.captured_queries), resp.status_code, shown


def run(ctx: Context) -> dict[str, Any]:
    from django.test import Client

    counts: dict[str, dict[str, Any]] = {name: {} for name in PAGES}
    shown: dict[str, dict[str, int]] = {name: {} for name in PAGES}
    for n in SIZES:
        log(f"  building the {n:,}-row org …")
        admin, token = build(n)
        client = Client()
        client.force_login(admin)
        for name, url in PAGES.items():
            headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if url.startswith("/api/") else {}
            queries, status, rows = count_queries(client, url, **headers)
            if status != 200:
                raise RuntimeError(f"{url} answered {status} with {n} rows")
            counts[name][str(n)] = queries
            shown[name][str(n)] = rows
    pages = [
        {
            "page": name,
            "url": PAGES[name],
            "queries_10": c["10"],
            "queries_10000": c["10000"],
            "equal": c["10"] == c["10000"],
            # Table rows in the HTML (header and total rows included) / API results: the
            # larger org really shows more rows, so equal counts mean something.
            "rows_shown_10": shown[name]["10"],
            "rows_shown_10000": shown[name]["10000"],
        }
        for name, c in counts.items()
    ]
    differ = [p["page"] for p in pages if not p["equal"]]
    for p in pages:
        flag = "" if p["equal"] else "  <-- grows with rows"
        log(f"  {p['page']:<18} {p['queries_10']:>3} / {p['queries_10000']:>3}{flag}")
    return {"pages": pages, "all_equal": not differ, "differ": differ}
