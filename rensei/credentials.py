"""Which provider credential a job uses: the org's own, else the server environment.

Resolution order for E2B: the org's credential (Settings → Integrations), else the
``E2B_API_KEY`` environment variable, else ``MissingCredential`` with a message that says
where to add one. The secret leaves this module only inside ``ResolvedCredential`` and is
never logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from rensei.crypto import decrypt
from rensei.models import Credential, Organization

ENV_FALLBACK = {"e2b": "E2B_API_KEY"}
LABELS = {"e2b": "E2B"}


class MissingCredential(LookupError):
    pass


@dataclass(frozen=True)
class ResolvedCredential:
    secret: str = field(repr=False)
    source: str  # "org" | "environment"
    last_four: str

    def describe(self) -> str:
        if self.source == "org":
            return f"the organisation's key ending ••••{self.last_four}"
        return "E2B_API_KEY from the server environment"


def environment_secret(provider: str = "e2b") -> str:
    name = ENV_FALLBACK.get(provider)
    return str(getattr(settings, name, "") or "") if name else ""


def resolve_credential(org: Organization, provider: str = "e2b") -> ResolvedCredential:
    row = Credential.objects.filter(org=org, provider=provider).first()
    if row is not None:
        return ResolvedCredential(
            secret=decrypt(row.secret_encrypted), source="org", last_four=row.last_four
        )
    secret = environment_secret(provider)
    if secret:
        return ResolvedCredential(secret=secret, source="environment", last_four=secret[-4:])
    label = LABELS.get(provider, provider)
    raise MissingCredential(
        f"No {label} credential: add one in Settings → Integrations "
        f"or set {ENV_FALLBACK.get(provider, 'the API key')} on the server."
    )
