"""Where webhooks may go: public http(s) addresses; loopback only when allowed."""

from __future__ import annotations

from unittest import mock

import pytest
from django.test import override_settings

from events import egress
from events.egress import UnsafeUrl, check


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/x", "Only http:// and https://"),
        ("javascript:alert(1)", "Only http:// and https://"),
        ("http:///nohost", "Not a valid URL"),
        ("http://user:pw@example.com/", "no user name, password"),
        ("http://10.0.0.5/hook", "private address"),
        ("http://192.168.1.10/hook", "private address"),
        ("http://172.16.0.1/hook", "private address"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[fe80::1]/x", "IPv6"),
        ("http://[fd00:ec2::254]/x", "IPv6"),
        ("http://100.100.100.200/x", "shared"),
        ("http://0.0.0.0/x", "reserved"),
        ("http://[::ffff:10.0.0.1]/x", "IPv6"),
        ("http://example.com:99999/", "Not a valid URL"),
        ("https://example.com/" + "a" * 500, "too long"),
        ("http://exa mple.com/", "cannot contain spaces"),
        ("http://example.com/#top", "#fragment"),
        ("HTTP://example.com/", "Only http:// and https://"),
    ],
)
def test_refused(url: str, why: str) -> None:
    with pytest.raises(UnsafeUrl, match=why):
        check(url)


@override_settings(RENSEI_WEBHOOKS_ALLOW_LOOPBACK=False)
@pytest.mark.parametrize("url", ["http://127.0.0.1:9/", "http://127.1.2.3/", "http://localhost/x"])
def test_loopback_refused_in_production(url: str) -> None:
    with pytest.raises(UnsafeUrl, match=r"loopback|this machine"):
        check(url)


@override_settings(RENSEI_WEBHOOKS_ALLOW_LOOPBACK=True)
def test_loopback_allowed_for_development() -> None:
    assert [str(a) for a in check("http://127.0.0.1:9/hooks")] == ["127.0.0.1"]


@override_settings(RENSEI_WEBHOOKS_ALLOW_LOOPBACK=False)
def test_a_name_resolving_to_a_private_address_is_refused() -> None:
    infos = [(2, 1, 6, "", ("10.1.2.3", 443))]
    with (
        mock.patch.object(egress.socket, "getaddrinfo", return_value=infos),
        pytest.raises(UnsafeUrl, match="private address"),
    ):
        check("https://hooks.example.com/x")


@override_settings(RENSEI_WEBHOOKS_ALLOW_LOOPBACK=False)
@pytest.mark.parametrize(
    ("resolved", "why"),
    [("fd00:ec2::254", "private"), ("fe80::1", "link-local"), ("::1", "loopback")],
)
def test_ipv6_addresses_from_dns_are_checked(resolved: str, why: str) -> None:
    infos = [(10, 1, 6, "", (resolved, 443, 0, 0))]
    with (
        mock.patch.object(egress.socket, "getaddrinfo", return_value=infos),
        pytest.raises(UnsafeUrl, match=why),
    ):
        check("https://v6.example.com/x")


def test_a_public_address_passes_and_unknown_names_wait_for_delivery() -> None:
    infos = [(2, 1, 6, "", ("93.184.215.14", 443))]
    with mock.patch.object(egress.socket, "getaddrinfo", return_value=infos):
        assert [str(a) for a in check("https://hooks.example.com/x")] == ["93.184.215.14"]
    with mock.patch.object(egress.socket, "getaddrinfo", side_effect=OSError("no")):
        assert check("https://nowhere.invalid/x") == []
        with pytest.raises(UnsafeUrl, match="does not resolve"):
            check("https://nowhere.invalid/x", require_resolution=True)
