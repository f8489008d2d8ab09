"""Browser journeys: Playwright driving Debian's Chromium against a live server.

The stack is real: Django's live server (in this process), a Celery worker subprocess on
the test database, and the local E2B emulator, so pages update by themselves as jobs
finish. Screenshots go to artifacts/screenshots/ (ignored by git).

Tests wait for what a person sees (``expect(locator).to_have_text(..., timeout=...)``),
never for a fixed time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from pools.e2b_emulator.testing import RunningEmulator, running_emulator
from rensei.celery import app
from tests.sessions_engine.conftest import ensure_rate_cards
from tests.worker import WorkerProcess, set_default_queue

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
# between page actions are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = Path(settings.BASE_DIR) / "artifacts" / "screenshots"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
# Long enough for a sandbox to start on a busy CI machine; a broken page still fails.
JOB_TIMEOUT = 45_000


@pytest.fixture(autouse=True)
def fast_password_hasher(settings: Any) -> None:
    """The journeys log in through the form; the default hasher would only cost time."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# The emulator and the worker live for one test module: the sandboxes a module leaves
# running (the demo's runners, say) are killed with its emulator, before other tests look at
# the host's processes, and no worker outlives the tests that feed it.
@pytest.fixture(scope="module")
def browser_emulator() -> Iterator[RunningEmulator]:
    with running_emulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def browser_worker(
    django_db_setup: None, django_db_blocker: Any, browser_emulator: RunningEmulator
) -> Iterator[WorkerProcess]:
    key = str(browser_emulator.sdk_kwargs["api_key"])
    worker = WorkerProcess(
        env={
            "E2B_API_URL": browser_emulator.url,
            "E2B_SANDBOX_URL": browser_emulator.url,
            "E2B_API_KEY": key,
        }
    )
    previous_queue = app.conf.task_default_queue
    with django_db_blocker.unblock():
        worker.start()
    # Only tests using `stack` publish to this worker: other tests of the module that
    # expect no worker never feed it.
    set_default_queue(previous_queue)
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def stack(live_server, browser_worker, browser_emulator, settings, transactional_db):  # type: ignore[no-untyped-def]
    """Live server + worker + emulator, with this process's settings pointing at the emulator."""
    settings.E2B_API_URL = browser_emulator.url
    settings.E2B_SANDBOX_URL = browser_emulator.url
    # Transactional tests flush the migration's rate card; closing an interval needs one.
    ensure_rate_cards()
    previous_queue = app.conf.task_default_queue
    set_default_queue(browser_worker.queue)
    yield {"url": live_server.url, "worker": browser_worker, "emulator": browser_emulator}
    set_default_queue(previous_queue)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module. Playwright's sync API keeps an event loop running in
    this thread while it is started, so it is stopped before other modules' asyncio code
    runs; modules elsewhere import this fixture, and only one module's driver is alive."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install the Debian package 'chromium'")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-gpu",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.stash[_failed] = report.failed


_failed = pytest.StashKey[bool]()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    context.set_default_timeout(20_000)
    pg = context.new_page()
    yield pg
    if request.node.stash.get(_failed, False):
        # What the user saw when the journey failed: artifacts/screenshots/FAILED-<test>.*
        name = f"FAILED-{request.node.name}"
        try:
            shot(pg, name)
            (SCREENSHOTS / f"{name}.html").write_text(pg.content())
        except Exception:  # a crashed page must not hide the test's own failure
            pass
    context.close()


def shot(page: Any, name: str, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def login(page: Any, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/")


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[Any]:
    """Run axe-core on the current page; serious and critical violations."""
    # Evaluated, not added as an inline <script>: the pages' CSP refuses inline scripts.
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v.get("impact") in impacts]


def describe(violations: list[Any]) -> list[str]:
    """Violations as readable lines for an assertion message."""
    return [f"{v['id']}: {n['html'][:160]}" for v in violations for n in v["nodes"]]


FIELDS = "input:not([type=hidden]):visible, select:visible, textarea:visible"


def assert_fields_named(page: Any) -> int:
    """Every visible form field has an accessible name (a label, as the browser computes
    it); returns how many fields were checked."""
    from playwright.sync_api import expect

    fields = page.locator(FIELDS)
    count = fields.count()
    for i in range(count):
        field = fields.nth(i)
        if field.get_attribute("type") in ("submit", "button", "reset", "image"):
            continue
        expect(field, f"field {field.evaluate('e => e.outerHTML')[:160]}").to_have_accessible_name(
            _nonblank()
        )
    return count


def _nonblank() -> Any:
    import re

    return re.compile(r"\S")


def mark_page(page: Any) -> None:
    """Tag the loaded document; ``same_page(page)`` later proves no reload happened."""
    page.evaluate("window.__journeyMark = 'still here'")


def same_page(page: Any) -> bool:
    return bool(page.evaluate("window.__journeyMark === 'still here'"))
