"""What the sender does to its store, shared by every driver.

These functions validate input, apply the core's state machines and write
the results. They block only as much as the store does; the async drivers run
them in worker threads when the store is blocking.

Every operation a sender calls takes a ``tenant`` (``default`` when not given)
and sees only that tenant's endpoints, events and deliveries: another tenant's
record is reported exactly as a missing one (``NotFound``). A delivery's
tenant is its event's. The dispatcher's own calls (``record_outcomes``,
``record_handshake``, ``write_results``...) work across tenants.
"""

from __future__ import annotations

import contextlib
import functools
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import attrs

from transports.http.guard import ENV_ALLOWED_NETWORKS, OutboundPolicy, refusal_at_registration
from transports.ids import new_id, new_secret, new_token
from transports.stores.interface import (
    ALL_DELIVERIES,
    DeliveryFilter,
    DuplicateEvent,
    EventBatch,
    Store,
)
from webhook_core import (
    DEFAULT_TENANT,
    BeginVerification,
    Cancel,
    ChangeUrl,
    ConfigError,
    Delivery,
    DeliveryState,
    Disable,
    Enable,
    Endpoint,
    EndpointSecret,
    EndpointState,
    Event,
    EventCatalog,
    HandshakeResult,
    HealthPolicy,
    IllegalTransition,
    RetryPolicy,
    Secret,
    build_event,
    delivery_machine,
    endpoint_machine,
    fan_out_many,
    replay,
    rotate_secret,
    validate_headers,
    validate_pattern,
    validate_tenant,
    validate_url,
)
from webhook_core.delivery_machine import RetryNow
from webhook_core.names import pattern_matches

MIN_SECRET_BYTES = 24
"""The shortest secret an endpoint may be given (a ``whsec_`` secret: its decoded key)."""

EventSpec: TypeAlias = tuple[str, Any, str | None]
"""An event to publish: its name, its data and its id (None: a new one)."""


class NotFound(LookupError):
    """No endpoint or delivery has the given id."""


@attrs.frozen
class PublishResult:
    """The stored event and how many deliveries it fanned out to."""

    event: Event
    deliveries: int


def find_endpoint(store: Store, endpoint_id: str, tenant: str = DEFAULT_TENANT) -> Endpoint | None:
    """The tenant's endpoint of this id, or None."""
    endpoint = store.get_endpoint(endpoint_id)
    return endpoint if endpoint is not None and endpoint.tenant == tenant else None


def _require_endpoint(store: Store, endpoint_id: str, tenant: str) -> Endpoint:
    endpoint = find_endpoint(store, endpoint_id, validate_tenant(tenant))
    if endpoint is None:
        raise NotFound(f"no endpoint with id {endpoint_id!r}")
    return endpoint


def _checked_url(url: str, allow_http: bool, outbound: OutboundPolicy | None) -> str:
    """The validated URL; an IP literal the outbound guard would refuse is refused now."""
    url = validate_url(url, allow_http=allow_http)
    host = urllib.parse.urlsplit(url).hostname or ""
    refusal = None if outbound is None else refusal_at_registration(host, outbound)
    if refusal is not None:
        raise ConfigError(
            f"URL {url!r} would never be delivered to ({refusal}); use a public address, "
            f"or allow its network with allowed_networks / {ENV_ALLOWED_NETWORKS}"
        )
    return url


def _checked_patterns(events: Iterable[str], catalog: EventCatalog | None) -> tuple[str, ...]:
    """The validated patterns; with a catalog, each must select at least one of its events."""
    patterns = tuple(validate_pattern(p) for p in ([events] if isinstance(events, str) else events))
    if catalog is not None:
        for pattern in patterns:
            if not any(pattern_matches(pattern, t.name) for t in catalog):
                raise ConfigError(
                    f"event pattern {pattern!r} matches no known event; use one of "
                    f"{', '.join(t.name for t in catalog)} or a wildcard over them "
                    "('group.*', '*'), or register the event in the catalog first"
                )
    return patterns


