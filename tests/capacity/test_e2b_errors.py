"""E2B errors: the table from SDK exception to ProviderError, the Retry-After seam (which
relies on the pinned SDK's insides, and says so when they change), and calls cut by the
provider's own timeout."""

from __future__ import annotations

import uuid

import e2b
import httpx
import pytest
from e2b import Sandbox

from pools.e2b_emulator.testing import RunningEmulator
from pools.providers.base import ProviderError, SandboxSpec
from pools.providers.e2b import E2BProvider
from pools.providers.e2b_errors import retry_after_of, to_provider_error

SEAM_CHANGED = (
    "pools/providers/e2b_errors.py:retry_after_of no longer finds E2B's Retry-After: the "
    "pinned e2b SDK changed how it raises on a 429 (the response is no longer a local of a "
    "frame of the traceback). Find the header another way before upgrading."
)


def _status(cls: type[Exception], message: str, status: int) -> Exception:
    exc = cls(message)
    exc.status_code = status  # type: ignore[attr-defined]
    return exc


CASES = [
    # (exception, permanent, status_code, message)
    (
        e2b.AuthenticationException("API key is required, please visit the dashboard"),
        True,
        None,
        "No E2B API key is configured.",
    ),
    (e2b.AuthenticationException("401: Unauthorized"), True, 401, "E2B rejected this key (401)."),
    (
        e2b.RateLimitException("429: Rate limit exceeded, please try again later. - slow down"),
        False,
        429,
        "E2B is rate limiting this key (429): slow down",
    ),
    (
        e2b.ServiceBusyException("503: Service temporarily unavailable, please retry."),
        False,
        503,
        "E2B is temporarily unavailable (503).",
    ),
    (
        e2b.SandboxNotFoundException("404: gone"),
        True,
        404,
        "Sandbox sb1 was not found in E2B (killed, or it reached its timeout).",
    ),
    (
        e2b.SandboxNotRunningException("502: was not found"),
        True,
        404,
        "Sandbox sb1 is not running (it was killed or reached its timeout).",
    ),
    (
        e2b.SandboxUnreachableException("502: port is not open"),
        False,
        502,
        "Sandbox sb1 could not be reached.",
    ),
    (
        e2b.GuestUnresponsiveException("agent unresponsive"),
        True,
        409,
        "Sandbox sb1 cannot be resumed with its memory (its agent was unresponsive when it "
        "was paused).",
    ),
    (
        e2b.TemplateException("old envd"),
        True,
        None,
        "The template was built for an older E2B SDK; rebuild it.",
    ),
    (
        e2b.InvalidArgumentException("400: bad timeout"),
        True,
        None,
        "E2B refused the request: bad timeout",
    ),
    (e2b.TimeoutException("deadline"), False, 504, "E2B did not answer in time (deadline)."),
    (
        _status(e2b.SandboxException, "404: no such template", 404),
        True,
        404,
        "Sandbox sb1 was not found in E2B.",
    ),
    (
        _status(e2b.SandboxException, "403: forbidden", 403),
        True,
        403,
        "E2B refused access (403): forbidden",
    ),
    (
        _status(e2b.SandboxException, "409: busy", 409),
        False,
        409,
        "E2B says the sandbox is busy (409): busy",
    ),
    (
        _status(e2b.SandboxException, "500: oops", 500),
        False,
        500,
        "E2B answered 500: oops.",
    ),
    (
        _status(e2b.SandboxException, "422: no", 422),
        True,
        422,
        "E2B refused the request (422): no",
    ),
    (
        ConnectionRefusedError("refused"),
        False,
        None,
        "Could not reach E2B at http://e2b.test (ConnectionRefusedError).",
    ),
    (RuntimeError("surprise"), False, None, "E2B call failed (RuntimeError): surprise"),
]


@pytest.mark.parametrize(("exc", "permanent", "status", "message"), CASES)
def test_each_sdk_failure_reads_as_one_provider_error(exc, permanent, status, message):  # type: ignore[no-untyped-def]
    err = to_provider_error(exc, sandbox_id="sb1", endpoint="http://e2b.test")
    assert (err.permanent, err.status_code, err.message) == (permanent, status, message)


def test_not_found_names_what_was_asked_for() -> None:
    err = to_provider_error(e2b.NotFoundException("404: x"), not_found="Template 'x' not found")
    assert (err.permanent, err.status_code, str(err)) == (True, 404, "Template 'x' not found")


def test_retry_after_stated_in_the_message_wins() -> None:
    exc = e2b.RateLimitException("429: Rate limit exceeded - retry after 12s")
    assert to_provider_error(exc).retry_after == 12.0


def test_retry_after_seam_on_the_pinned_sdk(e2b_emulator: RunningEmulator) -> None:
    """The raw SDK exception, read by the one function that knows the SDK's insides."""
    e2b_emulator.emulator.fail_next("list", status=429, retry_after=7, should_retry=False)
    with pytest.raises(e2b.RateLimitException) as raised:
        Sandbox.list(limit=1, **e2b_emulator.sdk_kwargs).next_items()
    assert retry_after_of(raised.value) == 7.0, SEAM_CHANGED


@pytest.mark.parametrize(("endpoint", "status"), [("create", 429), ("create", 503), ("list", 429)])
def test_provider_errors_carry_e2bs_retry_after(e2b_emulator, endpoint, status):  # type: ignore[no-untyped-def]
    e2b_emulator.emulator.fail_next(endpoint, status=status, retry_after=9, should_retry=False)
    provider = E2BProvider(
        str(e2b_emulator.sdk_kwargs["api_key"]),
        api_url=e2b_emulator.url,
        sandbox_url=e2b_emulator.url,
    )
    call = provider.ping if endpoint == "list" else lambda: provider.provision({}, _spec())
    with pytest.raises(ProviderError) as err:
        call()
    assert not err.value.permanent and err.value.status_code == status
    assert err.value.retry_after == 9.0, SEAM_CHANGED


def test_a_stalled_e2b_is_cut_at_the_providers_timeout(e2b_emulator: RunningEmulator) -> None:
    # E2B would answer after two minutes; the provider gives up after its own bound.
    e2b_emulator.emulator.set_latency(120_000, "list")
    provider = E2BProvider(
        str(e2b_emulator.sdk_kwargs["api_key"]),
        api_url=e2b_emulator.url,
        sandbox_url=e2b_emulator.url,
        timeout=0.5,
    )
    with pytest.raises(ProviderError) as err:
        provider.ping()
    assert str(err.value) == "E2B did not answer within 0.5 s."
    assert not err.value.permanent and err.value.status_code == 504


def test_without_a_timeout_a_transport_timeout_still_reads_as_unreachable() -> None:
    err = to_provider_error(httpx.ReadTimeout("timed out"), endpoint="http://e2b.test")
    assert str(err) == "Could not reach E2B at http://e2b.test (ReadTimeout)."
    cut = to_provider_error(httpx.ReadTimeout("timed out"), bound=5)
    assert str(cut) == "E2B did not answer within 5 s."


def _spec() -> SandboxSpec:
    return SandboxSpec(session_id="1", request_id=str(uuid.uuid4()), org_slug="org-a")
