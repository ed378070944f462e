"""Tenant ids: whose endpoints, events and deliveries a record is.

A tenant id is 1-64 characters of ASCII letters, digits, ``.``, ``_`` and
``-``, starting with a letter or digit. Records made without one belong to
``default``.
"""

from __future__ import annotations

import re

from webhook_core.errors import ConfigError

DEFAULT_TENANT = "default"
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def validate_tenant(tenant: object) -> str:
    """Return ``tenant`` if it is a valid tenant id, else raise ``ConfigError``."""
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise ConfigError(
            f"tenant id {tenant!r} is not valid: use 1-64 ASCII letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )
    return tenant
