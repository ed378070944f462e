"""The one TLS-context builder: every transport and ``OutboundPolicy`` make their contexts here.

``verify`` says how certificates are checked: ``True`` (or ``None``) against
the public certificate authorities (certifi's bundle) plus ``ca_file`` if
given; a path: against that PEM bundle only; ``False``: not at all (tests
only); an ``ssl.SSLContext``: as that context says, returned unchanged.
Contexts made here offer ALPN ``http/1.1`` (httpcore sets its own ALPN list
on the context it is given).
"""

from __future__ import annotations

import ssl

import certifi

from webhook_core import ConfigError


def ssl_context(
    verify: ssl.SSLContext | str | bool | None = True, *, ca_file: str | None = None
) -> ssl.SSLContext:
    """The TLS context for ``verify`` (see the module docstring).

    A ``ca_file`` that cannot be loaded raises ``ConfigError`` naming it.
    """
    if isinstance(verify, ssl.SSLContext):
        return verify
    if verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str):
        context = ssl.create_default_context(cafile=verify)
    else:
        context = ssl.create_default_context(cafile=certifi.where())
        if ca_file is not None:
            try:
                context.load_verify_locations(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"CA file {ca_file!r} cannot be loaded: {exc}") from None
    context.set_alpn_protocols(["http/1.1"])
    return context
