"""E2B SDK exceptions → ``ProviderError``: one table, read top to bottom, first match wins.

Bad key, unknown template or sandbox and refused arguments are permanent; 429, 5xx,
timeouts and connection failures are transient. Messages name the sandbox or template and
never contain the key.

``Retry-After``: the SDK waits it out between its own retries, then raises an exception
that carries neither the response nor its headers, and it offers no hook that sees the
response (its httpx event hooks are its own logging ones, its transports are built inside
each call). ``retry_after_of`` therefore reads the header from the response the SDK still
holds in the frame that raised. That is the only place this module relies on the SDK's
insides; tests/capacity/test_e2b_errors.py drives the pinned SDK against the emulator and
fails, naming this function, if an upgrade changes that shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from pools.providers.base import ProviderError


@dataclass(frozen=True)
class Rule:
    """How one kind of SDK failure reads. ``message`` is formatted with: ``which`` (the
    sandbox), ``detail`` (E2B's own words), ``code`` (HTTP status), ``not_found``,
    ``endpoint``, ``kind`` (the exception's type name), ``bound`` (the call timeout)."""

    message: str
    permanent: bool
    status: int | None = None
    retry_after: bool = False  # read the wait E2B asked for (message, then header)
    if_message: str = ""  # only when the SDK's message contains this (lower case)
    status_of_answer: bool = False  # status_code: the HTTP status E2B answered with


# (SDK exception class name, rule). Subclasses before their bases: SandboxNotRunning and
# SandboxUnreachable are TimeoutExceptions, SandboxNotFound a NotFoundException.
BY_TYPE: tuple[tuple[str, Rule], ...] = (
    ("AuthenticationException", Rule("No E2B API key is configured.", True, if_message="required")),
    ("AuthenticationException", Rule("E2B rejected this key (401).", True, 401)),
    (
        "RateLimitException",
        Rule("E2B is rate limiting this key (429): {detail_or_later}", False, 429, True),
    ),
    ("ServiceBusyException", Rule("E2B is temporarily unavailable (503).", False, 503, True)),
    (
        "SandboxNotFoundException",
        Rule("{which} was not found in E2B (killed, or it reached its timeout).", True, 404),
    ),
    (
        "SandboxNotRunningException",
        Rule("{which} is not running (it was killed or reached its timeout).", True, 404),
    ),
    # envd's missing path (files API); the caller passes not_found="No such file …: <path>".
    ("FileNotFoundException", Rule("{not_found}", True, 404)),
    ("SandboxUnreachableException", Rule("{which} could not be reached.", False, 502)),
    (
        "GuestUnresponsiveException",
        Rule(
            "{which} cannot be resumed with its memory (its agent was unresponsive when it "
            "was paused).",
            True,
            409,
        ),
    ),
    ("TemplateException", Rule("The template was built for an older E2B SDK; rebuild it.", True)),
    ("InvalidArgumentException", Rule("E2B refused the request: {detail}", True)),
    ("TimeoutException", Rule("E2B did not answer in time ({detail}).", False, 504)),
)

# Any other SDK exception that carries an HTTP status (and NotFoundException without one).
BY_STATUS: dict[int, Rule] = {
    404: Rule("{not_found}", True, 404),
    401: Rule("E2B rejected this key (401).", True, 401),
    403: Rule("E2B refused access (403): {detail}", True, 403),
    409: Rule("E2B says the sandbox is busy (409): {detail}", False, 409),
    429: Rule("E2B answered {code}: {detail}.", False, status_of_answer=True),
}
SERVER_ERROR = Rule("E2B answered {code}: {detail}.", False, status_of_answer=True)  # 5xx
OTHER_STATUS = Rule("E2B refused the request ({code}): {detail}", True, status_of_answer=True)
# A call cut by the provider's own bound (``Provider.timeout``).
CUT = Rule("E2B did not answer within {bound} s.", False, 504)
UNREACHABLE = Rule("Could not reach E2B at {endpoint} ({kind}).", False)
UNKNOWN = Rule("E2B call failed ({kind}): {tail}", False)


@cache
def _classes() -> tuple[tuple[type[BaseException], Rule], ...]:
    # The SDK is imported on first use, not with this module: it is slow to import and the
    # web process rarely needs it (see e2b.py's module docstring).
    import e2b

    return tuple((getattr(e2b, name), rule) for name, rule in BY_TYPE)


def to_provider_error(
    exc: BaseException,
    *,
    sandbox_id: str | None = None,
    not_found: str | None = None,
    endpoint: str = "api.e2b.dev",
    bound: float | None = None,
) -> ProviderError:
    """Map an SDK (or transport) exception to one ``ProviderError`` an admin can read."""
    if isinstance(exc, ProviderError):
        return exc
    rule = _rule(exc, bound)
    which = f"Sandbox {sandbox_id}" if sandbox_id else "The sandbox"
    detail = server_message(exc)
    status = getattr(exc, "status_code", None)
    code = int(status) if status else (rule.status or 404)
    values = {
        "which": which,
        "detail": detail,
        "detail_or_later": detail or "try again later",
        "code": code,
        "not_found": not_found or f"{which} was not found in E2B.",
        "endpoint": endpoint,
        "kind": type(exc).__name__,
        "tail": tail(str(exc)),
        "bound": f"{bound:g}" if bound is not None else "",
    }
    wait = (_retry_after_in(detail) or retry_after_of(exc)) if rule.retry_after else None
    return ProviderError(
        rule.message.format_map(values),
        permanent=rule.permanent,
        status_code=code if rule.status_of_answer else rule.status,
        retry_after=wait,
    )


def _rule(exc: BaseException, bound: float | None) -> Rule:
    import e2b  # slow import: on first use (see _classes)

    if bound is not None and is_cut(exc):
        return CUT
    text = str(exc).lower()
    for cls, rule in _classes():
        if isinstance(exc, cls) and (not rule.if_message or rule.if_message in text):
            return rule
    status = getattr(exc, "status_code", None)
    if isinstance(exc, e2b.NotFoundException) or (isinstance(exc, e2b.SandboxException) and status):
        code = int(status or 404)
        if code in BY_STATUS:
            return BY_STATUS[code]
        return SERVER_ERROR if code >= 500 else OTHER_STATUS
    if isinstance(exc, OSError) or _is_transport_error(exc):
        return UNREACHABLE
    return UNKNOWN


def is_cut(exc: BaseException) -> bool:
    """The call ran into its own timeout (httpx's, or the SDK's request timeout), as opposed
    to a sandbox that stopped answering."""
    import e2b  # slow import: on first use (see _classes)
    import httpx  # the SDK's transport; loaded with it

    if isinstance(exc, httpx.TimeoutException):
        return True
    return type(exc) is e2b.TimeoutException and "request timed out" in str(exc).lower()


def retry_after_of(exc: BaseException) -> float | None:
    """E2B's ``Retry-After`` (seconds) on the 429/503 answer the SDK raised ``exc`` for.

    Relies on the SDK keeping that answer (an object with ``status_code`` and ``headers``)
    in a local of a frame of the traceback; see the module docstring.
    """
    from e2b.retry import parse_retry_after  # slow import: on first use (see _classes)

    tb = exc.__traceback__
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            headers = getattr(value, "headers", None)
            if getattr(value, "status_code", None) in (429, 503) and headers is not None:
                try:
                    seconds = parse_retry_after(headers.get("retry-after"))
                except (AttributeError, TypeError):
                    seconds = None
                if seconds is not None:
                    return float(seconds)
        tb = tb.tb_next
    return None


def _retry_after_in(message: str) -> float | None:
    """A wait the message states (``retry after 30s``)."""
    match = re.search(r"retry[- ]after[:= ]+(\d+(?:\.\d+)?)", message, re.IGNORECASE)
    return float(match.group(1)) if match else None


def _is_transport_error(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith(("httpx", "httpcore", "pyqwest")) or "Connect" in type(exc).__name__


def server_message(exc: BaseException) -> str:
    """E2B's own words without the SDK's ``<status>: <boilerplate> - `` prefix."""
    text = str(exc).strip()
    if " - " in text and text[:3].isdigit():
        text = text.split(" - ", 1)[1]
    elif text[:3].isdigit() and text[3:5] == ": ":
        text = text[5:]
    return tail(text)


def tail(text: str, limit: int = 300) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else "…" + text[-limit:]
