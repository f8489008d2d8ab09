"""Inside the box on the session page, with the fake provider: charts, log tail, files,
roles, org walls, bad paths and what each partial costs."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pools.providers import fake
from pools.providers.base import ExecResult, ProviderError
from sessions.models import Session, SessionState
from tests.factories import CapacityPoolFactory
from tests.sessions_web.conftest import make_session
from tests.sessions_web.helpers import text

pytestmark = pytest.mark.django_db


@pytest.fixture
def cloud() -> Iterator[fake.FakeCloud]:
    with fake.registered() as c:
        yield c


def boxed(cloud: fake.FakeCloud, org: Any, state: str = SessionState.RUNNING) -> Session:
    """A session whose sandbox lives in the fake cloud, started 20 minutes ago."""
    pool = CapacityPoolFactory.create(org=org, provider="fake", config={"templateId": "base"})
    session = make_session(org, state, pool=pool, provider="fake")
    box = fake.FakeSandbox(
        sandbox_id=session.sandbox_id,
        template="base",
        metadata={},
        env={},
        started_at=datetime.now(UTC) - timedelta(minutes=20),
        state="paused" if state == SessionState.PAUSED else "running",
    )
    cloud.sandboxes[box.sandbox_id] = box
    return session


def calls(cloud: fake.FakeCloud, operation: str) -> int:
    return sum(1 for op, _ in cloud.calls if op == operation)


# -- metrics ----------------------------------------------------------------------------


def test_metrics_partial_draws_cpu_and_memory_and_keeps_the_latest_cpu(
    client_as, bob, org_a, cloud
) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a)
    cloud.sandboxes[s.sandbox_id].cpu_pct = [5.0, 40.0, 73.5]
    resp = client_as(bob).get(f"/sessions/{s.pk}/metrics/")
    assert resp.status_code == 200
    page = resp.content.decode()
    assert page.count("<svg") == 2 and "<polyline" in page
    # Three samples, the last 15 s: the shortest window holds them.
    assert "CPU use, last 5 min" in page and "Latest 73.5 % of 2 vCPU" in page
    assert "Memory used, last 5 min" in page and "Latest 128 MB of 512 MB" in page
    assert ">-5 min<" in page and ">-1 min<" in page and ">now<" in page
    assert 'hx-trigger="every 5s' in page  # keeps polling while live
    s.refresh_from_db()
    assert s.last_cpu_pct == 73.5 and s.last_metrics_at is not None


def test_the_charts_window_is_the_shortest_that_holds_the_samples(
    client_as, bob, org_a, cloud
) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a)  # started 20 minutes ago: a sample every 5 s since
    page = client_as(bob).get(f"/sessions/{s.pk}/metrics/").content.decode()
    assert "CPU use, last 30 min" in page and ">-30 min<" in page and ">-10 min<" in page
    assert 'CPU and memory <small class="text-muted fs-6">last 30 min</small>' in page
    cloud.sandboxes[s.sandbox_id].started_at -= timedelta(hours=3)
    page = client_as(bob).get(f"/sessions/{s.pk}/metrics/").content.decode()
    assert "CPU use, last hour" in page and ">-60 min<" in page and ">-45 min<" in page


def test_metrics_stop_polling_once_the_session_has_ended(client_as, alice, org_a, cloud) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a, SessionState.TERMINATED)
    resp = client_as(alice).get(f"/sessions/{s.pk}/metrics/")
    assert resp.status_code == 286
    assert "hx-trigger" not in resp.content.decode()
    assert calls(cloud, "metrics") == 0


def test_no_samples_draw_no_empty_charts(client_as, alice, org_a, cloud) -> None:  # type: ignore[no-untyped-def]
    """Without a sample there is nothing to chart: the section says why instead of drawing
    two empty axes, for an ended sandbox and for a live one E2B has no samples of yet."""
    ended = boxed(cloud, org_a, SessionState.TERMINATED)
    page = client_as(alice).get(f"/sessions/{ended.pk}/metrics/").content.decode()
    assert "<svg" not in page and "E2B keeps no metrics after that" in page
    live = boxed(cloud, org_a)
    cloud.sandboxes[live.sandbox_id].cpu_pct = []
    resp = client_as(alice).get(f"/sessions/{live.pk}/metrics/")
    page = resp.content.decode()
    assert resp.status_code == 200 and "<svg" not in page
    assert "E2B has reported no samples for this sandbox in the last hour yet" in text(resp)
    assert 'hx-trigger="every 5s' in page  # and keeps asking


def test_a_provider_error_reads_as_a_message_not_a_500(client_as, alice, org_a, cloud) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a)
    cloud.fail_next("metrics", ProviderError("E2B did not answer within 5 s.", permanent=False))
    resp = client_as(alice).get(f"/sessions/{s.pk}/metrics/")
    assert resp.status_code == 200
    assert "Metrics are unavailable: E2B did not answer within 5 s." in text(resp)


def test_metrics_and_log_partials_cost_one_provider_call_and_few_queries(
    client_as, alice, org_a, cloud, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a)
    cloud.exec_handler = lambda box, cmd, env: ExecResult(0, "ok\n", "")
    client = client_as(alice)
    # Session, its pool's org, the membership (twice: the view and the page's menu), the
    # login's session row and the CPU update: the same whatever the box holds.
    with django_assert_max_num_queries(10):
        assert client.get(f"/sessions/{s.pk}/metrics/").status_code == 200
    with django_assert_max_num_queries(10):
        assert client.get(f"/sessions/{s.pk}/log/").status_code == 200
    assert calls(cloud, "metrics") == 1 and calls(cloud, "exec_command") == 1


def test_the_session_page_itself_calls_no_provider(client_as, alice, org_a, cloud) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a)
    page = client_as(alice).get(f"/sessions/{s.pk}/").content.decode()
    for route in ("metrics", "log", "files"):
        assert f'hx-get="/sessions/{s.pk}/{route}/" hx-trigger="load"' in page
    assert cloud.calls == []


# -- log tail ---------------------------------------------------------------------------


def test_log_tail_shows_the_last_200_lines(client_as, alice, org_a, cloud) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a)
    seen: list[str] = []

    def tail(box: Any, command: str, env: Any) -> ExecResult:
        seen.append(command)
        return ExecResult(0, "".join(f"line {i}\n" for i in range(300, 500)), "")

    cloud.exec_handler = tail
    resp = client_as(alice).get(f"/sessions/{s.pk}/log/")
    assert seen == ["tail -n 200 -- /tmp/donmai-runner.log"]
    body = text(resp)
    assert "line 300" in body and "line 499" in body and "last 200 lines" in body
    assert 'hx-trigger="every 5s' in resp.content.decode()


def test_a_missing_log_says_so(client_as, alice, org_a, cloud) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a)
    cloud.exec_handler = lambda box, cmd, env: ExecResult(1, "", "tail: cannot open")
    resp = client_as(alice).get(f"/sessions/{s.pk}/log/")
    assert resp.status_code == 200
    assert "The runner has written no log yet (/tmp/donmai-runner.log)." in text(resp)


# -- files ------------------------------------------------------------------------------


def files(client: Any, s: Session, **params: str) -> Any:
    return client.get(f"/sessions/{s.pk}/files/", params)


def test_file_browser_lists_views_text_and_offers_binary_as_download(
    client_as, alice, org_a, cloud
) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a)
    cloud.sandboxes[s.sandbox_id].files.update(
        {
            "/home/user/work/notes.txt": b"hello <world>",
            "/home/user/work/data.bin": b"\x00\x01\x02",
            "/home/user/readme.md": b"# hi",
        }
    )
    client = client_as(alice)
    listing = files(client, s)
    assert listing.status_code == 200
    assert "work/" in text(listing) and "readme.md" in text(listing)
    inner = files(client, s, path="/home/user/work")
    assert "notes.txt" in text(inner) and "↑ /home/user" in text(inner)
    note = files(client, s, path="/home/user/work/notes.txt", view="file")
    assert "hello &lt;world&gt;" in note.content.decode()  # escaped, shown
    binary = files(client, s, path="work/data.bin", view="file")
    assert "is a binary file" in text(binary) and 'id="file-text"' not in binary.content.decode()
    assert "Download" in text(binary)
    download = client.get(f"/sessions/{s.pk}/files/download/", {"path": "work/data.bin"})
    assert download.status_code == 200 and download.content == b"\x00\x01\x02"
    assert download["Content-Disposition"] == 'attachment; filename="data.bin"'


def test_huge_files_are_offered_or_refused(client_as, alice, org_a, cloud) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a)
    box = cloud.sandboxes[s.sandbox_id]
    box.files["/home/user/big.log"] = b"x" * (2 * 1024 * 1024)
    box.files["/home/user/huge.log"] = b"x" * (11 * 1024 * 1024)
    client = client_as(alice)
    big = files(client, s, path="big.log", view="file")
    assert "more than the 1 MB shown on this page" in text(big) and "Download 2.0" in text(big)
    huge = files(client, s, path="huge.log", view="file")
    assert "Files over 10 MB cannot be downloaded here." in text(huge)
    refused = client.get(f"/sessions/{s.pk}/files/download/", {"path": "huge.log"})
    assert refused.status_code == 413
    assert "larger than 10 MB" in text(refused)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../etc/passwd", "A path may not contain '..'."),
        ("/home/user/../../etc/passwd", "A path may not contain '..'."),
        ("/etc/passwd", "Only files under /home/user can be browsed"),
        ("/home/username/x", "Only files under /home/user can be browsed"),
        ("/home/user/a\x00b", "control characters"),
        ("a" * 2000, "A path is at most 1024 characters."),
    ],
)
def test_bad_paths_answer_400_with_a_message(client_as, alice, org_a, cloud, path, message) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a)
    client = client_as(alice)
    for url in (f"/sessions/{s.pk}/files/", f"/sessions/{s.pk}/files/download/"):
        resp = client.get(url, {"path": path, "view": "file"})
        assert resp.status_code == 400, url
        assert message in html.unescape(text(resp))
    assert calls(cloud, "read_file") == calls(cloud, "list_files") == 0


def test_the_runner_log_may_be_read_by_name_and_missing_paths_are_clear(
    client_as, alice, org_a, cloud
) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a)
    cloud.sandboxes[s.sandbox_id].files["/tmp/donmai-runner.log"] = b"started\n"
    client = client_as(alice)
    log = files(client, s, path="/tmp/donmai-runner.log", view="file")
    assert "started" in text(log)
    missing = files(client, s, path="/home/user/nope")
    assert missing.status_code == 200
    assert "No such file or directory: /home/user/nope" in text(missing)
    gone = client.get(f"/sessions/{s.pk}/files/download/", {"path": "nope.txt"})
    assert gone.status_code == 404
    assert "No such file or directory: /home/user/nope.txt" in text(gone)


def test_a_paused_box_is_not_browsed_or_resumed(client_as, alice, org_a, cloud) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a, SessionState.PAUSED)
    client = client_as(alice)
    assert "Files can be browsed while the session is running." in text(files(client, s))
    assert "The log can be read while the session is running." in text(
        client.get(f"/sessions/{s.pk}/log/")
    )
    assert cloud.sandboxes[s.sandbox_id].state == "paused"
    assert calls(cloud, "list_files") == calls(cloud, "exec_command") == 0


# -- roles and walls --------------------------------------------------------------------


ADMIN_ONLY = ("log/", "files/", "files/download/?path=readme.md")


def test_members_and_finance_see_metrics_but_not_logs_or_files(
    client_as, bob, fiona, org_a, cloud
) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a)
    for user in (bob, fiona):
        client = client_as(user)
        assert client.get(f"/sessions/{s.pk}/metrics/").status_code == 200
        for route in ADMIN_ONLY:
            assert client.get(f"/sessions/{s.pk}/{route}").status_code == 403, route
        page = client.get(f"/sessions/{s.pk}/").content.decode()
        assert f"/sessions/{s.pk}/metrics/" in page
        assert f"/sessions/{s.pk}/log/" not in page and f"/sessions/{s.pk}/files/" not in page
    assert calls(cloud, "exec_command") == calls(cloud, "list_files") == 0


def test_another_orgs_session_is_404_on_every_new_route(client_as, charlie, org_a, cloud) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a)
    client = client_as(charlie)
    for route in ("metrics/", *ADMIN_ONLY):
        assert client.get(f"/sessions/{s.pk}/{route}").status_code == 404, route
    assert cloud.calls == []


# -- sessions list ------------------------------------------------------------------------


def test_sessions_list_shows_the_stored_cpu_of_running_sessions_without_a_provider_call(
    client_as, bob, org_a, cloud
) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    fresh = boxed(cloud, org_a)
    stale = boxed(cloud, org_a)
    paused = boxed(cloud, org_a, SessionState.PAUSED)
    Session.objects.filter(pk=fresh.pk).update(last_cpu_pct=42.25, last_metrics_at=now)
    Session.objects.filter(pk=stale.pk).update(
        last_cpu_pct=99.0, last_metrics_at=now - timedelta(minutes=10)
    )
    Session.objects.filter(pk=paused.pk).update(last_cpu_pct=77.0, last_metrics_at=now)
    page = client_as(bob).get("/sessions/").content.decode()
    cells = re.findall(r'<td class="small text-end cell-cpu">(.*?)</td>', page)
    assert len(cells) == 3
    shown = [re.sub(r"<[^>]+>", "", c) for c in cells]
    assert sorted(shown) == ["42.3 %", "—", "—"]
    assert "99.0" not in page and "77.0" not in page
    assert cloud.calls == []


def test_the_metrics_partial_feeds_the_list(client_as, bob, org_a, cloud) -> None:  # type: ignore[no-untyped-def]
    s = boxed(cloud, org_a)
    cloud.sandboxes[s.sandbox_id].cpu_pct = 12.5
    client = client_as(bob)
    client.get(f"/sessions/{s.pk}/metrics/")
    assert "12.5 %" in text(client.get("/sessions/"))