def _checked_secret(secret: str | None) -> str:
    """``secret`` (at least ``MIN_SECRET_BYTES`` of key), or a new one."""
    if secret is None:
        return new_secret()
    size = len(Secret.parse(secret).standard_key)
    if size < MIN_SECRET_BYTES:
        raise ConfigError(
            f"the secret holds {size} bytes; give at least {MIN_SECRET_BYTES} bytes "
            "(or leave it out to get a new whsec_ secret)"
        )
    return secret


def _refuse_duplicate(store: Store, url: str, tenant: str) -> None:
    for existing in store.list_endpoints(tenant):
        if existing.url == url:
            raise ConfigError(
                f"endpoint {existing.id} already has URL {url!r}; use it, or register the URL "
                "again with allow_duplicate=True (--allow-duplicate)"
            )


def find_delivery(store: Store, delivery_id: str, tenant: str = DEFAULT_TENANT) -> Delivery | None:
    """The tenant's delivery of this id (with its attempts), or None."""
    delivery = store.get_delivery(delivery_id)
    if delivery is None:
        return None
    event = store.get_event(delivery.event_id)
    return delivery if event is not None and event.tenant == tenant else None


def find_event(store: Store, event_id: str, tenant: str = DEFAULT_TENANT) -> Event | None:
    """The tenant's event of this id, or None."""
    event = store.get_event(event_id)
    return event if event is not None and event.tenant == tenant else None


def list_endpoints(store: Store, tenant: str = DEFAULT_TENANT) -> list[Endpoint]:
    """The tenant's endpoints, oldest first."""
    return store.list_endpoints(validate_tenant(tenant))


def list_deliveries(
    store: Store,
    where: DeliveryFilter = ALL_DELIVERIES,
    limit: int = 100,
    offset: int = 0,
    tenant: str = DEFAULT_TENANT,
) -> list[Delivery]:
    """The tenant's deliveries matching ``where`` (its ``tenant`` is replaced), oldest first."""
    return store.list_deliveries(attrs.evolve(where, tenant=validate_tenant(tenant)), limit, offset)


def count_deliveries(
    store: Store, where: DeliveryFilter = ALL_DELIVERIES, tenant: str = DEFAULT_TENANT
) -> int:
    """How many of the tenant's deliveries match ``where`` (its ``tenant`` is replaced)."""
    return store.count_deliveries(attrs.evolve(where, tenant=validate_tenant(tenant)))


def add_endpoint(
    store: Store,
    url: str,
    now: float,
    *,
    secret: str | None = None,
    events: Iterable[str] = ("*",),
    headers: Mapping[str, str] | None = None,
    description: str = "",
    allow_http: bool = False,
    outbound: OutboundPolicy | None = None,
    catalog: EventCatalog | None = None,
    allow_duplicate: bool = False,
    tenant: str = DEFAULT_TENANT,
) -> Endpoint:
    """Register an endpoint of ``tenant``; it is ``verifying`` until the driver's handshake
    succeeds.

    An internationalised host is stored in its IDNA (``xn--``) form. With
    ``outbound``, an IP-literal host that policy refuses is refused here (host
    names are vetted when connecting); with ``catalog``, every pattern must
    select one of its events. A given ``secret`` must hold at least
    ``MIN_SECRET_BYTES`` bytes. A URL that another endpoint has is refused
    unless ``allow_duplicate``.
    """
    validate_tenant(tenant)
    url = _checked_url(url, allow_http, outbound)
    patterns = _checked_patterns(events, catalog)
    checked_secret = _checked_secret(secret)
    if not allow_duplicate:
        _refuse_duplicate(store, url, tenant)
    endpoint = Endpoint(
        id=new_id("ep"),
        url=url,
        secrets=(EndpointSecret(checked_secret, now),),
        created_at=now,
        filters=patterns,
        headers=validate_headers(headers or {}),
        description=description,
        tenant=tenant,
    )
    endpoint = endpoint_machine.apply(endpoint, BeginVerification(new_token(), now))
    store.save_endpoint(endpoint)
    return endpoint


