"""A row of sessions (the list's, the dashboard's recent ones), cell by cell: the view makes
each text, time and link once, and the row reads exactly as it did when the template
formatted them itself."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine

from sessions.models import Issue, Session, SessionState
from tests.factories import CapacityPoolFactory
from tests.sessions_web.conftest import T0, make_session
from tests.sessions_web.test_list import row_html

pytestmark = pytest.mark.django_db

NOW = T0 + timedelta(hours=3, microseconds=250)  # T0 is 2026-03-02 09:00 UTC


def shown(*cells: str) -> str:
    """A row as the template lays it out: one cell a line."""
    return "<tr>\n" + "".join(f"          {cell}\n" for cell in cells) + "        "


def running(org: Any) -> Session:
    pool = CapacityPoolFactory.create(org=org, name="gpu <fast> & co")
    session = make_session(org, SessionState.RUNNING, issue="ENG-7", pool=pool)
    Issue.objects.filter(sessions=session).update(title='Fix "quotes" & <tags>')
    Session.objects.filter(pk=session.pk).update(
        sandbox_id="sbx-42",
        created_at=T0 + timedelta(microseconds=123456),
        started_at=NOW - timedelta(hours=2, minutes=5, seconds=9),
        state_changed_at=NOW - timedelta(minutes=3, seconds=2),
        last_cpu_pct=0.25,
        last_metrics_at=NOW - timedelta(seconds=70),
    )
    return session


def test_a_running_row_for_a_member(client_as: Any, bob: Any, org_a: Any) -> None:
    with time_machine.travel(NOW, tick=False):
        session = running(org_a)
        row = row_html(client_as(bob).get("/sessions/"), session.pk)
    pk = session.pk
    title = "Fix &quot;quotes&quot; &amp; &lt;tags&gt;"
    pool = "gpu &lt;fast&gt; &amp; co"
    assert row == shown(
        "",  # no box: a member may not terminate
        f'<td><a href="/sessions/{pk}/">#{pk}</a></td>',
        f'<td class="cell-issue"><div class="text-truncate" title="ENG-7: {title}">'
        f'<strong>ENG-7</strong> <span class="text-muted small">{title}</span></div></td>',
        '<td><span class="badge badge-state-running">Running</span></td>',
        f'<td><div class="text-truncate cell-pool" title="{pool}">{pool}</div></td>',
        '<td><div class="text-truncate cell-sandbox" title="sbx-42">'
        '<code class="small">sbx-42</code></div></td>',
        '<td class="small">2 h 05 min</td>',
        # 0.25 rounds half up, as the floatformat filter does.
        '<td class="small text-end cell-cpu"><span title="at 11:58:50 UTC">0.3 %</span></td>',
        "",  # no cost: a member may not read it
        '<td class="small" title="2026-03-02 09:00:00 UTC">'
        '<time datetime="2026-03-02T09:00:00.123456+00:00">2026-03-02 09:00</time></td>',
        '<td class="small" title="Running since 2026-03-02 11:56:58 UTC">3 min 02 s</td>',
    )


def test_an_unattributed_queued_row_for_an_admin(client_as: Any, alice: Any, org_a: Any) -> None:
    with time_machine.travel(NOW, tick=False):
        session = make_session(org_a, SessionState.QUEUED, issue=None)
        Session.objects.filter(pk=session.pk).update(created_at=T0, state_changed_at=T0)
        row = row_html(client_as(alice).get("/sessions/"), session.pk)
    pk = session.pk
    assert row == shown(
        f'<td><input type="checkbox" id="select-{pk}" class="form-check-input row-select"'
        f' name="ids" value="{pk}" form="bulk-form" hx-preserve'
        f' aria-label="Select session {pk}"></td>',
        f'<td><a href="/sessions/{pk}/">#{pk}</a></td>',
        '<td class="cell-issue"><span class="text-muted">Unattributed</span></td>',
        '<td><span class="badge badge-state-queued">Queued</span></td>',
        "<td>—</td>",
        "<td>—</td>",
        '<td class="small">—</td>',
        '<td class="small text-end cell-cpu"><span class="text-muted">—</span></td>',
        '<td class="small text-end" title="0.000000000000 USD">$0.00</td>',
        '<td class="small" title="2026-03-02 09:00:00 UTC">'
        '<time datetime="2026-03-02T09:00:00+00:00">2026-03-02 09:00</time></td>',
        '<td class="small" title="Queued since 2026-03-02 09:00:00 UTC">3 h 00 min</td>',
    )


def test_an_issue_without_a_title_shows_its_key_on_hover(
    client_as: Any, bob: Any, org_a: Any
) -> None:
    session = make_session(org_a, SessionState.PAUSED, issue="ENG-9")
    Issue.objects.filter(sessions=session).update(title="")
    row = row_html(client_as(bob).get("/sessions/"), session.pk)
    assert (
        '<td class="cell-issue"><div class="text-truncate" title="ENG-9"><strong>ENG-9</strong>'
        ' <span class="text-muted small"></span></div></td>'
    ) in row


def recent_row(html: str, pk: int) -> str:
    """The dashboard's row of session ``pk``, checking its link on the way."""
    start = html.index(f'<a id="recent-{pk}" href="/sessions/{pk}/">#{pk}</a>')
    return html[html.rindex("<tr>", 0, start) : html.index("</tr>", start)]


def test_the_dashboards_recent_rows(client_as: Any, fiona: Any, org_a: Any) -> None:
    with time_machine.travel(NOW, tick=False):
        session = running(org_a)
        bare = make_session(org_a, SessionState.QUEUED, issue=None)
        Session.objects.filter(pk=bare.pk).update(created_at=T0)
        html = client_as(fiona).get("/").content.decode()
    row = recent_row(html, session.pk)
    assert "<td>ENG-7</td>" in row
    assert '<td><span class="badge badge-state-running">Running</span></td>' in row
    assert "<td>gpu &lt;fast&gt; &amp; co</td>" in row
    created = '<time datetime="2026-03-02T09:00:00Z">2026-03-02 09:00:00 UTC</time>'
    assert f'<td class="small">{created}</td>' in row
    row = recent_row(html, bare.pk)
    assert '<td><span class="text-muted">Unattributed</span></td>' in row
    assert "<td>—</td>" in row
    assert 'title="0.000000000000 USD">$0.00</td>' in row
