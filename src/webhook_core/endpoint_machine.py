"""The endpoint state machine: a receiver URL, its secrets and its subscriptions.

Theory of operation
-------------------
An endpoint starts ``unverified``. ``BeginVerification(token)`` moves it to
``verifying`` while the driver sends the handshake (a signed
``webhook.verification`` event carrying the token); ``HandshakeResult`` makes it
``active`` when the answer is a 2xx whose body is the token (whitespace
trimmed) or a JSON object whose ``verification_token`` is the token, and sends
it back to ``unverified`` otherwise (the operator may try again; a failed
handshake also forgets any earlier verification of the URL). Only ``active``
endpoints receive deliveries.

``Disable`` (by the operator, by a 410 Gone, or by the health checks) moves any
other state to ``disabled``; ``Enable`` brings it back to ``active`` if the
current URL was verified, else to ``unverified``. ``ChangeUrl`` forgets the
verification: the endpoint is ``unverified`` again (or stays ``disabled``).
There is no terminal state: removing an endpoint deletes the record.

Health: the driver reports every delivery that ended (``DeliveryOutcome``).
A delivered one clears the endpoint's run of failures; a failed one (all
attempts used) adds to it, remembering when the run began. When the run
holds ``HealthPolicy.max_failures`` deliveries and has lasted
``HealthPolicy.period`` seconds, the endpoint is disabled, with a reason that
says so. ``Enable`` and ``ChangeUrl`` start a fresh run; a disabled endpoint
ignores outcomes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import attrs

from webhook_core.errors import ConfigError, IllegalTransition
from webhook_core.names import any_pattern_matches, validate_pattern
from webhook_core.signing import Secret
from webhook_core.statemachine import Symbol, check_table
from webhook_core.tenants import DEFAULT_TENANT

_MAX_TOKEN_RESPONSE = 4096
_DAY = 86_400.0


@attrs.frozen
class HealthPolicy:
    """When failures disable an endpoint: ``max_failures`` failed deliveries in a row
    spanning at least ``period`` seconds (default: 10 over 5 days)."""

    max_failures: int = 10
    period: float = 5 * _DAY

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_failures, bool) or not (
            isinstance(self.max_failures, int) and self.max_failures >= 1
        ):
            raise ConfigError(f"max_failures must be an integer >= 1, not {self.max_failures!r}")
        if not (isinstance(self.period, int | float) and 0 <= self.period < float("inf")):
            raise ConfigError(
                f"period must be a finite number of seconds >= 0, not {self.period!r}"
            )


class EndpointState(Symbol):
    """Whether an endpoint receives deliveries."""

    UNVERIFIED = "unverified"
    VERIFYING = "verifying"
    ACTIVE = "active"
    DISABLED = "disabled"


@attrs.frozen
class EndpointSecret:
    """A signing secret; during a rotation the old one lives on until ``expires_at``."""

    value: str = attrs.field(repr=False)
    created_at: float
    expires_at: float | None = None
    parsed: Secret = attrs.field(init=False, repr=False, eq=False)

    @parsed.default
    def _parse(self) -> Secret:
        return Secret.parse(self.value)


def _patterns(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    patterns = tuple(validate_pattern(p) for p in value)
    if not patterns:
        raise ConfigError("an endpoint needs at least one event pattern ('*' for all)")
    return patterns


@attrs.frozen
class Endpoint:
    """A receiver: URL, secrets (newest first), event patterns and verification status."""

    id: str
    url: str
    secrets: tuple[EndpointSecret, ...]
    created_at: float
    filters: tuple[str, ...] = attrs.field(default=("*",), converter=_patterns)
    state: EndpointState = EndpointState.UNVERIFIED
    verification_token: str | None = attrs.field(default=None, repr=False)
    verified_url: str | None = None
    disabled_reason: str | None = None
    last_error: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    description: str = ""
    max_in_flight: int | None = None
    failures: int = 0
    failing_since: float | None = None
    tenant: str = DEFAULT_TENANT
    """Whose endpoint it is: it receives only that tenant's events."""

    def __attrs_post_init__(self) -> None:
        if not self.secrets:
            raise ConfigError("an endpoint needs at least one secret")

    def subscribes_to(self, event_name: str) -> bool:
        """True when one of the endpoint's patterns selects ``event_name``."""
        return any_pattern_matches(self.filters, event_name)

    def signing_secrets(self, now: float) -> tuple[Secret, ...]:
        """The secrets that sign a request sent at ``now``, newest first."""
        if len(self.secrets) == 1:
            return (self.secrets[0].parsed,)
        return tuple(
            s.parsed for s in self.secrets if s.expires_at is None or s.expires_at > now
        ) or (self.secrets[0].parsed,)


