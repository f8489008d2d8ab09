"""With DEBUG off every page needs collectstatic's manifest: ``check --deploy`` and the WSGI
app at start-up say so, instead of a web process that answers every page with a 500."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from rensei.checks import COLLECT_STATIC, static_files_collected

ROOT = Path(__file__).resolve().parent.parent
MANIFEST_STORAGE = "whitenoise.storage.CompressedManifestStaticFilesStorage"


@pytest.fixture
def manifest_storage(settings, tmp_path):  # type: ignore[no-untyped-def]
    """The production storage (DEBUG off) over an empty STATIC_ROOT."""
    settings.STATIC_ROOT = tmp_path
    # Django's setting_changed handler drops the cached storages on both changes.
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST_STORAGE}}
    return tmp_path


def test_the_check_names_what_is_missing(manifest_storage: Path) -> None:
    [error] = static_files_collected()
    assert error.msg == COLLECT_STATIC and error.id == "rensei.E002"
    assert "staticfiles.json" in str(error.hint)
    with pytest.raises(SystemCheckError, match="static files are not collected"):
        call_command("check", deploy=True)
    (manifest_storage / "staticfiles.json").write_text('{"paths": {}, "version": "1.1"}')
    assert static_files_collected() == []


def test_development_storage_needs_no_collectstatic() -> None:
    assert static_files_collected() == []


# Once started: what the process froze for the garbage collector, and whether the views were
# imported with the URLconf (before the first request).
STARTED = (
    "import gc, sys, rensei.wsgi; "
    "print('started', gc.get_freeze_count(), 'sessions.views' in sys.modules)"
)


def _start_wsgi(var_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "rensei.settings",
        "DEBUG": "false",
        "SECRET_KEY": "a-production-like-secret-key-for-this-test-only",
        "RENSEI_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "RENSEI_VAR_DIR": str(var_dir),
    }
    return subprocess.run(
        [sys.executable, "-c", STARTED],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


def test_a_production_web_process_refuses_to_start_without_collected_static(
    tmp_path: Path,
) -> None:
    refused = _start_wsgi(tmp_path)
    assert refused.returncode != 0
    assert "ImproperlyConfigured: static files are not collected: run manage.py collectstatic" in (
        refused.stderr
    )
    (tmp_path / "staticfiles" / "staticfiles.json").write_text('{"paths": {}, "version": "1.1"}')
    started = _start_wsgi(tmp_path)
    assert started.returncode == 0, started.stderr[-2000:]
    word, frozen, views = started.stdout.split()[-3:]
    assert word == "started"
    # Everything loaded at start-up is frozen, so full collections never walk it again.
    assert int(frozen) > 50_000 and views == "True"
