"""The outbound address guard: resolve once, vet every address, connect only to a vetted one.

Theory of operation
-------------------
The HTTP transports do not let their connection pool resolve names. The httpx
transports give it a network backend (``GuardedAsyncBackend`` /
``GuardedSyncBackend``, in ``transports.http.httpcore_backends``) whose
``connect_tcp`` resolves the host itself (``resolve_vetted``), vets every
address with ``webhook_core.addresses.vet_address`` under the
``OutboundPolicy``, and then connects to the vetted IP addresses, in the
resolver's order, until one answers. The socket is opened to an address that
was checked, so no second lookup can hand a DNS-rebinding attacker the gap
between check and connect. TLS is unaffected: the pool still verifies the
certificate against, and sends SNI for, the host name in the URL.

A host is refused when **any** of its addresses is refused, not only when all
are: a name that resolves to one public and one private address is a rebinding
or misconfiguration signal, and which of them a connect would reach is up to
the network. The refusal is a ``BlockedAddress``, which the transports report
as a failed attempt of kind ``Outcome.BLOCKED`` naming the host, the address
and the rule.

Proxies: environment variables (``HTTPS_PROXY``, ``NO_PROXY``, ``.netrc``)
are never read. With a proxy configured explicitly the proxy opens the
connection and resolves the name itself, so the guard can only check the
target's addresses beforehand (best effort: the proxy's own lookup may
differ); the proxy must enforce egress rules of its own.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from transports.http.lookups import lookup, lookup_sync
from transports.http.tls import ssl_context
from webhook_core import ConfigError
from webhook_core.addresses import (
    AddressVerdict,
    IPAddress,
    Network,
    parse_host,
    parse_networks,
    vet_address,
)

ENV_ALLOWED_NETWORKS = "WEBHOOKS_ALLOWED_NETWORKS"
ENV_ALLOW_HTTP = "WEBHOOKS_ALLOW_HTTP"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class BlockedAddress(Exception):
    """The guard refused to connect: ``detail`` names the host, the address and the rule."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} is not a yes/no flag (use 1 or 0)")


@attrs.frozen
class OutboundPolicy:
    """Where webhooks may be sent.

    ``allowed_networks``: CIDR networks let through the address guard (for
    example ``127.0.0.0/8`` for tests that deliver to a loopback receiver);
    cloud metadata addresses stay refused. ``allow_http``: plain ``http://``
    URLs may be registered (HTTPS only by default). ``ca_file``: a PEM bundle
    of certificate authorities trusted in addition to the public ones.
    ``proxy``: send through this proxy (never taken from the environment).
    """

    allowed_networks: tuple[Network, ...] = attrs.field(default=(), converter=parse_networks)
    allow_http: bool = False
    ca_file: str | None = None
    proxy: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OutboundPolicy:
        """The policy set by ``WEBHOOKS_ALLOWED_NETWORKS`` (comma-separated CIDRs) and
        ``WEBHOOKS_ALLOW_HTTP=1``; ``ConfigError`` names a malformed value."""
        env = os.environ if environ is None else environ
        networks = env.get(ENV_ALLOWED_NETWORKS, "")
        try:
            allowed = parse_networks(networks)
        except ConfigError as exc:
            raise ConfigError(f"{ENV_ALLOWED_NETWORKS}: {exc}") from None
        return cls(
            allowed_networks=allowed,
            allow_http=_flag(ENV_ALLOW_HTTP, env.get(ENV_ALLOW_HTTP, "")),
        )

    def vet(self, address: IPAddress) -> AddressVerdict:
        """The guard's verdict on one address under this policy."""
        return vet_address(address, self.allowed_networks)

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying TLS context: the public CAs (certifi) plus ``ca_file`` if set."""
        return ssl_context(True, ca_file=self.ca_file)


def vetted(host: str, addresses: Iterable[IPAddress], policy: OutboundPolicy) -> list[str]:
    """``addresses`` as connectable strings, or ``BlockedAddress`` if any is refused."""
    unique = list(dict.fromkeys(addresses))
    if not unique:
        raise BlockedAddress(f"{host} has no addresses")
    for address in unique:
        verdict = policy.vet(address)
        if not verdict.allowed:
            where = "" if str(address) == host else f" to {host}"
            raise BlockedAddress(f"refused to connect{where}: {verdict.reason}")
    return [str(a) for a in unique]


def _literal(host: str) -> IPAddress | None:
    try:
        return parse_host(host)
    except ConfigError as exc:
        raise BlockedAddress(f"refused to connect: {exc}") from None


def refusal_at_registration(host: str, policy: OutboundPolicy) -> str | None:
    """Why the guard would refuse ``host`` when it is an IP literal, else None.

    A host name is not resolved here: its addresses are vetted at connect time.
    """
    try:
        literal = _literal(host)
        if literal is not None:
            vetted(host, [literal], policy)
    except BlockedAddress as exc:
        return exc.detail
    return None


def _addresses(infos: Iterable[tuple[Any, ...]]) -> list[IPAddress]:
    found: list[IPAddress] = []
    for info in infos:
        text = str(info[4][0])
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and len(info[4]) > 3 and info[4][3]:
            address = ipaddress.IPv6Address(f"{address}%{info[4][3]}")
        found.append(address)
    return found


async def resolve_vetted(host: str, port: int, policy: OutboundPolicy) -> list[str]:
    """Resolve ``host`` once and vet every address; the addresses to connect to, in order.

    The wait ends with the caller's cancel scope (the lookup is abandoned, not
    stopped). Raises ``BlockedAddress`` if any address is refused,
    ``httpcore.ConnectError`` if the name does not resolve.
    """
    literal = _literal(host)
    if literal is not None:
        return vetted(host, [literal], policy)
    try:
        infos = await lookup(host, port)
    except (OSError, UnicodeError) as exc:
        import httpcore  # noqa: PLC0415 (importing httpcore imports trio and anyio)

        raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
    return vetted(host, _addresses(infos), policy)


def resolve_vetted_sync(
    host: str, port: int, policy: OutboundPolicy, *, timeout: float | None = None
) -> list[str]:
    """``resolve_vetted`` for threads, waiting at most ``timeout`` seconds for the lookup.

    Raises ``LookupTimeout`` when the time is up (the lookup is abandoned, not
    stopped), besides ``resolve_vetted``'s errors.
    """
    literal = _literal(host)
    if literal is not None:
        return vetted(host, [literal], policy)
    try:
        infos = lookup_sync(host, port, timeout)
    except (OSError, UnicodeError) as exc:
        import httpcore  # noqa: PLC0415 (importing httpcore imports trio and anyio)

        raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
    return vetted(host, _addresses(infos), policy)
