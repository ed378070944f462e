"""``webhooks serve --metrics --log-format json -vv`` as a real process over loopback HTTP."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path

import httpx

from tests.cli.cli_helpers import Command, handshake_then, run, run_process
from transports.testing import LoopbackReceiver, Respond

MESSAGE = {"message_id": "m1", "channel": "sms", "to": "+919876543210", "status": "delivered"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_logs_json_lines_and_serves_metrics(tmp_path: Path) -> None:
    db = tmp_path / "webhooks.db"
    port = free_port()
    with LoopbackReceiver() as rx:
        rx.route("/hook", handshake_then(Respond(503)))
        serve = Command(
            "--db", str(db), "serve", "--runtime", "asyncio", "-vv", "--log-format", "json",
            "--metrics", f"127.0.0.1:{port}", cwd=tmp_path,
        )  # fmt: skip
        try:
            serve.wait_for("dispatching from")
            added = run_process(
                "--db", str(db), "endpoints", "add", rx.url("/hook"), "--json", cwd=tmp_path
            )
            assert added.returncode == 0, added.stderr
            serve.wait_for('"outcome": "verified"')
            published = run(db, "publish", "message.delivered", "--data", json.dumps(MESSAGE))
            assert published.exit_code == 0, published.output
            serve.wait_for('"status": 503')
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            assert serve.stop(signal.SIGTERM) == 0, serve.output
        finally:
            serve.kill()
    assert 'webhooks_attempts_total{outcome="http_error"} 1.0' in metrics
    lines = [json.loads(x) for x in serve.output.splitlines() if x.startswith("{")]
    [attempt] = [x for x in lines if x.get("status") == 503]
    assert attempt["level"] == "warning" and attempt["attempt"] == 1
    assert attempt["event"] == "message.delivered" and attempt["next_attempt_at"].endswith("Z")


def test_a_bad_metrics_address_is_a_one_line_error(tmp_path: Path) -> None:
    result = run(tmp_path / "w.db", "serve", "--metrics", "localhost")
    assert result.exit_code == 2
    assert "is not host:port" in result.output and "Traceback" not in result.output
