"""The core (rensei) learns which providers exist from the pools app at start-up, and Test
connection builds its provider through the same factory the jobs use."""

from __future__ import annotations

from pools import providers as pool_providers
from pools.providers.fake import registered
from rensei import credentials, providers


def test_the_core_lists_the_registrys_providers() -> None:
    assert providers.kinds() == ["e2b"]
    assert providers.choices() == [("e2b", "E2B")]
    assert credentials.provider_label("e2b") == "E2B"


def test_a_provider_registered_later_is_listed_too() -> None:
    with registered():
        assert "fake" in providers.kinds()
        assert providers.label("fake") == "Fake (tests)"
    assert "fake" not in providers.kinds()


def test_an_unknown_kind_keeps_its_name() -> None:
    assert providers.label("gone") == "gone"


def test_test_connection_uses_the_one_factory(monkeypatch, settings) -> None:  # type: ignore[no-untyped-def]
    settings.RENSEI_WEB_PROVIDER_TIMEOUT = 2
    built: list[tuple[str, float | None]] = []
    real = pool_providers.build

    def spy(kind, secret, *, timeout=None):  # type: ignore[no-untyped-def]
        built.append((kind, timeout))
        return real(kind, secret, timeout=timeout)

    monkeypatch.setattr("pools.connection.build", spy)
    result = providers.check_connection("e2b", "e2b_some_key_1234")  # E2B is a closed port here
    assert not result.ok and "Could not reach E2B" in result.text
    assert built == [("e2b", 2.0)]
