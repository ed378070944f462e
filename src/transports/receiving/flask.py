"""Flask: a view function for a route of your own.

    app.add_url_rule("/webhooks", view_func=flask_view(receiver), methods=["POST"])

Needs the ``flask`` extra (``pip install 'webhooks-delivery[flask]'``).
"""

from __future__ import annotations

from collections.abc import Callable

import flask

from transports.receiving.receiver import Receiver
from webhook_core.canonical import MAX_BODY
from webhook_core.receiving import TOO_LARGE, Reply


def _response(reply: Reply) -> flask.Response:
    return flask.Response(reply.body, status=reply.status, content_type=reply.content_type)


def flask_view(receiver: Receiver, name: str = "webhooks") -> Callable[[], flask.Response]:
    """A Flask view that verifies and routes the request with ``receiver``."""

    def view() -> flask.Response:
        request = flask.request
        length = request.content_length
        if length is not None and length > MAX_BODY:
            return _response(TOO_LARGE)
        body = request.get_data(cache=False)
        if len(body) > MAX_BODY:
            return _response(TOO_LARGE)
        return _response(receiver.handle(body, request.headers))  # type: ignore[arg-type]

    view.__name__ = name
    return view
