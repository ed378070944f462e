"""Test helpers for webhook senders and receivers: a real loopback HTTP server."""

from transports.testing.loopback import (
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

__all__ = [
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
    "Reset",
    "Respond",
]