def ensure_endpoint(
    store: Store,
    url: str,
    now: float,
    *,
    secret: str | None = None,
    events: Iterable[str] = ("*",),
    headers: Mapping[str, str] | None = None,
    description: str = "",
    allow_http: bool = False,
    outbound: OutboundPolicy | None = None,
    catalog: EventCatalog | None = None,
    tenant: str = DEFAULT_TENANT,
) -> Endpoint:
    """The endpoint registered at ``url``, registered now if there is none (idempotent).

    For a service that registers its own endpoint each time it starts: the
    existing endpoint is returned as it is, whatever its state, keeping its
    id, secret and verification. When ``events`` (or ``headers``, if given)
    differ from what is stored, they are changed to the ones given: the code
    that calls this is the endpoint's configuration. A ``secret`` the endpoint
    does not hold is refused (``rotate_endpoint_secret`` changes it), as is a
    URL that several endpoints share (``change_endpoint`` by id instead).
    """
    url = _checked_url(url, allow_http, outbound)
    patterns = _checked_patterns(events, catalog)
    found = [e for e in store.list_endpoints(validate_tenant(tenant)) if e.url == url]
    if not found:
        return add_endpoint(
            store,
            url,
            now,
            secret=secret,
            events=patterns,
            headers=headers,
            description=description,
            allow_http=allow_http,
            tenant=tenant,
        )
    if len(found) > 1:
        raise ConfigError(
            f"{len(found)} endpoints have URL {url!r} ({', '.join(e.id for e in found)}); "
            "change the one you mean by its id"
        )
    (endpoint,) = found
    if secret is not None and secret not in {s.value for s in endpoint.secrets}:
        raise ConfigError(
            f"endpoint {endpoint.id} at {url!r} has another secret; "
            "change it with rotate_secret, or leave the secret out"
        )
    wanted_headers = None if headers is None else validate_headers(headers)
    if patterns == endpoint.filters and wanted_headers in (None, endpoint.headers):
        return endpoint
    return change_endpoint(store, endpoint.id, now, events=patterns, headers=headers, tenant=tenant)


def change_endpoint(
    store: Store,
    endpoint_id: str,
    now: float,
    *,
    url: str | None = None,
    events: Iterable[str] | None = None,
    headers: Mapping[str, str] | None = None,
    allow_http: bool = False,
    outbound: OutboundPolicy | None = None,
    catalog: EventCatalog | None = None,
    tenant: str = DEFAULT_TENANT,
) -> Endpoint:
    """Change an endpoint's URL, patterns or headers; a new URL is verified again.

    ``outbound`` and ``catalog`` check the new URL and patterns as ``add_endpoint`` does.
    """
    endpoint = _require_endpoint(store, endpoint_id, tenant)
    if events is not None:
        endpoint = attrs.evolve(endpoint, filters=_checked_patterns(events, catalog))
    if headers is not None:
        endpoint = attrs.evolve(endpoint, headers=validate_headers(headers))
    if url is not None:
        url = _checked_url(url, allow_http, outbound)
    if url is not None and url != endpoint.url:
        endpoint = endpoint_machine.apply(endpoint, ChangeUrl(url, now))
        if endpoint.state is EndpointState.UNVERIFIED:
            endpoint = endpoint_machine.apply(endpoint, BeginVerification(new_token(), now))
    store.save_endpoint(endpoint)
    return endpoint