def rotate_secret(endpoint: Endpoint, new_secret: str, now: float, grace: float) -> Endpoint:
    """Make ``new_secret`` the newest; older ones keep signing for ``grace`` seconds more."""
    if not grace >= 0:
        raise ConfigError("grace must be a non-negative number of seconds")
    until = now + grace
    kept = tuple(
        attrs.evolve(s, expires_at=until if s.expires_at is None else min(s.expires_at, until))
        for s in endpoint.secrets
        if s.expires_at is None or s.expires_at > now
    )
    return attrs.evolve(endpoint, secrets=(EndpointSecret(new_secret, now), *kept))


@attrs.frozen
class BeginVerification:
    """The driver is about to send the handshake carrying ``token``."""

    token: str
    now: float


@attrs.frozen
class HandshakeResult:
    """The handshake's answer: a status and body, or an error description."""

    now: float
    status: int | None
    body: bytes = b""
    error: str | None = None


@attrs.frozen
class Disable:
    """Stop deliveries to the endpoint."""

    reason: str
    now: float


@attrs.frozen
class Enable:
    """Resume a disabled endpoint."""

    now: float


@attrs.frozen
class ChangeUrl:
    """Point the endpoint at a new URL; it must be verified again."""

    url: str
    now: float


@attrs.frozen
class DeliveryOutcome:
    """A delivery to the endpoint ended: ``delivered``, or failed with every attempt used."""

    delivered: bool
    now: float
    policy: HealthPolicy = HealthPolicy()


EndpointInput = BeginVerification | HandshakeResult | Disable | Enable | ChangeUrl | DeliveryOutcome

UNVERIFIED, VERIFYING, ACTIVE, DISABLED = (
    EndpointState.UNVERIFIED,
    EndpointState.VERIFYING,
    EndpointState.ACTIVE,
    EndpointState.DISABLED,
)
TERMINAL: frozenset[EndpointState] = frozenset()

TRANSITIONS: dict[tuple[EndpointState, type], frozenset[EndpointState]] = {
    (UNVERIFIED, BeginVerification): frozenset({VERIFYING}),
    (VERIFYING, BeginVerification): frozenset({VERIFYING}),
    (ACTIVE, BeginVerification): frozenset({VERIFYING}),
    (VERIFYING, HandshakeResult): frozenset({ACTIVE, UNVERIFIED}),
    (UNVERIFIED, Disable): frozenset({DISABLED}),
    (VERIFYING, Disable): frozenset({DISABLED}),
    (ACTIVE, Disable): frozenset({DISABLED}),
    (DISABLED, Enable): frozenset({ACTIVE, UNVERIFIED}),
    (UNVERIFIED, ChangeUrl): frozenset({UNVERIFIED}),
    (VERIFYING, ChangeUrl): frozenset({UNVERIFIED}),
    (ACTIVE, ChangeUrl): frozenset({UNVERIFIED}),
    (DISABLED, ChangeUrl): frozenset({DISABLED}),
    (UNVERIFIED, DeliveryOutcome): frozenset({UNVERIFIED, DISABLED}),
    (VERIFYING, DeliveryOutcome): frozenset({VERIFYING, DISABLED}),
    (ACTIVE, DeliveryOutcome): frozenset({ACTIVE, DISABLED}),
    (DISABLED, DeliveryOutcome): frozenset({DISABLED}),
}
check_table("endpoint", TRANSITIONS, EndpointState, UNVERIFIED, TERMINAL)


def token_matches(token: str, status: int | None, body: bytes) -> str | None:
    """None when the handshake answer verifies; otherwise the reason it does not."""
    if status is None:
        return "no HTTP response"
    if not 200 <= status <= 299:
        return f"answered HTTP {status}, not 2xx"
    if len(body) > _MAX_TOKEN_RESPONSE:
        return "answer body is too large to hold the token"
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        return "answer body is not UTF-8"
    if text == token:
        return None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):  # deeply nested JSON overflows the parser's stack
        return "answer body is neither the token nor JSON"
    if isinstance(parsed, dict) and parsed.get("verification_token") == token:
        return None
    return "answer does not carry the verification token"


def _begin_verification(e: Endpoint, event: BeginVerification) -> Endpoint:
    if not event.token:
        raise ConfigError("a verification token must not be empty")
    return attrs.evolve(e, state=VERIFYING, verification_token=event.token, last_error=None)


