"""Which hosts a download may reach: the redirect side of server-side request forgery. A
hop to a loopback, link-local or private address (a cloud metadata service, an admin
port, a file server on 10.x) is refused unless the operator trusts that host: the config
names it for the job (a hub handle or source, `[pypi] upstream`) or lists it in
`allow_hosts`. Names are resolved here and again when requests connects, so a name that
changes its answer in between (DNS rebinding) can slip through; the check stops the
plain redirect."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from mirror.core.errors import HostRefused

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Python's is_private also covers documentation and benchmark ranges, which are not
# internal services (and some registries' mirrors answer from them); list what is.
_INTERNAL = [
    (ipaddress.ip_network(net), kind)
    for net, kind in [
        ("127.0.0.0/8", "loopback"),
        ("::1/128", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("fe80::/10", "link-local"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "private (shared address space)"),
        ("fc00::/7", "private (unique local)"),
        ("0.0.0.0/8", "unspecified"),
        ("::/128", "unspecified"),
    ]
]


def internal_kind(address: _Address) -> str | None:
    """'loopback', 'link-local', 'private'... or None for an address outside."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for network, kind in _INTERNAL:
        if address in network:
            return kind
    return None


# A name's answer is kept this long: a resolver asked for the same host by fifty threads
# at once dropped some of the questions, and each cost its 5 s retry (seen with a build
# sandbox's range requests through the local index).
ANSWER_SECONDS = 30.0
_answers: dict[str, tuple[float, list[_Address]]] = {}
_answers_lock = threading.Lock()


def _addresses(host: str) -> list[_Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    now = time.monotonic()
    with _answers_lock:
        known = _answers.get(host)
    if known is not None and now - known[0] < ANSWER_SECONDS:
        return known[1]
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []  # the request itself will fail and say so
    found = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    with _answers_lock:
        _answers[host] = (now, found)
    return found


@dataclass(frozen=True)
class HostPolicy:
    trusted: frozenset[str] = frozenset()
    setting: str = "allow_hosts"  # where the operator adds a host, for the message

    @classmethod
    def trusting(cls, urls_or_hosts: Iterable[str], setting: str) -> HostPolicy:
        hosts = set()
        for item in urls_or_hosts:
            host = urlsplit(item).hostname if "://" in item else item
            if host:
                hosts.add(host.lower().strip("[]"))
        return cls(frozenset(hosts), setting)

    def check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            scheme = parts.scheme or "scheme-less"
            raise HostRefused(f"{scheme} URLs are refused: http and https only")
        host = (parts.hostname or "").lower()
        if not host:
            raise HostRefused("a URL without a host")
        if host in self.trusted:
            return
        for address in _addresses(host):
            kind = internal_kind(address)
            if kind:
                raise HostRefused(
                    f"{host} is a {kind} address ({address}); list it in {self.setting} "
                    "to let downloads reach it"
                )