def set_endpoint_details(
    store: Store,
    endpoint_id: str,
    *,
    description: str | None = None,
    max_in_flight: int | None = None,
    tenant: str = DEFAULT_TENANT,
) -> Endpoint:
    """Change an endpoint's description or its cap on attempts under way at once."""
    endpoint = _require_endpoint(store, endpoint_id, tenant)
    if description is not None:
        endpoint = attrs.evolve(endpoint, description=description)
    if max_in_flight is not None:
        if max_in_flight < 1:
            raise ConfigError("max_in_flight must be at least 1")
        endpoint = attrs.evolve(endpoint, max_in_flight=max_in_flight)
    store.save_endpoint(endpoint)
    return endpoint


def request_verification(
    store: Store, endpoint_id: str, now: float, tenant: str = DEFAULT_TENANT
) -> Endpoint:
    """Ask for the handshake to be sent again (after a failed one)."""
    endpoint = endpoint_machine.apply(
        _require_endpoint(store, endpoint_id, tenant), BeginVerification(new_token(), now)
    )
    store.save_endpoint(endpoint)
    return endpoint


def cancel_waiting(store: Store, endpoint_id: str, now: float, reason: str) -> int:
    """Fail every waiting delivery of an endpoint; return how many."""
    policy = RetryPolicy()
    cancelled = [
        delivery_machine.apply(d, Cancel(now, reason), policy)[0]
        for state in (DeliveryState.PENDING, DeliveryState.RETRY_SCHEDULED)
        for d in store.list_deliveries(DeliveryFilter(state, endpoint_id), limit=10**9)
    ]
    store.save_deliveries(cancelled)
    return len(cancelled)


def disable_endpoint(
    store: Store, endpoint_id: str, now: float, reason: str, tenant: str = DEFAULT_TENANT
) -> Endpoint:
    """Stop deliveries to an endpoint; its waiting deliveries fail (replay them later)."""
    endpoint = endpoint_machine.apply(
        _require_endpoint(store, endpoint_id, tenant), Disable(reason, now)
    )
    store.save_endpoint(endpoint)
    cancel_waiting(store, endpoint_id, now, f"endpoint disabled: {reason}")
    return endpoint


# Module constants: on Python 3.11 every ``DeliveryState.X`` goes through the enum
# class's ``__getattr__`` hook, and this loop runs once per finished attempt.
_DELIVERED = DeliveryState.DELIVERED
_ENDED = frozenset({DeliveryState.DELIVERED, DeliveryState.FAILED})


def record_outcomes(
    store: Store,
    deliveries: Sequence[Delivery],
    policy: HealthPolicy,
    on_disabled: Callable[[Endpoint], object] | None = None,
) -> list[Endpoint]:
    """Feed the endpoints the deliveries that ended (delivered, or failed after attempts).

    Endpoints whose run of failures reaches the ``policy`` are disabled, their
    waiting deliveries fail, and ``on_disabled`` is called with each (an
    application can publish an ``endpoint.disabled`` event of its own there).
    Returns the endpoints this disabled.
    """
    ended: dict[str, list[tuple[bool, float]]] = {}
    for d in deliveries:
        if d.attempts and d.state in _ENDED:
            ended.setdefault(d.endpoint_id, []).append(
                (d.state is _DELIVERED, d.attempts[-1].ended_at)
            )
    disabled: list[Endpoint] = []
    current = store.get_endpoints(ended) if ended else {}
    for endpoint_id, outcomes in ended.items():
        before = current.get(endpoint_id)
        if before is None:
            continue
        endpoint = endpoint_machine.apply_outcomes(
            before, sorted(outcomes, key=lambda o: o[1]), policy
        )
        if endpoint is before or endpoint == before:
            continue
        store.save_endpoint(endpoint)
        if endpoint.state is EndpointState.DISABLED and before.state is not EndpointState.DISABLED:
            reason = f"endpoint disabled: {endpoint.disabled_reason}"
            cancel_waiting(store, endpoint_id, outcomes[-1][1], reason)
            disabled.append(endpoint)
    if on_disabled is not None:
        for endpoint in disabled:
            on_disabled(endpoint)
    return disabled


