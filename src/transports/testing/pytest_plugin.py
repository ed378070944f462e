"""Pytest fixtures of the time-travel kit (registered automatically when the package is installed).

- ``virtual_anyio_backend``: ``("trio", options)`` and ``("asyncio", options)`` with
  virtual clocks; use it as your ``anyio_backend`` to run async tests in virtual time.
- ``virtual_clock``: a ``VirtualClock`` (autojump) for the threaded driver.
- ``recording_receiver``: a ``RecordingReceiver`` on ``virtual_clock``.
"""

from __future__ import annotations

from typing import Any

import pytest

from transports.clocks import VirtualClock
from transports.testing.timetravel import (
    DEFAULT_EPOCH,
    RecordingReceiver,
    virtual_asyncio,
    virtual_trio,
)


@pytest.fixture(params=["trio", "asyncio"])
def virtual_anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """An anyio backend whose clock is virtual: trio ``MockClock`` or a ``looptime`` loop."""
    if request.param == "trio":
        return "trio", virtual_trio()
    return "asyncio", virtual_asyncio()


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A virtual wall clock for the threaded driver, starting at ``DEFAULT_EPOCH``."""
    return VirtualClock(DEFAULT_EPOCH)


@pytest.fixture
def recording_receiver(virtual_clock: VirtualClock) -> RecordingReceiver:
    """A recording receiver on ``virtual_clock`` (for the threaded driver)."""
    return RecordingReceiver(virtual_clock)
