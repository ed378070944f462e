"""Test helpers for webhook senders and receivers.

A real loopback HTTP server (``LoopbackReceiver``) for tests in real time,
``signed_request`` for feeding receivers exactly what the sender sends, and
the time-travel kit (``RecordingReceiver`` with virtual clocks) for tests of
retry behaviour in virtual time.
"""

from transports.testing.loopback import (
    LOOPBACK_NETWORKS,
    MAX_WAIT,
    Behaviour,
    CloseWithoutResponse,
    Delay,
    Drip,
    Garbage,
    Handler,
    Hang,
    LoopbackReceiver,
    ReceivedRequest,
    Reset,
    Respond,
)
from transports.testing.signed import signed_request
from transports.testing.timetravel import (
    DEFAULT_EPOCH,
    RecordedRequest,
    RecordingReceiver,
    virtual_asyncio,
    virtual_trio,
)

__all__ = [
    "DEFAULT_EPOCH",
    "LOOPBACK_NETWORKS",
    "MAX_WAIT",
    "Behaviour",
    "CloseWithoutResponse",
    "Delay",
    "Drip",
    "Garbage",
    "Handler",
    "Hang",
    "LoopbackReceiver",
    "ReceivedRequest",
    "RecordedRequest",
    "RecordingReceiver",
    "Reset",
    "Respond",
    "signed_request",
    "virtual_asyncio",
    "virtual_trio",
]
