"""The management HTTP API (needs the ``asgi`` extra): ``management_app(store)``."""

from transports.admin.app import management_app

__all__ = ["management_app"]
