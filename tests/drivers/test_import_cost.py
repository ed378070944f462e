"""The threaded driver loads no event loop library: neither trio, anyio nor asyncio.

Each import runs in a fresh interpreter (``-I``: no site customisation, no
``PYTHONPATH``) with only ``src`` added to the path, and reports what it loaded.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
EVENT_LOOPS = {"trio", "anyio", "asyncio"}


def loaded_by(statement: str) -> set[str]:
    """The modules in ``sys.modules`` after ``statement`` in a fresh interpreter."""
    code = f"import sys; sys.path.insert(0, {str(SRC)!r}); {statement}; print(*sys.modules)"
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


@pytest.mark.parametrize(
    "statement",
    [
        "import transports.sync.service",
        "from transports import ThreadedWebhookService",
        "from transports import HttpxSyncTransport, Http1SyncTransport, SQLiteStore, VirtualClock",
        "import transports",
    ],
)
def test_the_threaded_driver_loads_no_event_loop_library(statement: str) -> None:
    loaded = loaded_by(statement)
    assert "transports" in loaded
    assert loaded & EVENT_LOOPS == set()
    # httpcore imports trio and anyio as it loads: it comes only with a transport made.
    assert "httpcore" not in loaded


def test_making_an_httpx_transport_brings_httpcore() -> None:
    # The check above would pass vacuously if nothing ever imported httpcore.
    loaded = loaded_by("from transports import HttpxSyncTransport; HttpxSyncTransport().close()")
    assert "httpcore" in loaded


def test_the_async_driver_still_loads_anyio() -> None:
    assert "anyio" in loaded_by("from transports import WebhookService")


def test_every_public_name_resolves() -> None:
    every = "[getattr(transports, n) for n in transports.__all__ if n != 'PostgresStore']"
    names = loaded_by(f"import transports; {every}")
    assert "transports.aio.service" in names
