"""The code in the user-facing docs runs as pasted."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pg

DOCS = Path(__file__).resolve().parents[2] / "docs"
SRC = DOCS.parent / "src"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def run_as_pasted(code: str, directory: Path) -> None:
    """Run ``code`` as a script in a fresh interpreter, on this checkout's ``src``."""
    script = directory / "example.py"
    script.write_text(code, encoding="utf-8")
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=directory,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    assert done.returncode == 0, done.stderr


def python_blocks(name: str) -> list[str]:
    return BLOCK.findall((DOCS / name).read_text(encoding="utf-8"))


VIRTUAL_TIME = python_blocks("testing-in-virtual-time.md")
WIRE = python_blocks("wire-contract.md")
STORAGE = python_blocks("storage.md")
SECURITY = python_blocks("security.md")
PERFORMANCE = python_blocks("performance.md")


def test_the_tutorial_has_an_example_per_runtime() -> None:
    text = "\n".join(VIRTUAL_TIME)
    assert 'backend="trio"' in text
    assert 'backend="asyncio"' in text
    assert "ThreadedWebhookService" in text


@pytest.mark.parametrize("index", range(len(VIRTUAL_TIME)))
def test_virtual_time_tutorial_block_runs(index: int, tmp_path: Path) -> None:
    run_as_pasted(VIRTUAL_TIME[index], tmp_path)


@pytest.mark.parametrize("index", range(len(WIRE)))
def test_wire_contract_block_runs(index: int, tmp_path: Path) -> None:
    run_as_pasted(WIRE[index], tmp_path)


@pytest.mark.parametrize("index", range(len(STORAGE)))
def test_storage_guide_block_runs(index: int, tmp_path: Path) -> None:
    if "postgresql://" in STORAGE[index]:
        pg.require_postgres()
    run_as_pasted(STORAGE[index], tmp_path)


@pytest.mark.parametrize("index", range(len(SECURITY)))
def test_security_block_runs(index: int, tmp_path: Path) -> None:
    run_as_pasted(SECURITY[index], tmp_path)


def test_every_test_the_security_table_names_exists() -> None:
    text = (DOCS / "security.md").read_text(encoding="utf-8")
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", text)
    assert len(named) >= 40
    root = DOCS.parent
    for path, name in named:
        source = (root / path).read_text(encoding="utf-8")
        assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"{path}::{name}"


def test_the_performance_guide_shows_the_default_and_httpx_transports() -> None:
    text = "\n".join(PERFORMANCE)
    assert 'http="httpx"' in text
    assert "ThreadedWebhookService(" in text
    assert "async with WebhookService(" in text


@pytest.mark.parametrize("index", range(len(PERFORMANCE)))
def test_performance_guide_block_runs(index: int, tmp_path: Path) -> None:
    run_as_pasted(PERFORMANCE[index], tmp_path)


def test_the_wire_contract_example_body_is_what_the_library_sends() -> None:
    from webhook_core import build_event, platform_catalog

    text = (DOCS / "wire-contract.md").read_text(encoding="utf-8")
    example = re.search(r"```json\n(\{\"event\":\"message.delivered\".*?)\n```", text)
    assert example is not None
    event = build_event(
        platform_catalog(),
        "message.delivered",
        {
            "message_id": "msg_123",
            "channel": "whatsapp",
            "to": "+919876543210",
            "status": "delivered",
        },
        event_id="evt_01HZX3J5K8Q2W9",
        now=1704067200,
    )
    assert event.body.decode() == example.group(1)


def test_the_readme_sender_restarts_without_a_second_endpoint_or_waiting_for_retries(
    tmp_path: Path,
) -> None:
    """README's sending example, run twice against a receiver that refuses events.

    The second start finds its endpoint (no second one) and waits for its
    handshake only, not for the first run's delivery that is being retried.
    """
    from tests.cli.cli_helpers import handshake_then
    from transports.stores.sqlite import SQLiteStore
    from transports.testing import LoopbackReceiver, Respond

    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    [sending] = [b for b in BLOCK.findall(readme) if "WebhookService(" in b]
    with LoopbackReceiver() as rx:
        rx.route("/webhooks", handshake_then(Respond(500, b"down")))
        code = sending.replace("https://receiver.example.com/webhooks", rx.url("/webhooks"))
        code = code.replace(
            'WebhookService(SQLiteStore("webhooks.db"))',
            'WebhookService(SQLiteStore("webhooks.db"), allow_http=True,'
            ' allowed_networks="127.0.0.0/8")',
        )
        assert rx.url("/webhooks") in code and "allowed_networks" in code
        for _ in range(2):
            run_as_pasted(code, tmp_path)
    store = SQLiteStore(tmp_path / "webhooks.db")
    assert len(store.list_endpoints()) == 1
    store.close()
