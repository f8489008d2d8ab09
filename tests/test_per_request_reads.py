"""What every page pays before its own work: the user's memberships are read once."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from rensei.models import Organization, Role
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def page_queries(client: Any, url: str) -> tuple[str, list[str]]:
    client.get(url)  # warm: the login session
    with CaptureQueriesContext(connection) as ctx:
        resp = client.get(url)
    assert resp.status_code == 200
    return resp.content.decode(), [q["sql"] for q in ctx.captured_queries]


def reading(table: str, sqls: list[str]) -> list[str]:
    return [sql for sql in sqls if f'FROM "{table}"' in sql]


@pytest.mark.parametrize("url", ["/", "/sessions/", "/settings/budgets/"])
def test_the_memberships_are_read_once_per_page(
    client_as: Any, alice: Any, org_a: Organization, org_b: Organization, url: str
) -> None:
    MembershipFactory.create(user=alice, org=org_b, role=Role.FINANCE)  # for the switcher
    body, sqls = page_queries(client_as(alice), url)
    assert len(reading("rensei_membership", sqls)) == 1, sqls
    # The switcher still lists both orgs by name, the active one selected.
    assert f'<option value="{org_a.pk}" selected>Org A (Admin)</option>' in body
    assert f'<option value="{org_b.pk}">Org B (Finance)</option>' in body


def test_the_switched_org_is_the_active_one(
    client_as: Any, alice: Any, org_b: Organization
) -> None:
    MembershipFactory.create(user=alice, org=org_b, role=Role.FINANCE)
    client = client_as(alice)
    client.post("/org/switch/", {"org": org_b.pk, "next": "/"})
    body, sqls = page_queries(client, "/")
    assert len(reading("rensei_membership", sqls)) == 1
    assert f'<option value="{org_b.pk}" selected>Org B (Finance)</option>' in body
