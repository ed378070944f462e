"""The sans-IO core's delivery lifecycle, side by side with the HMAC floor.

Run from the repository root::

    PYTHONPATH=src python -m benchmarks.bench_core [--profile] [--quick]

Measures, in one run and on one ~180-byte canonical JSON body:

* ``floor``: ``hmac.digest(key, body, "sha256")``, the least any signed
  delivery can cost;
* (a) a delivery that succeeds at once: ``new_delivery``, ``apply(Start)``,
  ``delivery_request`` (signs both the Standard Webhooks and the platform
  header), ``apply(Finish(AttemptResult(status=200)))``;
* (b) a delivery that fails all 5 attempts: five times ``apply(Start)``,
  ``delivery_request``, ``apply(Finish(AttemptResult(status=500)))``.

Each figure is the best of several repeats (µs per operation) with its ratio
to the floor. The issue's target is a successful lifecycle within 4x the
floor. A breakdown of the successful lifecycle step by step follows, and a
cProfile summary when the target is missed (or with ``--profile``).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import hmac
import io
import platform
import pstats
import sys
import timeit
from collections.abc import Callable

import attrs

from webhook_core import (
    USER_AGENT,
    AttemptResult,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointSecret,
    EndpointState,
    Event,
    Finish,
    HttpRequest,
    RetryPolicy,
    Start,
    build_event,
    delivery_machine,
    delivery_request,
    platform_catalog,
)
from webhook_core.delivery_machine import new_delivery
from webhook_core.request import _headers as request_headers
from webhook_core.signing import signature_headers

TARGET_RATIO = 4.0
NOW = 1_700_000_000.0
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
EVENT_ID = "evt_01J9Z6Y8K3QF7W2R5T8X4N6B0C"
DELIVERY_ID = "dlv_01J9Z6Y8K3QF7W2R5T8X4N6B0D"
ENDPOINT_ID = "ep_01J9Z6Y8K3QF7W2R5T8X4N6B0E"
DATA = {"message_id": "msg_42", "channel": "sms", "to": "+919876543210", "status": "sent"}


def fixtures() -> tuple[Event, Endpoint, RetryPolicy]:
    event = build_event(platform_catalog(), "message.sent", DATA, event_id=EVENT_ID, now=NOW)
    endpoint = Endpoint(
        id=ENDPOINT_ID,
        url="https://hooks.example.com/webhooks",
        secrets=(EndpointSecret(SECRET, NOW),),
        created_at=NOW,
        state=EndpointState.ACTIVE,
        verified_url="https://hooks.example.com/webhooks",
    )
    return event, endpoint, RetryPolicy()


def best_us(fn: Callable[[], object], repeat: int, min_time: float) -> float:
    """Best-of-``repeat`` microseconds per call, each repeat running at least ``min_time`` s."""
    timer = timeit.Timer(fn)
    number, elapsed = timer.autorange()
    if elapsed < min_time:
        number = max(number, int(number * min_time / max(elapsed, 1e-9)))
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="core lifecycle vs hmac floor")
    parser.add_argument("--profile", action="store_true", help="always print a cProfile summary")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    args = parser.parse_args(argv)
    repeat, min_time = (3, 0.05) if args.quick else (7, 0.2)

    event, endpoint, policy = fixtures()
    body: bytes = event.body
    key = SECRET.encode()
    apply = delivery_machine.apply
    timeout = policy.timeout

    def floor() -> bytes:
        return hmac.digest(key, body, "sha256")

    def lifecycle_ok() -> Delivery:
        d = new_delivery(DELIVERY_ID, EVENT_ID, ENDPOINT_ID, NOW)
        d, _ = apply(d, Start(NOW), policy)
        delivery_request(d, event, endpoint, NOW, timeout)
        d, _ = apply(d, Finish(AttemptResult(NOW, NOW + 0.01, status=200)), policy)
        return d

    def lifecycle_fail() -> Delivery:
        t = NOW
        d = new_delivery(DELIVERY_ID, EVENT_ID, ENDPOINT_ID, t)
        for _ in range(5):
            d, _ = apply(d, Start(t), policy)
            delivery_request(d, event, endpoint, t, timeout)
            d, _ = apply(d, Finish(AttemptResult(t, t + 0.01, status=500)), policy)
            if d.next_attempt_at is not None:
                t = d.next_attempt_at
        return d

    # Sanity: the lifecycles do what they claim, and the request carries both signatures.
    done = lifecycle_ok()
    assert done.state is DeliveryState.DELIVERED, done
    failed = lifecycle_fail()
    assert failed.state is DeliveryState.FAILED, failed
    assert len(failed.attempts) == 5
    sample = delivery_request(
        new_delivery(DELIVERY_ID, EVENT_ID, ENDPOINT_ID, NOW),
        event,
        endpoint,
        NOW,
        timeout,
    )
    names = {k.lower() for k, _ in sample.headers}
    assert {"webhook-signature", "x-netasampark-signature"} <= names, names

    floor_before = best_us(floor, repeat, min_time)
    ok = best_us(lifecycle_ok, repeat, min_time)
    fail = best_us(lifecycle_fail, repeat, min_time)
    floor_after = best_us(floor, repeat, min_time)
    floor_us = min(floor_before, floor_after)

    print(f"machine: {platform.machine()}, {_nproc()} CPU(s), Python {platform.python_version()}")
    print(f"body: {len(body)} bytes of canonical JSON ({event.name}), secret whsec_ (32-byte key)")
    print()
    print(f"| {'operation':<66} | {'µs/op':>8} | {'x floor':>7} |")
    print(f"| {'-' * 66} | {'-' * 8}:| {'-' * 7}:|")
    rows = [
        ('floor: hmac.digest(key, body, "sha256")', floor_us),
        ("(a) succeeds at once: new, Start, request, Finish(200)", ok),
        ("(b) fails 5 attempts: 5 x (Start, request, Finish(500))", fail),
        ("(b) per attempt", fail / 5),
    ]
    for label, us in rows:
        print(f"| {label:<66} | {us:8.2f} | {us / floor_us:7.1f} |")
    print()
    verdict = "MET" if ok <= TARGET_RATIO * floor_us else "MISSED"
    print(
        f"target: successful lifecycle within {TARGET_RATIO:g}x the floor "
        f"(<= {TARGET_RATIO * floor_us:.2f} µs): {verdict} ({ok / floor_us:.1f}x)"
    )
    print(f"(floor measured before and after: {floor_before:.2f} / {floor_after:.2f} µs)")

    print()
    print("breakdown of (a), each step timed on its own:")
    breakdown(event, endpoint, policy, repeat, min_time, floor_us, ok)

    if args.profile or verdict == "MISSED":
        print()
        print("cProfile of (a), 20,000 lifecycles, by own time:")
        profile(lifecycle_ok, 20_000)
    return 0


def breakdown(
    event: Event,
    endpoint: Endpoint,
    policy: RetryPolicy,
    repeat: int,
    min_time: float,
    floor_us: float,
    total_us: float,
) -> None:
    apply = delivery_machine.apply
    timeout = policy.timeout
    body: bytes = event.body
    fresh = new_delivery(DELIVERY_ID, EVENT_ID, ENDPOINT_ID, NOW)
    started, _ = apply(fresh, Start(NOW), policy)
    secrets = endpoint.signing_secrets(NOW)
    headers = delivery_request(started, event, endpoint, NOW, timeout).headers
    result = AttemptResult(NOW, NOW + 0.01, status=200)
    finish = Finish(result)
    hkey = secrets[0].standard_hmac
    message = f"{EVENT_ID}.{int(NOW)}.".encode() + body
    sha = hashlib.sha256

    steps: list[tuple[str, Callable[[], object]]] = [
        (
            "new_delivery (Delivery(...) with 6 args)",
            lambda: new_delivery(DELIVERY_ID, EVENT_ID, ENDPOINT_ID, NOW),
        ),
        (
            "apply(Start): Start(now), table lookup, new record",
            lambda: apply(fresh, Start(NOW), policy),
        ),
        (
            "delivery_request: total",
            lambda: delivery_request(started, event, endpoint, NOW, timeout),
        ),
        ("  endpoint.signing_secrets(now)", lambda: endpoint.signing_secrets(NOW)),
        ("  started.attempts_made", lambda: started.attempts_made),
        (
            "  request headers: 2 HMACs, base64, hex, 9 header pairs",
            lambda: request_headers(secrets, event, DELIVERY_ID, 1, NOW, (), USER_AGENT),
        ),
        (
            "reference: signing.signature_headers (2 HMACs, b64, hex, dict)",
            lambda: signature_headers(secrets, EVENT_ID, int(NOW), body),
        ),
        (
            "  HttpRequest(...) (frozen attrs init)",
            lambda: HttpRequest(endpoint.url, headers, body, timeout),
        ),
        (
            "AttemptResult(status=200) (with post-init checks)",
            lambda: AttemptResult(NOW, NOW + 0.01, status=200),
        ),
        ("Finish(result)", lambda: Finish(result)),
        ("apply(Finish): Attempt, new record", lambda: apply(started, finish, policy)),
        (
            "reference: attrs.evolve(delivery, state=..., next_attempt_at=...)",
            lambda: attrs.evolve(fresh, state=DeliveryState.IN_FLIGHT, next_attempt_at=None),
        ),
        ("reference: HmacKey.digest (precomputed pads), one HMAC", lambda: hkey.digest(message)),
        ("reference: sha256(body).digest() alone", lambda: sha(body).digest()),
    ]
    print(f"| {'step':<66} | {'µs':>7} | {'x floor':>7} | {'% of (a)':>8} |")
    print(f"| {'-' * 66} | {'-' * 7}:| {'-' * 7}:| {'-' * 8}:|")
    for label, fn in steps:
        us = best_us(fn, repeat, min_time / 2)
        share = "" if label.startswith("reference") else f"{100 * us / total_us:7.0f}%"
        print(f"| {label:<66} | {us:7.2f} | {us / floor_us:7.1f} | {share:>8} |")
    try:
        import standardwebhooks

        wh = standardwebhooks.Webhook(SECRET)
        import datetime

        ts = datetime.datetime.fromtimestamp(NOW, tz=datetime.UTC)
        us = best_us(
            lambda: wh.sign(EVENT_ID, ts, body.decode()), max(3, repeat // 2), min_time / 2
        )
        label = "reference: standardwebhooks Webhook.sign"
        print(f"| {label:<66} | {us:7.2f} | {us / floor_us:7.1f} | {'':>8} |")
    except Exception as exc:
        print(f"(standardwebhooks reference unavailable: {exc})")


def profile(fn: Callable[[], object], n: int) -> None:
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        fn()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(18)
    text = out.getvalue()
    start = text.find("   ncalls")
    print(text[start:].rstrip() if start >= 0 else text.rstrip())
    print("(cProfile inflates per-call overhead; use the shares, not the absolute times)")


def _nproc() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
