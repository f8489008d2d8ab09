"""Where webhooks may go: http(s) URLs on public addresses only.

Loopback, private, link-local (cloud metadata at 169.254.169.254 among them), shared
(100.64/10), multicast, reserved and unspecified addresses are refused, for an address
written in the URL and for every address its host name resolves to, at save time and again
at each delivery (so DNS that changes later cannot point a webhook inside the network).
The delivery then connects to the address that was checked, not a second lookup.
``RENSEI_WEBHOOKS_ALLOW_LOOPBACK`` (on with DEBUG and in tests) lets 127.0.0.1/::1 and
``localhost`` through for development.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

from django.conf import settings

MAX_URL_LENGTH = 500
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
# What a webhook URL looks like (the API document publishes the same pattern). A host is a
# name or an IPv4 address; IPv6 addresses are reached through a name (and checked after DNS).
URL_PATTERN = (
    r"^https?://[^\x00-\x20\x7f/?#@:\[\]\\]+(:" + _PORT + r")?([/?][^\x00-\x20\x7f#\\]*)?$"
)
URL_RE = re.compile(URL_PATTERN)
CONTROL_RE = re.compile(r"[\x00-\x20\x7f\\]")
SHARED = ipaddress.ip_network("100.64.0.0/10")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(ValueError):
    """A URL webhooks may not be sent to; the message says why, for the form."""


def loopback_allowed() -> bool:
    return bool(getattr(settings, "RENSEI_WEBHOOKS_ALLOW_LOOPBACK", False))


def refused(address: Address) -> str | None:
    """Why ``address`` is not a place for webhooks, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified or address.is_multicast:
        return "a reserved address"
    if address.is_loopback:
        return None if loopback_allowed() else "a loopback address"
    if address.is_link_local:
        return "a link-local address (such as cloud metadata)"
    if isinstance(address, ipaddress.IPv4Address) and address in SHARED:
        return "a shared (carrier-grade NAT) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    return None


def parse(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable-looking URL; UnsafeUrl otherwise."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"The URL is too long (at most {MAX_URL_LENGTH} characters).")
    if not url.startswith(("http://", "https://")):
        raise UnsafeUrl("Only http:// and https:// URLs can receive webhooks.")
    if CONTROL_RE.search(url):
        raise UnsafeUrl("The URL cannot contain spaces, control characters or backslashes.")
    if not URL_RE.fullmatch(url):
        raise UnsafeUrl(
            "Not a valid URL: http(s)://host[:port][/path], with no user name, password, "
            "#fragment or [IPv6] literal (use a host name)."
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("Not a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("Only http:// and https:// URLs can receive webhooks.")
    host = parts.hostname or ""
    if not host:
        raise UnsafeUrl("The URL needs a host name.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("Put no user name or password in the URL (the signature proves us).")
    if parts.fragment:
        raise UnsafeUrl("The URL cannot have a #fragment.")
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80)


def resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    found: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in found:
            found.append(address)
    return found


def check(url: str, *, require_resolution: bool = False) -> list[Address]:
    """The addresses ``url`` reaches, all checked; UnsafeUrl naming the first refusal.

    An unknown host name passes at save time (it may resolve later) and fails at delivery
    (``require_resolution``).
    """
    _, host, port = parse(url)
    name = host.lower().rstrip(".")
    local = name in ("localhost", "localhost.localdomain") or name.endswith(".localhost")
    if local and not loopback_allowed():
        raise UnsafeUrl("The URL points at this machine (loopback addresses are refused).")
    addresses = resolve(host, port)
    if not addresses and require_resolution:
        raise UnsafeUrl(f"The host name {host[:100]} does not resolve.")
    for address in addresses:
        why = refused(address)
        if why is not None:
            raise UnsafeUrl(
                f"The URL points at {why} ({address}); webhooks go to public addresses."
            )
    return addresses
