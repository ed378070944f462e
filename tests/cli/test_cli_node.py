"""``webhooks test`` against the platform document's own Node.js receiver (Express, tests/node).

That receiver computes its HMAC over ``JSON.stringify(req.body)``; the tool's
sample bodies must verify there, and a wrong secret must get its 401.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.cli_helpers import run_process
from tests.core.test_node_receiver import Receiver, receiver
from tests.receiving.receiving_helpers import OTHER_SECRET

pytestmark = pytest.mark.node

__all__ = ["receiver"]  # the module-scoped Node.js receiver fixture, one per secret


@pytest.mark.parametrize("event", ["message.delivered", "grievance.created", "payment.refunded"])
def test_webhooks_test_is_verified_by_the_node_receiver(
    receiver: Receiver, event: str, tmp_path: Path
) -> None:
    done = run_process("test", receiver.url, "--event", event, "--secret", receiver.secret,
                       cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "response: 200 OK" in done.stdout
    assert done.stdout.rstrip().endswith("body: OK")


def test_webhooks_test_with_a_wrong_secret_gets_401(receiver: Receiver, tmp_path: Path) -> None:
    done = run_process("test", receiver.url, "--event", "message.delivered", "--secret",
                       OTHER_SECRET, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "response: 401 Unauthorized" in done.stdout
    assert "Invalid signature" in done.stdout
