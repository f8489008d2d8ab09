"""Schemathesis over the JSON API's own OpenAPI document, in process (WSGI).

Every operation gets generated requests that fit the schema and requests that do not, with
a valid token. Each response must not be a server error, must use a documented status code,
content type and headers, and must match the documented response schema; requests outside
the schema must be refused with a 4xx.

Two readings of the checks are the API's documented policy rather than faults, and are
counted instead of failing the run: an empty query parameter is read as absent (an unknown
one is a 400 naming it, as the document says), and a schema-valid body that names a pool the
org does not have is a 400 (the schema cannot know an org's pool names), as is a webhook URL
whose address is private or reserved (the document says so; a pattern cannot). Anything
else fails.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import given
from schemathesis import checks as st_checks
from schemathesis.generation import GenerationMode

from tests.reliability.figures import reproducible
from tests.reliability.routes import build_world

EXAMPLES = 40  # per operation and mode
# Every response check schemathesis has (``--checks all``), by name.
CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "ignored_auth",
)
CHECKS = [getattr(st_checks, name) for name in CHECK_NAMES]


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    policy: Counter[str] = field(default_factory=Counter)
    requests: int = 0


def _policy(report: str) -> str | None:
    """Which documented API policy a check failure is, or None for a real failure."""
    if "ST201" in report and "Invalid component" in report:
        lines = report.split("Invalid component", 1)[1].split("[", 1)[0]
        in_query = "in query" in lines or "query: violates" in lines
        elsewhere = any(where in lines for where in ("body", "header:", "in path"))
        if in_query and not elsewhere:
            return "lenient query string (an empty parameter is read as absent)"
    if "ST202" in report and "There is no pool named" in report:
        return "schema-valid body naming a pool the org does not have: 400"
    if "ST202" in report and "webhooks go to public addresses" in report:
        return "schema-valid webhook URL on a private or reserved address: 400"
    return None


@pytest.mark.django_db
def test_api_conforms_to_its_openapi_document(org_a, alice, figure, settings):  # type: ignore[no-untyped-def]
    fig = figure("api_schema")
    settings.E2B_API_URL = settings.E2B_SANDBOX_URL = "http://127.0.0.1:9"
    world = build_world(org_a, alice, "ORGA")
    # As Django's test client does: keep the test's connection (and its transaction) open
    # across requests.
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
        operations = [r.ok() for r in schema.get_all_operations()]  # type: ignore[union-attr]
        assert operations, "the document lists no operations"
        tally = Tally()
        auth = {"Authorization": f"Bearer {world.token_plaintext}"}
        # Random ids mostly miss; a third pass points every path at real rows of the org.
        real = {
            "session_id": world.session.pk,
            "run_id": world.run.pk,
            "webhook_id": world.webhook.pk,
            "delivery_id": world.delivery.pk,
        }
        for operation in operations:
            names = {p.name for p in operation.path_parameters}
            passes: list[tuple[GenerationMode, dict[str, int]]] = [
                (GenerationMode.POSITIVE, {}),
                (GenerationMode.NEGATIVE, {}),
            ]
            if names:
                passes.append((GenerationMode.POSITIVE, {n: real[n] for n in names}))
            for mode, ids in passes:
                _fuzz(operation, mode, ids, auth, tally)
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)

    fig.add(tally.requests)
    fig.unit = "requests"
    fig.details = {
        "operations": len(operations),
        "checks": ", ".join(CHECK_NAMES),
        "status codes seen": dict(sorted(tally.statuses.items())),
        "server errors": sum(n for code, n in tally.statuses.items() if code >= 500),
        "check failures": len(tally.failures),
        "documented policy, counted not failed": dict(tally.policy),
    }
    assert not tally.failures, "\n\n".join(tally.failures[:20])


def _fuzz(
    operation: Any, mode: GenerationMode, ids: dict[str, int], auth: dict[str, str], tally: Tally
) -> None:
    label = f"{operation.label} ({mode}{', real ids' if ids else ''})"

    # The token is fixed (negative cases never mangle it), so every case reaches the view.
    strategy = operation.as_strategy(
        generation_mode=mode, headers=auth, path_parameters=ids or None
    )

    @reproducible(EXAMPLES)
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call()
        tally.statuses[response.status_code] += 1
        tally.requests += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=auth)
        except (Exception, BaseExceptionGroup) as exc:  # the check's report names the failure
            report = str(exc)
            if response.status_code < 500 and (policy := _policy(report)):
                tally.policy[policy] += 1
            else:
                tally.failures.append(f"{label}: {report[:1500]}")

    run()