def disable_if_enabled(store: Store, endpoint_id: str, now: float, reason: str) -> Endpoint | None:
    """Disable an endpoint unless it is gone or already disabled; the endpoint if this did.

    Attempts that end at the same time may each ask (two answers of 410 Gone);
    whichever comes second finds nothing left to do, and that is not an error.
    """
    endpoint = store.get_endpoint(endpoint_id)
    if endpoint is None:
        return None
    with contextlib.suppress(NotFound, IllegalTransition):
        return disable_endpoint(store, endpoint_id, now, reason, endpoint.tenant)
    return None


def record_handshake(
    store: Store, endpoint_id: str, token: str, answer: HandshakeResult
) -> Endpoint | None:
    """Apply a handshake's answer to the endpoint, unless the answer is stale.

    It is stale when the endpoint is gone, no longer verifying, or verifying
    another token (its URL changed, or verification was asked for again,
    meanwhile). Returns the saved endpoint, or None for a stale answer.
    """
    current = store.get_endpoint(endpoint_id)
    if (
        current is None
        or current.state is not EndpointState.VERIFYING
        or current.verification_token != token
    ):
        return None
    endpoint = endpoint_machine.apply(current, answer)
    store.save_endpoint(endpoint)
    return endpoint


def write_results(
    store: Store,
    deliveries: Sequence[Delivery],
    worker: str,
    health: HealthPolicy | None,
) -> list[Endpoint]:
    """Store a batch of finished attempts (those whose claim still holds), then feed the
    endpoints their outcomes (``record_outcomes``) when ``health`` is set; the endpoints
    that disabled."""
    store.complete(deliveries, worker)
    if health is None:
        return []
    return record_outcomes(store, deliveries, health)


def enable_endpoint(
    store: Store, endpoint_id: str, now: float, tenant: str = DEFAULT_TENANT
) -> Endpoint:
    """Resume a disabled endpoint (verified again if its URL changed meanwhile)."""
    endpoint = endpoint_machine.apply(_require_endpoint(store, endpoint_id, tenant), Enable(now))
    if endpoint.state is EndpointState.UNVERIFIED:
        endpoint = endpoint_machine.apply(endpoint, BeginVerification(new_token(), now))
    store.save_endpoint(endpoint)
    return endpoint


def rotate_endpoint_secret(
    store: Store,
    endpoint_id: str,
    now: float,
    *,
    secret: str | None = None,
    grace: float = 86_400,
    tenant: str = DEFAULT_TENANT,
) -> Endpoint:
    """Give an endpoint a new secret; the old one keeps signing for ``grace`` seconds."""
    endpoint = rotate_secret(
        _require_endpoint(store, endpoint_id, tenant), secret or new_secret(), now, grace
    )
    store.save_endpoint(endpoint)
    return endpoint


def remove_endpoint(
    store: Store, endpoint_id: str, now: float, tenant: str = DEFAULT_TENANT
) -> None:
    """Fail an endpoint's waiting deliveries, then delete it."""
    _require_endpoint(store, endpoint_id, tenant)
    cancel_waiting(store, endpoint_id, now, "endpoint removed")
    if not store.delete_endpoint(endpoint_id):
        raise NotFound(f"no endpoint with id {endpoint_id!r}")


def publish(
    store: Store,
    catalog: EventCatalog,
    name: str,
    data: Any,
    now: float,
    *,
    event_id: str | None = None,
    endpoints: list[Endpoint] | None = None,
    connection: Any = None,
    tenant: str = DEFAULT_TENANT,
) -> PublishResult:
    """Validate, encode and store an event of ``tenant`` with one delivery per subscribed
    active endpoint of that tenant.

    With ``connection`` (the caller's open sqlite3 or psycopg connection to
    the store's database) the event is written in the caller's transaction:
    it is delivered if and only if the caller commits.
    """
    (result,) = publish_many(
        store,
        catalog,
        [(name, data, event_id)],
        now,
        endpoints=endpoints,
        connection=connection,
        tenant=tenant,
    )
    return result


