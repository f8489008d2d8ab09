"""Test connection: one cheap authenticated call with the key jobs would use, its result kept
on the saved key and in the audit log.

Settings → Integrations runs it for a person; the demo's first-run job for the demo org. The
answer is in words and never carries the key.
"""

from __future__ import annotations

from typing import Any

from django.views.decorators.debug import sensitive_variables

from rensei import audit, credentials, providers
from rensei.crypto import DecryptionError
from rensei.models import Organization
from rensei.providers import ConnectionTest


@sensitive_variables()
def _redacted(result: ConnectionTest, resolved: credentials.ResolvedCredential) -> ConnectionTest:
    """The provider's words never carry the key; make sure of it before showing them."""
    secret = resolved.secret
    if secret and secret in result.text:
        return ConnectionTest(result.ok, result.text.replace(secret, "••••"))
    return result


@sensitive_variables()
def test_key(org: Organization, provider: str, *, actor: Any, channel: str) -> ConnectionTest:
    """Test the org's key for ``provider`` (else the server's); store the result on the saved
    key unless it was replaced meanwhile, and audit it."""
    source = ""
    version = credentials.key_version(org, provider)
    try:
        resolved = credentials.resolve_credential(org, provider)
    except credentials.MissingCredential:
        # The generic message sends people to this very page; here, say where on it.
        env_name = credentials.ENV_FALLBACK.get(provider, "the API key")
        result = ConnectionTest(
            False,
            f"No {credentials.provider_label(provider)} key to test yet: add one above, "
            f"or set {env_name} on the server.",
        )
    except DecryptionError:
        result = ConnectionTest(
            False,
            "The stored key cannot be decrypted with the server's RENSEI_ENCRYPTION_KEYS: "
            "replace the key, or put the key that encrypted it back in the ring.",
        )
    else:
        source = resolved.source
        # Bounded by RENSEI_WEB_PROVIDER_TIMEOUT (see pools/connection.py).
        result = _redacted(providers.check_connection(provider, resolved.secret), resolved)
        if source == "org":
            credentials.record_test(version, result.ok)
    audit.record(
        org=org,
        action="credential.tested",
        target=f"{credentials.provider_label(provider)} credential",
        actor=actor,
        channel=channel,
        detail={"provider": provider, "result": "ok" if result.ok else "failed", "source": source},
    )
    return result
