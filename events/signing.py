"""Webhook signatures: ``Rensei-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``.

During a rotation's overlap window the header carries one ``v1=`` per secret (new first),
so a receiver that still holds the old secret keeps verifying while it switches. The
receiver's side is in docs/events.md (and ``verify`` below is the same check).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

HEADER = "Rensei-Signature"
SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 300


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def header(timestamp: int, body: bytes, signing_secrets: Iterable[str]) -> str:
    return ",".join(
        [f"t={timestamp}"] + [f"v1={sign(secret, timestamp, body)}" for secret in signing_secrets]
    )


def verify(
    value: str, body: bytes, secret: str, now: int, tolerance: int = TOLERANCE_SECONDS
) -> bool:
    """True when ``value`` (the header) signs ``body`` with ``secret`` within ``tolerance``."""
    parts = [p.partition("=") for p in value.split(",")]
    stamps = [v for k, _, v in parts if k == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body)
    return any(k == "v1" and hmac.compare_digest(v, expected) for k, _, v in parts)
