"""Browser journeys: Playwright driving Debian's Chromium against a live server.

The stack is real: Django's live server (in this process), a Celery worker subprocess on
the test database, and the local E2B emulator, so pages update by themselves as jobs
finish. Screenshots go to artifacts/screenshots/ (ignored by git).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from pools.e2b_emulator.testing import RunningEmulator, running_emulator
from tests.worker import WorkerProcess

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
# between page actions are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = Path(settings.BASE_DIR) / "artifacts" / "screenshots"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"


@pytest.fixture(scope="session")
def browser_emulator() -> Iterator[RunningEmulator]:
    with running_emulator() as emu:
        yield emu


@pytest.fixture(scope="session")
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
    with django_db_blocker.unblock():
        worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture
def stack(live_server, browser_worker, browser_emulator, settings, transactional_db):  # type: ignore[no-untyped-def]
    """Live server + worker + emulator, with this process's settings pointing at the emulator."""
    settings.E2B_API_URL = browser_emulator.url
    settings.E2B_SANDBOX_URL = browser_emulator.url
    return {"url": live_server.url, "worker": browser_worker, "emulator": browser_emulator}


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
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


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    context.set_default_timeout(20_000)
    pg = context.new_page()
    yield pg
    context.close()


def shot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def login(page: Any, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/")


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[Any]:
    """Run axe-core on the current page; serious and critical violations."""
    page.add_script_tag(content=AXE.read_text())
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v.get("impact") in impacts]
