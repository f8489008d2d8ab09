"""Who may do what on every session page and partial, and one org never sees another's."""

from __future__ import annotations

import pytest

from sessions import urls
from sessions.models import CommandRun, CommandRunState, Session, SessionState
from tests.factories import CommandRunFactory

pytestmark = pytest.mark.django_db

# Every sessions URL, how it is used, and the capability it needs.
READ = "sessions.view"
MANAGE = "sessions.manage"
ROUTES: dict[str, list[tuple[str, str, str]]] = {
    # name: [(method, url template, capability)]
    "dashboard": [("get", "/", READ)],
    "session_list": [("get", "/sessions/", READ)],
    "session_detail": [("get", "/sessions/{s}/", READ)],
    "session_status": [("get", "/sessions/{s}/status/", READ)],
    "session_new": [("get", "/sessions/new/", MANAGE), ("post", "/sessions/new/", MANAGE)],
    "session_bulk_terminate": [("post", "/sessions/bulk-terminate/", MANAGE)],
    "session_pause": [("post", "/sessions/{s}/pause/", MANAGE)],
    "session_resume": [("post", "/sessions/{s}/resume/", MANAGE)],
    "session_terminate": [("post", "/sessions/{s}/terminate/", MANAGE)],
    "session_exec": [("post", "/sessions/{s}/exec/", MANAGE)],
    "session_exec_run": [("get", "/sessions/{s}/exec/{r}/", MANAGE)],
    # Inside the box: metrics for every reader; logs and files (secrets) for admins only.
    "session_metrics": [("get", "/sessions/{s}/metrics/", READ)],
    "session_log": [("get", "/sessions/{s}/log/", MANAGE)],
    "session_files": [("get", "/sessions/{s}/files/", MANAGE)],
    # A refused path (400 for an admin): the roles and walls are checked before the path.
    "session_file_download": [("get", "/sessions/{s}/files/download/?path=..", MANAGE)],
}


def test_every_sessions_route_is_in_the_matrix() -> None:
    assert {p.name for p in urls.urlpatterns} == set(ROUTES)


@pytest.fixture
def target(session_factory):  # type: ignore[no-untyped-def]
    s = session_factory(SessionState.RUNNING)
    run = CommandRunFactory.create(session=s, command="id", state=CommandRunState.DONE)
    return s, run


def call(client, method: str, url: str, s: Session, run: CommandRun, htmx: bool = False):  # type: ignore[no-untyped-def]
    url = url.format(s=s.pk, r=run.pk)
    data = {"ids": [s.pk], "command": "id", "timeout": "600"} if method == "post" else None
    if htmx:
        return client.htmx(method, url, data)
    return getattr(client, method)(url, data or {})


@pytest.mark.parametrize("htmx", [False, True])
@pytest.mark.parametrize("person", ["bob", "fiona"])
def test_member_and_finance_read_but_never_act(people, client_as, target, person, htmx) -> None:  # type: ignore[no-untyped-def]
    s, run = target
    client = client_as(people[person])
    for routes in ROUTES.values():
        for method, url, capability in routes:
            resp = call(client, method, url, s, run, htmx)
            expected = {200, 286} if capability == READ else {403}
            assert resp.status_code in expected, (person, method, url, resp.status_code)
    s.refresh_from_db()
    assert s.state == SessionState.RUNNING
    assert not Session.objects.exclude(pk=s.pk).exists()
    assert CommandRun.objects.count() == 1


def test_admin_may_do_everything(people, client_as, target) -> None:  # type: ignore[no-untyped-def]
    s, run = target
    client = client_as(people["alice"])
    for name, routes in ROUTES.items():
        for method, url, _ in routes:
            if name in ("session_terminate", "session_bulk_terminate"):
                continue  # checked last: it ends the session the others need
            resp = call(client, method, url, s, run)
            assert resp.status_code in (200, 286, 302, 400), (method, url, resp.status_code)
            assert resp.status_code != 403
    resp = client.post(f"/sessions/{s.pk}/terminate/")
    assert resp.status_code == 302


@pytest.mark.parametrize("htmx", [False, True])
def test_outsider_gets_404_on_every_session_page_and_partial(  # type: ignore[no-untyped-def]
    people, client_as, target, htmx
) -> None:
    s, run = target
    client = client_as(people["charlie"])
    checked = 0
    for routes in ROUTES.values():
        for method, url, _ in routes:
            if "{s}" not in url:
                continue
            resp = call(client, method, url, s, run, htmx)
            assert resp.status_code == 404, (method, url, resp.status_code)
            checked += 1
    assert checked == 11
    s.refresh_from_db()
    assert s.state == SessionState.RUNNING and CommandRun.objects.count() == 1


def test_outsider_lists_and_dashboard_show_nothing_of_org_a(people, client_as, target) -> None:  # type: ignore[no-untyped-def]
    s, _ = target
    client = client_as(people["charlie"])
    for url in ("/", "/sessions/", f"/sessions/?issue={s.issue.key}"):
        html = client.get(url).content.decode()
        assert f'href="/sessions/{s.pk}/"' not in html and s.sandbox_id not in html
    # Bulk terminate with org A's ids changes nothing and counts nothing.
    resp = client.post("/sessions/bulk-terminate/", {"ids": [s.pk], "confirm": "yes"}, follow=True)
    assert "Tick the sessions to terminate first." in resp.content.decode()
    s.refresh_from_db()
    assert s.state == SessionState.RUNNING


def test_finance_sees_cost_member_does_not(people, client_as, target, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The billing partials are computed and included only for roles with billing.view.
    s, _ = target
    from sessions import views, views_detail

    seen: list[str] = []

    def spy(module, name: str):  # type: ignore[no-untyped-def]
        original = getattr(module, name)

        def wrapped(*args):  # type: ignore[no-untyped-def]
            seen.append(name)
            return original(*args)

        return wrapped

    for module, name in ((views, "cost_summary"), (views_detail, "session_cost")):
        monkeypatch.setattr(module, name, spy(module, name))
    bob, fiona = client_as(people["bob"]), client_as(people["fiona"])
    assert "Cost per Issue →" not in bob.get("/").content.decode()
    bob.get(f"/sessions/{s.pk}/")
    assert seen == []
    assert "Cost per Issue →" in fiona.get("/").content.decode()
    fiona.get(f"/sessions/{s.pk}/")
    assert seen == ["cost_summary", "session_cost"]


def test_huge_ids_are_404_not_500(people, client_as, target) -> None:  # type: ignore[no-untyped-def]
    s, _ = target
    client = client_as(people["alice"])
    huge = "99999999999999999999999"
    for url in (
        f"/sessions/{huge}/",
        f"/sessions/{huge}/status/",
        f"/sessions/{s.pk}/exec/{huge}/",
    ):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/sessions/{huge}/terminate/").status_code == 404
    resp = client.post("/sessions/bulk-terminate/", {"ids": [huge]}, follow=True)
    assert resp.status_code == 200
