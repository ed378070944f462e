"""``webhooks --tenant``, ``webhooks tokens``, ``webhooks admin`` and ``webhooks serve --admin``."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from tests.admin.servers import serving
from tests.cli.cli_helpers import Command, handshake_then, one_line_error, run
from transports.admin import management_app
from transports.stores.sqlite import SQLiteStore
from transports.testing.loopback import LoopbackReceiver

OPERATOR = "operator-token-0123456789"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_tenant_option_scopes_every_command(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    added = run(db, "--tenant", "acme", "endpoints", "add", "https://acme.example/", "-q")
    assert added.exit_code == 0, added.output
    endpoint_id = added.output.strip()
    assert json.loads(run(db, "endpoints", "list", "--json").output) == []
    listed = json.loads(run(db, "--tenant", "acme", "endpoints", "list", "--json").output)
    assert [e["id"] for e in listed] == [endpoint_id]
    assert "no endpoint" in one_line_error(run(db, "endpoints", "remove", endpoint_id))
    assert "tenant id" in one_line_error(run(db, "--tenant", "bad id", "endpoints", "list"))


def test_tokens_are_shown_once_kept_as_digests_and_revocable(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    made = run(db, "tokens", "create", "--tenant", "acme", "--description", "ci")
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    as_json = json.loads(run(db, "tokens", "create", "--tenant", "globex", "--json").output)
    listed = json.loads(run(db, "tokens", "list", "--json").output)
    assert {t["tenant"] for t in listed} == {"acme", "globex"}
    assert token not in run(db, "tokens", "list").output
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("t.db*"))
    assert token.encode() not in stored and token[-20:].encode() not in stored
    assert "tenant id" in one_line_error(run(db, "tokens", "create", "--tenant", "a b"))

    with SQLiteStore(db) as store, serving(management_app(store), "uvicorn") as url:
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(url + "/api/v1/endpoints", headers=headers).status_code == 200
        acme_id = next(t["id"] for t in listed if t["tenant"] == "acme")
        assert run(db, "tokens", "revoke", acme_id).exit_code == 0
        assert httpx.get(url + "/api/v1/endpoints", headers=headers).status_code == 401
        other = {"Authorization": f"Bearer {as_json['token']}"}
        assert httpx.get(url + "/api/v1/endpoints", headers=other).status_code == 200
    assert "no token" in one_line_error(run(db, "tokens", "revoke", acme_id))


def test_serve_with_admin_dispatches_what_the_api_registers_and_publishes(tmp_path: Path) -> None:
    port = _port()
    with LoopbackReceiver() as rx:
        rx.route("/hook", handshake_then())
        serve = Command(
            "--db",
            str(tmp_path / "s.db"),
            "serve",
            "--runtime",
            "asyncio",
            "--admin",
            f"127.0.0.1:{port}",
            cwd=tmp_path,
            env={"WEBHOOKS_ADMIN_TOKEN": OPERATOR},
        )
        try:
            serve.wait_for("management API on")
            serve.wait_for("dispatching from")
            api = httpx.Client(
                base_url=f"http://127.0.0.1:{port}/api/v1",
                headers={"Authorization": f"Bearer {OPERATOR}"},
                params={"tenant": "acme"},
            )
            endpoint = api.post("/endpoints", json={"url": rx.url("/hook")}).json()
            rx.wait_for_path("/hook", 1, timeout=30)
            data = {"message_id": "m1", "channel": "sms", "to": "+919876543210", "status": "sent"}
            for _ in range(300):
                if api.get(f"/endpoints/{endpoint['id']}").json()["state"] == "active":
                    break
                rx.wait_for_path("/hook", 1, timeout=0.1)
            published = api.post("/events", json={"event": "message.sent", "data": data})
            assert published.json()["deliveries"] == 1
            (_, sent) = rx.wait_for_path("/hook", 2, timeout=30)
            assert sent.json()["event"] == "message.sent"
            assert serve.stop() == 0
        finally:
            serve.kill()


def test_admin_serves_the_api_alone_and_refuses_a_bad_address(tmp_path: Path) -> None:
    assert "HOST:PORT" in one_line_error(run(tmp_path / "a.db", "admin", "--listen", "nowhere"))
    port = _port()
    admin = Command(
        "--db", str(tmp_path / "a.db"), "admin", "--listen", f"127.0.0.1:{port}", cwd=tmp_path
    )
    try:
        admin.wait_for("management API on")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/endpoints").status_code == 401
        busy = run(tmp_path / "a.db", "admin", "--listen", f"127.0.0.1:{port}")
        assert "cannot listen" in one_line_error(busy)
    finally:
        admin.stop()
        admin.kill()


@pytest.fixture(autouse=True)
def _no_operator_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEBHOOKS_ADMIN_TOKEN", raising=False)