def publish_many(
    store: Store,
    catalog: EventCatalog,
    events: Iterable[EventSpec],
    now: float,
    *,
    endpoints: list[Endpoint] | None = None,
    connection: Any = None,
    tenant: str = DEFAULT_TENANT,
    trace_context: str | None = None,
) -> list[PublishResult]:
    """Publish many ``(name, data, event_id or None)`` events of ``tenant`` in one store
    transaction.

    Every event is validated before anything is stored: one bad event stores none.
    ``trace_context`` (a ``traceparent``) is stored with each event; ``endpoints``
    (when given) stands for the store's, and only the tenant's among them count.
    """
    validate_tenant(tenant)
    if endpoints is None:
        targets = store.list_endpoints(tenant)
    else:
        targets = [e for e in endpoints if e.tenant == tenant]
    batch = _fanned_out(catalog, events, now, targets, tenant, trace_context)
    store.add_events(batch, connection=connection)
    return _results(batch)


def _fanned_out(
    catalog: EventCatalog,
    events: Iterable[EventSpec],
    now: float,
    targets: list[Endpoint],
    tenant: str,
    trace_context: str | None,
    subscribers: dict[str, list[Endpoint]] | None = None,
) -> list[EventBatch]:
    """Every event built (all validated first), each with its deliveries (``subscribers``:
    see ``fan_out_many``)."""
    built = [
        build_event(
            catalog,
            name,
            data,
            event_id=event_id or new_id("evt"),
            now=now,
            tenant=tenant,
            trace_context=trace_context,
        )
        for name, data, event_id in events
    ]
    return fan_out_many(
        built, targets, new_id=functools.partial(new_id, "dlv"), now=now, subscribers=subscribers
    )


def _results(batch: list[EventBatch]) -> list[PublishResult]:
    return [PublishResult(event, len(deliveries)) for event, deliveries in batch]


def publish_groups(
    store: Store,
    catalog: EventCatalog,
    groups: Sequence[tuple[Iterable[EventSpec], float, str, str | None]],
) -> list[list[PublishResult] | Exception]:
    """Publish several callers' ``(events, now, tenant, trace_context)`` groups with one
    endpoint read and one write.

    Each group's outcome is its results or its own error: a group that fails
    validation is left out, and if the shared write is refused for a
    duplicate event id, every group is written again on its own so that only
    the group holding the duplicate fails. Any other store error is raised
    (it concerns every group).
    """
    everyone = store.list_endpoints()
    by_tenant: dict[str, tuple[list[Endpoint], dict[str, list[Endpoint]]]] = {}
    outcomes: list[list[PublishResult] | Exception] = []
    batches: list[list[EventBatch]] = []
    for events, now, tenant, trace_context in groups:
        try:
            known = by_tenant.get(tenant)
            if known is None:
                validate_tenant(tenant)
                known = by_tenant[tenant] = ([e for e in everyone if e.tenant == tenant], {})
            targets, subscribers = known
            batch = _fanned_out(catalog, events, now, targets, tenant, trace_context, subscribers)
        except Exception as exc:
            outcomes.append(exc)
            continue
        batches.append(batch)
        outcomes.append(_results(batch))
    merged = [pair for batch in batches for pair in batch]
    if not merged:
        return outcomes
    try:
        store.add_events(merged)
    except DuplicateEvent:
        written = iter(batches)
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, Exception):
                continue
            try:
                store.add_events(next(written))
            except DuplicateEvent as exc:
                outcomes[index] = exc
    return outcomes


def _require_active(endpoint: Endpoint) -> None:
    if endpoint.state is not EndpointState.ACTIVE:
        raise ConfigError(
            f"endpoint {endpoint.id} is {endpoint.state.value}; "
            "enable or verify it before replaying"
        )


