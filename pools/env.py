"""A pool's environment values: encrypted at rest, like a session's (sessions/env.py).

The config column (``EncryptedConfigField``) stores ``envVars`` as ``envVarsEncrypted``: each
value a Fernet token of the key ring (rensei/crypto.py). Loaded, the config holds the values
in clear again, so the jobs hand them to the provider as before; every page shows the config
through ``pools.config.masked``, and ``dumpdata`` writes the stored (encrypted) form.

Editing is write-only, like an API key: the pool form lists the names, a bare ``NAME`` line
(or, in the raw JSON and the Django admin, the value ``••••`` the pages show) keeps the stored
value, ``NAME=value`` sets or replaces it, and a name left out is removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import models
from django.db.models.fields.json import KeyTransform

from pools.config import ENCRYPTED_ENV_KEY, MASK, ConfigError
from rensei.crypto import DecryptionError, decrypt, encrypt


class SecretValue(str):
    """An env value in clear that does not show itself in a ``repr``: a config dict that ends
    up in a log line, a traceback or the template engine's debug log (a missing key logs
    the dict it looked in) shows ``••••``. ``str()`` and JSON still give the value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK)


def stored_form(config: Any) -> Any:
    """The config as the database holds it: env values encrypted, none in clear."""
    if not isinstance(config, dict) or not isinstance(config.get("envVars"), dict):
        return config
    out = {k: v for k, v in config.items() if k != "envVars"}
    sealed = dict(out.get(ENCRYPTED_ENV_KEY) or {})
    sealed.update({name: encrypt(str(value)) for name, value in config["envVars"].items()})
    out[ENCRYPTED_ENV_KEY] = sealed
    return out


def clear_form(config: Any) -> Any:
    """The config with env values in clear. A value the key ring cannot decrypt stays sealed
    under ``envVarsEncrypted`` (saved back as it was), and the config model refuses that key
    when a job validates it, so a sandbox never starts without it unnoticed."""
    if not isinstance(config, dict) or not isinstance(config.get(ENCRYPTED_ENV_KEY), dict):
        return config
    out = {k: v for k, v in config.items() if k != ENCRYPTED_ENV_KEY}
    clear: dict[str, str] = dict(out.get("envVars") or {})
    sealed: dict[str, str] = {}
    for name, token in config[ENCRYPTED_ENV_KEY].items():
        try:
            clear[name] = SecretValue(decrypt(str(token)))
        except DecryptionError:
            sealed[name] = token
    if clear:
        out["envVars"] = clear
    if sealed:
        out[ENCRYPTED_ENV_KEY] = sealed
    return out


class EncryptedConfigField(models.JSONField):
    """A JSON config whose ``envVars`` values are encrypted in the column and in dumps."""

    def get_prep_value(self, value: Any) -> Any:
        return super().get_prep_value(stored_form(value))

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        loaded = super().from_db_value(value, expression, connection)
        return loaded if isinstance(expression, KeyTransform) else clear_form(loaded)

    def to_python(self, value: Any) -> Any:
        # loaddata hands over the dumped (encrypted) form.
        return clear_form(super().to_python(value))

    def value_to_string(self, obj: Any) -> Any:
        # dumpdata: the stored form, never the values in clear.
        return stored_form(self.value_from_object(obj))


def keep_stored(env: Any, stored: Mapping[str, str] | None) -> Any:
    """``env`` with each value ``••••`` replaced by the stored value of that name.

    ``ConfigError`` on ``envVars`` when a name has no stored value to keep.
    """
    if not isinstance(env, dict):
        return env
    stored = stored or {}
    missing = sorted(name for name, value in env.items() if value == MASK and name not in stored)
    if missing:
        raise ConfigError(
            {
                "envVars": [
                    f"{', '.join(missing)}: no stored value to keep ({MASK} keeps a stored "
                    "value): give the value."
                ]
            }
        )
    return {name: stored[name] if value == MASK else value for name, value in env.items()}


def config_keeping_stored(raw: Any, stored_config: Any) -> Any:
    """A raw config (JSON editor, Django admin) with masked env values kept as stored."""
    if not isinstance(raw, dict) or "envVars" not in raw:
        return raw
    stored = stored_config.get("envVars") if isinstance(stored_config, dict) else None
    return {**raw, "envVars": keep_stored(raw["envVars"], stored)}
