"""One bad endpoint does not hold up the others, and failing endpoints get disabled.

Every driver, real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.conformance.harness import DRIVERS, message, running, verifying, wait_endpoint
from transports.testing import Hang, LoopbackReceiver, Respond
from webhook_core import (
    DeliveryState,
    Endpoint,
    EndpointState,
    GatePolicy,
    HealthPolicy,
    Outcome,
    RetryPolicy,
)

FAST = RetryPolicy(schedule=(0.2, 0.2, 0.2, 0.2), timeout=0.5)


def until(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_open_circuit_defers_a_dead_endpoint_without_sending(driver: str) -> None:
    gate = GatePolicy(max_in_flight=1, initial_window=1, failures_to_open=2, cooldown=60.0)
    with (
        LoopbackReceiver(default=verifying()) as rx,
        running(driver, policy=FAST, gate=gate, health=None, lease=6.0) as hooks,
    ):
        dead = hooks.add_endpoint(rx.url("/dead"))
        alive = hooks.add_endpoint(rx.url("/ok"))
        for endpoint in (dead, alive):
            wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)
        rx.route("/dead", Hang(30))
        rx.route("/ok", Respond(200))
        for i in range(6):
            hooks.publish("message.sent", message(i))

        def settled() -> bool:
            ours = [d for d in hooks.list_deliveries(limit=100)]
            ok = [d for d in ours if d.endpoint_id == alive.id]
            held = [
                d
                for d in ours
                if d.endpoint_id == dead.id and d.reason and "circuit open" in d.reason
            ]
            return (
                len(ok) == 6
                and all(d.state is DeliveryState.DELIVERED for d in ok)
                and (len(held) == 6)
            )

        until(settled)
        dead_requests = [
            r for r in rx.requests_for("/dead") if r.json()["event"] != "webhook.verification"
        ]
        assert len(dead_requests) == 2
        attempts = [a for d in hooks.list_deliveries(limit=100) for a in d.attempts]
        timeouts = [a for a in attempts if a.outcome is Outcome.TIMEOUT]
        assert len(timeouts) == 2


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("store_kind", ["memory", "sqlite"])
def test_a_run_of_failed_deliveries_disables_the_endpoint_and_calls_the_hook(
    driver: str, store_kind: str
) -> None:
    disabled: list[Endpoint] = []
    lock = threading.Lock()

    def on_disabled(endpoint: Endpoint) -> None:
        with lock:
            disabled.append(endpoint)

    with (
        LoopbackReceiver(default=verifying()) as rx,
        running(
            driver,
            store_kind,
            policy=FAST,
            gate=None,
            health=HealthPolicy(max_failures=2, period=0),
            on_endpoint_disabled=on_disabled,
        ) as hooks,
    ):
        endpoint = hooks.add_endpoint(rx.url("/broken"))
        wait_endpoint(hooks, endpoint.id, EndpointState.ACTIVE)
        rx.route("/broken", Respond(500))
        for i in range(2):
            hooks.publish("message.sent", message(i))
        wait_endpoint(hooks, endpoint.id, EndpointState.DISABLED, timeout=30)
        until(lambda: len(disabled) == 1)
        assert disabled[0].id == endpoint.id
        assert hooks.publish("message.sent", message(3)).deliveries == 0