def _require_delivery(store: Store, delivery_id: str, tenant: str) -> Delivery:
    delivery = find_delivery(store, delivery_id, validate_tenant(tenant))
    if delivery is None:
        raise NotFound(f"no delivery with id {delivery_id!r}")
    return delivery


def replay_delivery(
    store: Store, delivery_id: str, now: float, tenant: str = DEFAULT_TENANT
) -> Delivery:
    """A new pending delivery of a delivered or failed one's event."""
    original = _require_delivery(store, delivery_id, tenant)
    _require_active(_require_endpoint(store, original.endpoint_id, tenant))
    fresh = replay(original, new_id("dlv"), now)
    store.save_deliveries([fresh])
    return fresh


def retry_now(store: Store, delivery_id: str, now: float, tenant: str = DEFAULT_TENANT) -> Delivery:
    """Make a waiting (pending or retry-scheduled) delivery due at once; the dispatcher
    sends it at its next poll.

    A dispatcher that claimed it meanwhile loses its lease: its result is
    refused and the delivery is sent again (at least once, never lost).
    """
    delivery = _require_delivery(store, delivery_id, tenant)
    if delivery.is_terminal or delivery.state is DeliveryState.IN_FLIGHT:
        raise ConfigError(
            f"delivery {delivery_id} is {delivery.state.value}; only a waiting (pending or "
            "retry_scheduled) one can be retried now (replay a delivered or failed one)"
        )
    due, _ = delivery_machine.apply(delivery, RetryNow(now), RetryPolicy())
    store.save_deliveries([due])
    return due


def replay_failed_since(
    store: Store,
    since: float,
    now: float,
    *,
    endpoint_id: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    batch_size: int = 500,
    tenant: str = DEFAULT_TENANT,
) -> int:
    """Replay every failed delivery created at or after ``since``; return how many.

    Failed deliveries created from now on are left alone, so a run ends even
    while the dispatcher keeps failing others. Works a batch at a time (one
    store write per batch) and reports
    ``on_progress(done, total)`` after each. Deliveries of endpoints that are
    not active are skipped (enable or verify the endpoint, then run it again).
    """
    validate_tenant(tenant)
    if endpoint_id is not None:
        _require_active(_require_endpoint(store, endpoint_id, tenant))
    active = {e.id for e in store.list_endpoints(tenant) if e.state is EndpointState.ACTIVE}
    where = DeliveryFilter(
        DeliveryState.FAILED, endpoint_id, created_since=since, created_before=now, tenant=tenant
    )
    total = store.count_deliveries(where)
    done = replayed = 0
    while page := store.list_deliveries(where, limit=batch_size, offset=done):
        fresh = [replay(d, new_id("dlv"), now) for d in page if d.endpoint_id in active]
        store.save_deliveries(fresh)
        replayed += len(fresh)
        done += len(page)
        if on_progress is not None:
            on_progress(min(done, total), total)
    return replayed


@attrs.frozen
class Retention:
    """How long finished deliveries are kept (None: forever).

    Delivered records go after ``delivered`` seconds (7 days by default);
    failed ones are kept until replayed or pruned by hand unless ``failed`` is set.
    """

    delivered: float | None = 7 * 86_400.0
    failed: float | None = None

    def __attrs_post_init__(self) -> None:
        for name in ("delivered", "failed"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"retention {name} must be a positive number of seconds")


def apply_retention(store: Store, retention: Retention, now: float, batch_size: int = 1000) -> int:
    """Prune finished deliveries older than ``retention`` allows; return how many went."""
    pruned = 0
    for state, keep in (
        (DeliveryState.DELIVERED, retention.delivered),
        (DeliveryState.FAILED, retention.failed),
    ):
        if keep is None:
            continue
        while True:
            count = store.prune(state, now - keep, batch_size)
            pruned += count
            if count < batch_size:
                break
    return pruned
