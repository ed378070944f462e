"""Django: a view for your URLconf.

    urlpatterns = [path("webhooks/", django_view(receiver))]

The view is exempt from CSRF checks (the signature authenticates the request)
and accepts POST only. Needs the ``django`` extra
(``pip install 'webhooks-delivery[django]'``).
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from transports.receiving.receiver import Receiver
from transports.receiving.wsgi import content_length
from webhook_core.canonical import MAX_BODY
from webhook_core.receiving import TOO_LARGE, Reply


def _response(reply: Reply) -> HttpResponse:
    return HttpResponse(reply.body, status=reply.status, content_type=reply.content_type)


def django_view(receiver: Receiver) -> Callable[[HttpRequest], HttpResponse]:
    """A Django view that verifies and routes the request with ``receiver``."""

    @csrf_exempt
    @require_POST
    def webhook(request: HttpRequest) -> HttpResponse:
        length = content_length(request.META.get("CONTENT_LENGTH"))
        if length is not None and length > MAX_BODY:
            return _response(TOO_LARGE)
        return _response(receiver.handle(request.body, request.headers))

    return webhook
