"""The foundation: login everywhere, the role matrix, deploy checks, a real worker."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver

from rensei.models import Role
from tests.factories import MembershipFactory
from tests.worker import WorkerProcess

# Pages reachable without logging in, each for a stated reason.
PUBLIC = {
    "login",  # the way in
    "logout",  # logging out when already out is harmless
    "api_openapi",  # the API's published description, no data
    "favicon",  # the icon browsers fetch before anyone logs in
    "healthz",  # probes: up or down, nothing else (tests/test_operations.py)
    "readyz",
    "metrics",  # its own bearer token (tests/test_operations.py)
}


def _walk(patterns: list, prefix: str = "") -> list[tuple[str, str | None, URLPattern]]:  # type: ignore[type-arg]
    found = []
    for p in patterns:
        if isinstance(p, URLResolver):
            if getattr(p, "namespace", None) == "admin" or "admin" in str(p.pattern):
                continue  # Django's admin has its own staff login, tested separately.
            found += _walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            found.append((prefix + str(p.pattern), p.name, p))
    return found


def _concrete(route: str) -> str:
    import re

    def fill(m: re.Match[str]) -> str:
        conv = m.group(1) or "str"
        return {"int": "999999", "uuid": str(uuid.uuid4()), "slug": "x-1", "path": "x"}.get(
            conv, "X-1"
        )

    url = re.sub(r"<(?:(\w+):)?\w+>", fill, route)
    return "/" + url.lstrip("^").rstrip("$")


def test_every_url_needs_login(client, db):  # type: ignore[no-untyped-def]
    routes = _walk(get_resolver().url_patterns)
    assert len(routes) >= 7
    checked = 0
    for route, name, _ in routes:
        if name in PUBLIC:
            continue
        url = _concrete(route)
        for method in ("get", "post"):
            resp = getattr(client, method)(url)
            if url.startswith("/api/"):
                assert resp.status_code == 401, f"{method} {url} answered {resp.status_code}"
            else:
                assert resp.status_code == 302, f"{method} {url} answered {resp.status_code}"
                assert resp["Location"].startswith(
                    settings.LOGIN_URL if "/" in settings.LOGIN_URL else "/accounts/login/"
                ), url
        checked += 1
    assert checked >= 6


def test_admin_needs_staff(client_as, alice):  # type: ignore[no-untyped-def]
    resp = client_as(alice).get("/admin/")
    assert resp.status_code == 302 and "/admin/login/" in resp["Location"]


def test_login_page_and_login(csrf_client, alice):  # type: ignore[no-untyped-def]
    page = csrf_client.get("/accounts/login/")
    assert page.status_code == 200
    assert b"Log in to Rensei" in page.content
    resp = csrf_client.post("/accounts/login/", {"username": "alice", "password": "pw-alice"})
    assert resp.status_code == 302
    home = csrf_client.get("/")
    assert home.status_code == 200 and b"Org A" in home.content


def test_login_post_without_csrf_is_refused(csrf_client, alice):  # type: ignore[no-untyped-def]
    resp = csrf_client.post(
        "/accounts/login/", {"username": "alice", "password": "pw-alice"}, csrf=False
    )
    assert resp.status_code == 403


NAV = ["/", "/sessions/", "/analytics/cost-per-issue/", "/billing/ledger/"]
SETTINGS = ["/settings/integrations/", "/settings/api-tokens/", "/settings/execution/capacity/"]


def test_admin_clicks_through_every_nav_entry(client_as, alice):  # type: ignore[no-untyped-def]
    c = client_as(alice)
    home = c.get("/").content.decode()
    for url in NAV + SETTINGS:
        assert f'href="{url}"' in home, f"nav lacks {url}"
        assert c.get(url).status_code == 200, url


def test_finance_gets_403_on_settings_and_no_settings_nav(client_as, fiona):  # type: ignore[no-untyped-def]
    c = client_as(fiona)
    home = c.get("/").content.decode()
    for url in SETTINGS:
        assert f'href="{url}"' not in home
        assert c.get(url).status_code == 403, url
    assert c.get("/analytics/cost-per-issue/").status_code == 200
    assert c.get("/billing/ledger/").status_code == 200


def test_member_reads_capacity_but_not_integrations(client_as, bob):  # type: ignore[no-untyped-def]
    c = client_as(bob)
    assert c.get("/settings/execution/capacity/").status_code == 200
    assert c.get("/settings/integrations/").status_code == 403
    assert c.get("/billing/ledger/").status_code == 403


def test_org_switch_to_foreign_org_is_404(client_as, charlie, org_a):  # type: ignore[no-untyped-def]
    c = client_as(charlie)
    assert c.post("/org/switch/", {"org": org_a.pk}).status_code == 404
    assert c.post("/org/switch/", {"org": "nonsense"}).status_code == 404


def test_org_switcher_changes_active_org(client_as, alice, org_b):  # type: ignore[no-untyped-def]
    MembershipFactory.create(user=alice, org=org_b, role=Role.FINANCE)
    c = client_as(alice)
    assert c.get("/settings/integrations/").status_code in (200, 403)
    resp = c.post("/org/switch/", {"org": org_b.pk, "next": "https://evil.example/"})
    assert resp.status_code == 302 and resp["Location"] == "/"
    # As finance in org B, Settings is now forbidden.
    assert c.get("/settings/integrations/").status_code == 403
    assert "Org B" in c.get("/").content.decode()


def test_user_without_org_sees_plain_page(client_as, db):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    loner = get_user_model().objects.create_user("loner", password="x")
    resp = client_as(loner).get("/")
    assert resp.status_code == 403
    assert b"not a member of any organisation" in resp.content


def test_check_deploy_is_clean_with_production_settings(tmp_path):  # type: ignore[no-untyped-def]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DEBUG", "SECURE_", "SESSION_", "CSRF_"))
    }
    env.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": "x" * 20 + uuid.uuid4().hex + uuid.uuid4().hex,
            "ALLOWED_HOSTS": "rensei.example.com",
            "RENSEI_ENCRYPTION_KEYS": "5f3oMWgSuh5VtPfqKSXIOaP_OVD8hDmRqJq4VK2BC5M=",
            "RENSEI_VAR_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "rensei.settings",
        }
    )
    # As after collectstatic (the deploy check asks for its manifest: rensei.E002).
    (tmp_path / "staticfiles").mkdir(exist_ok=True)
    (tmp_path / "staticfiles" / "staticfiles.json").write_text('{"paths": {}, "version": "1.1"}')
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_secret_key_required_in_production(tmp_path):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    env.update({"DEBUG": "false", "RENSEI_VAR_DIR": str(tmp_path)})
    out = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    assert "SECRET_KEY must be set" in out.stderr


@pytest.mark.django_db(transaction=True)
def test_real_worker_executes_a_task_on_the_configured_broker():  # type: ignore[no-untyped-def]
    from rensei.tasks import ping

    worker = WorkerProcess().start(wait=False)
    try:
        token = uuid.uuid4().hex
        answer = ping.apply_async(args=(token,), queue=worker.queue).get(timeout=60)
        assert answer["token"] == token
        assert answer["pid"] != os.getpid()  # it ran in the worker, not here
        assert "ready" in worker.log()
    finally:
        worker.stop()
