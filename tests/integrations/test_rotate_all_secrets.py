"""rotate_credentials re-encrypts every stored secret, not only provider keys: after the old
key is dropped, webhooks still sign, pools still hand their env to sandboxes, and live
sessions and commands still get theirs."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from events import endpoints
from events.delivery import signing_secrets
from events.models import WebhookEndpoint
from pools.models import CapacityPool
from rensei.credentials import resolve_credential, set_credential
from rensei.models import AuditEvent, Channel, Credential
from sessions.env import command_env, encrypt_env, session_env
from sessions.models import CommandRun, Session
from tests.factories import CapacityPoolFactory, CommandRunFactory, SessionFactory
from tests.integrations.conftest import fresh_key

POOL_ENV = {"GITHUB_TOKEN": "ghp_pool_value_0001", "MODE": "ci"}
SESSION_ENV = {"ANTHROPIC_API_KEY": "sk-session-value-0002"}
COMMAND_ENV = {"STEP_TOKEN": "cmd-value-0003"}


@pytest.fixture
def everything_under_k1(org_a, alice, use_ring) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    k1 = fresh_key()
    use_ring(k1)
    set_credential(org_a, "e2b", "e2b_secret_of_org_a_1111", alice, Channel.WEB)
    endpoint, first = endpoints.create_endpoint(
        org_a, url="https://hooks.example.com/in", channel=Channel.WEB
    )
    second = endpoints.rotate_secret(
        endpoint, overlap=timedelta(hours=2), actor=alice, channel=Channel.WEB
    )
    pool = CapacityPoolFactory(
        org=org_a, config={"templateId": "donmai-worker", "envVars": POOL_ENV}
    )
    session = SessionFactory(org=org_a, env=encrypt_env(SESSION_ENV))
    from rensei.crypto import encrypt

    run = CommandRunFactory(session=session, env_encrypted=encrypt(json.dumps(COMMAND_ENV)))
    return {
        "k1": k1,
        "endpoint": endpoint,
        "secrets": [second, first],
        "pool": pool,
        "session": session,
        "run": run,
    }


def _stored(model: Any, field: str) -> dict[Any, Any]:
    if model is CapacityPool:
        from django.db.models.fields.json import KeyTransform

        q = model.objects.annotate(s=KeyTransform("envVarsEncrypted", "config"))
        return dict(q.values_list("pk", "s"))
    return dict(model.objects.values_list("pk", field))


STORES = [
    (Credential, "secret_encrypted"),
    (WebhookEndpoint, "secret_encrypted"),
    (WebhookEndpoint, "previous_secret_encrypted"),
    (CapacityPool, "config"),
    (Session, "env"),
    (CommandRun, "env_encrypted"),
]


def test_every_secret_survives_dropping_the_old_key(everything_under_k1, org_a, use_ring):  # type: ignore[no-untyped-def]
    world = everything_under_k1
    before = {store: _stored(*store) for store in STORES}
    k2 = fresh_key()
    use_ring(k2, world["k1"])
    out = io.StringIO()
    call_command("rotate_credentials", stdout=out)
    text = out.getvalue()
    for figure in (
        "1 provider keys",
        "1 webhook signing secrets",
        "1 previous webhook signing secrets",
        "1 pool env values",
        "1 session env values",
        "1 command env values",
    ):
        assert figure in text
    for store in STORES:
        assert _stored(*store) != before[store], store  # every one written again

    use_ring(k2)  # the old key is dropped
    assert resolve_credential(org_a).secret == "e2b_secret_of_org_a_1111"
    endpoint = WebhookEndpoint.objects.get(pk=world["endpoint"].pk)
    assert signing_secrets(endpoint, timezone.now()) == world["secrets"]
    assert dict(CapacityPool.objects.get(pk=world["pool"].pk).config["envVars"]) == POOL_ENV
    assert session_env(Session.objects.get(pk=world["session"].pk)) == SESSION_ENV
    assert command_env(CommandRun.objects.get(pk=world["run"].pk)) == COMMAND_ENV
    detail = AuditEvent.objects.get(action="credentials.rotated").detail
    assert detail["count"] == 6 and detail["by_kind"]["pool env values"] == 1
    assert not any(v in json.dumps(detail) for v in [*POOL_ENV.values(), *world["secrets"]])


def test_one_unreadable_secret_of_any_kind_changes_nothing(everything_under_k1, use_ring):  # type: ignore[no-untyped-def]
    world = everything_under_k1
    k0 = fresh_key()
    use_ring(k0)  # a session env value written under a key the ring will not hold
    Session.objects.filter(pk=world["session"].pk).update(env=encrypt_env(SESSION_ENV))
    before = {store: _stored(*store) for store in STORES}
    use_ring(fresh_key(), world["k1"])
    with pytest.raises(CommandError) as caught:
        call_command("rotate_credentials", stdout=io.StringIO())
    message = str(caught.value)
    assert f"1 session env values (session #{world['session'].pk})" in message
    assert "Nothing was changed" in message
    assert not any(v in message for v in SESSION_ENV.values())
    assert {store: _stored(*store) for store in STORES} == before
    assert not AuditEvent.objects.filter(action="credentials.rotated").exists()


def test_a_row_changed_meanwhile_is_left_as_the_change_made_it(everything_under_k1, use_ring):  # type: ignore[no-untyped-def]
    """The writes are conditional on the value read: a session that ended (its env cleared)
    between the read and the write is not given its env back."""
    from rensei import sealed

    world = everything_under_k1
    column = next(c for c in sealed.columns() if c.model is Session)
    ((pk, stored),) = list(column.rows())
    use_ring(fresh_key(), world["k1"])
    new = column.rotated(stored)
    Session.objects.filter(pk=pk).update(env={})
    assert column.write(pk, stored, new) == 0
    assert Session.objects.get(pk=pk).env == {}