def _handshake_result(e: Endpoint, event: HandshakeResult) -> Endpoint:
    assert e.verification_token is not None
    problem = event.error or token_matches(e.verification_token, event.status, event.body)
    if problem is None:
        return attrs.evolve(
            e, state=ACTIVE, verified_url=e.url, verification_token=None, last_error=None
        )
    # A failed handshake leaves the URL unverified, even if it passed an earlier
    # one: otherwise Disable then Enable would make it active without a handshake.
    return attrs.evolve(
        e,
        state=UNVERIFIED,
        verification_token=None,
        verified_url=None,
        last_error=f"verification failed: {problem}{_answer_excerpt(event)}",
    )


_EXCERPT = 200


def _answer_excerpt(event: HandshakeResult) -> str:
    """What the receiver answered, for the operator to see (when it answered at all)."""
    if event.error is not None or event.status is None:
        return ""
    text = event.body[: _EXCERPT * 4].decode("utf-8", "replace").strip()
    if len(text) > _EXCERPT:
        text = text[:_EXCERPT] + "…"
    return f" (the receiver answered HTTP {event.status}: {text!r})"


def _disable(e: Endpoint, event: Disable) -> Endpoint:
    return attrs.evolve(e, state=DISABLED, disabled_reason=event.reason, verification_token=None)


def _enable(e: Endpoint, event: Enable) -> Endpoint:
    state = ACTIVE if e.verified_url == e.url else UNVERIFIED
    return attrs.evolve(
        e, state=state, disabled_reason=None, last_error=None, failures=0, failing_since=None
    )


def _change_url(e: Endpoint, event: ChangeUrl) -> Endpoint:
    state = DISABLED if e.state is DISABLED else UNVERIFIED
    return attrs.evolve(
        e,
        url=event.url,
        state=state,
        verified_url=None,
        verification_token=None,
        failures=0,
        failing_since=None,
    )


def _delivery_outcome(e: Endpoint, event: DeliveryOutcome) -> Endpoint:
    if e.state is DISABLED:
        return e
    if event.delivered:
        if e.failures == 0 and e.failing_since is None:
            return e
        return attrs.evolve(e, failures=0, failing_since=None)
    since = event.now if e.failing_since is None else e.failing_since
    failures = e.failures + 1
    e = attrs.evolve(e, failures=failures, failing_since=since)
    lasted = event.now - since
    if failures >= event.policy.max_failures and lasted >= event.policy.period:
        reason = (
            f"{failures} deliveries in a row failed over {_duration(lasted)} "
            f"(limit {event.policy.max_failures} over {_duration(event.policy.period)})"
        )
        return attrs.evolve(e, state=DISABLED, disabled_reason=reason, verification_token=None)
    return e


def _duration(seconds: float) -> str:
    if seconds >= _DAY:
        return f"{seconds / _DAY:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds:.0f} s"


_HANDLERS = {
    BeginVerification: _begin_verification,
    HandshakeResult: _handshake_result,
    Disable: _disable,
    Enable: _enable,
    ChangeUrl: _change_url,
    DeliveryOutcome: _delivery_outcome,
}


def apply(endpoint: Endpoint, event: EndpointInput) -> Endpoint:
    """Feed ``event`` to ``endpoint`` and return the new record.

    Raises ``IllegalTransition`` (and changes nothing) when the table has no
    rule for the endpoint's state and this kind of input.
    """
    targets = TRANSITIONS.get((endpoint.state, type(event)))
    if targets is None:
        raise IllegalTransition("endpoint", endpoint.state.value, type(event).__name__)
    new: Endpoint = _HANDLERS[type(event)](endpoint, event)  # type: ignore[operator]
    assert new.state in targets, (endpoint.state, event, new.state)
    return new


def apply_outcomes(
    endpoint: Endpoint, outcomes: Iterable[tuple[bool, float]], policy: HealthPolicy
) -> Endpoint:
    """``endpoint`` after deliveries that ended, given as ``(delivered, now)`` in order.

    The same as applying a ``DeliveryOutcome`` for each, without building them
    for the common case that changes nothing: a delivery to an endpoint with
    no run of failures.
    """
    for delivered, now in outcomes:
        if delivered and endpoint.failures == 0 and endpoint.failing_since is None:
            continue
        endpoint = apply(endpoint, DeliveryOutcome(delivered, now, policy))
    return endpoint
