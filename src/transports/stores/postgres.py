"""PostgreSQL storage: many dispatcher processes on many hosts share one database.

Theory of operation
-------------------
Every table lives in one schema (``webhooks`` by default). Migrations are
versioned in ``schema_migrations`` and applied on open under a transaction
advisory lock, so workers starting together migrate once.

``claim`` is one statement: it selects due rows (expired leases first, then
waiting deliveries by due time) ``FOR UPDATE SKIP LOCKED``, so concurrent
workers never pick the same row, and sets ``state = 'in_flight'``,
``locked_by``, ``lease_expires_at`` and ``lease_token`` (the claim's random
prefix and the row's id) in the same statement, returning the rows as they
were before (the core needs the stored state) with the new token. Results are
written only ``WHERE locked_by = <this worker> AND lease_token = <the
record's token> AND state = 'in_flight'``: a worker whose lease expired
cannot overwrite the result of the claim that took the row over, whether
another worker's or its own later claim of the same row. A lease outlives
the attempt deadline plus a margin (see ``DriverConfig``), so an expired lease
means its worker is gone or stuck, and the delivery is attempted again with
the same event id.

Writes that create due work (publish, replay, release) send
``NOTIFY <channel>`` in their transaction; ``subscribe`` runs a listener
thread that wakes the local dispatcher. Notifications can be lost (a dropped
listener connection), so the drivers keep polling as the fallback.

``add_events`` can write through the caller's own psycopg connection, inside
the caller's transaction: the event and its deliveries exist exactly when the
caller commits (the outbox pattern).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from transports.stores.interface import (
    ALL_DELIVERIES,
    AdminToken,
    Claimed,
    ClosesOnExit,
    DeliveryFilter,
    DuplicateEvent,
    EventBatch,
    SchemaStatus,
    claim_prefix,
    claimed_of,
    first_of_each,
)
from transports.stores.records import (
    DELIVERY_COLUMNS,
    check_prunable,
    delivery_from_row,
    delivery_row,
    endpoint_from_json,
    endpoint_to_json,
    filter_sql,
)
from webhook_core import ConfigError, Delivery, DeliveryState, Endpoint, Event

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_MIGRATION_LOCK = 0x77686B73  # "whks": the advisory lock key taken while migrating

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE {s}.endpoints (
        id text PRIMARY KEY,
        created_at double precision NOT NULL,
        record text NOT NULL
    );
    CREATE TABLE {s}.events (
        id text PRIMARY KEY,
        name text NOT NULL,
        created_at double precision NOT NULL,
        body bytea NOT NULL
    );
    CREATE TABLE {s}.deliveries (
        id text PRIMARY KEY,
        event_id text NOT NULL REFERENCES {s}.events (id),
        endpoint_id text NOT NULL,
        created_at double precision NOT NULL,
        state text NOT NULL,
        next_attempt_at double precision,
        attempts text NOT NULL DEFAULT '[]',
        reason text,
        replay_of text,
        locked_by text,
        lease_expires_at double precision
    );
    CREATE INDEX deliveries_due ON {s}.deliveries (next_attempt_at)
        WHERE state IN ('pending', 'retry_scheduled');
    CREATE INDEX deliveries_lease ON {s}.deliveries (lease_expires_at)
        WHERE state = 'in_flight';
    CREATE INDEX deliveries_endpoint ON {s}.deliveries (endpoint_id, state);
    CREATE INDEX deliveries_event ON {s}.deliveries (event_id);
    CREATE INDEX deliveries_state ON {s}.deliveries (state, created_at);
    """,
    # Results are fenced per claim. Rows leased before the upgrade have no token:
    # their results are refused and the rows claimed again when the leases expire.
    """
    ALTER TABLE {s}.deliveries ADD COLUMN lease_token text;
    """,
    # Tenants: what existed before belongs to 'default'. A delivery's tenant is
    # its event's. Management API tokens are kept as digests only.
    """
    ALTER TABLE {s}.endpoints ADD COLUMN tenant text NOT NULL DEFAULT 'default';
    ALTER TABLE {s}.events ADD COLUMN tenant text NOT NULL DEFAULT 'default';
    CREATE INDEX endpoints_tenant ON {s}.endpoints (tenant, created_at);
    CREATE INDEX events_tenant ON {s}.events (tenant, id);
    CREATE TABLE {s}.admin_tokens (
        id text PRIMARY KEY,
        tenant text NOT NULL,
        digest text NOT NULL UNIQUE,
        created_at double precision NOT NULL,
        description text NOT NULL DEFAULT ''
    );
    """,
    # The traceparent of the span current at publish (tracing on), beside the body.
    """
    ALTER TABLE {s}.events ADD COLUMN trace_context text;
    """,
)
_TOKEN_COLUMNS = "id, tenant, digest, created_at, description"


class PostgresStore(ClosesOnExit):
    """A durable ``Store`` in a PostgreSQL database, shared by many workers.

    ``conninfo`` is a libpq URL or key/value string; ``schema`` names the
    schema that holds the tables (created if missing). The pool holds up to
    ``max_connections`` connections.
    """

    blocking = True

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = "webhooks",
        max_connections: int = 8,
        connect_timeout: float = 10.0,
    ) -> None:
        if not _IDENTIFIER.fullmatch(schema):
            raise ConfigError(
                f"schema name {schema!r} must be lower-case letters, digits and underscores "
                "(at most 48), starting with a letter or underscore"
            )
        if max_connections < 1:
            raise ConfigError("max_connections must be at least 1")
        self.schema = schema
        self.channel = f"{schema}_due"
        self.conninfo = conninfo
        try:
            psycopg.connect(conninfo, connect_timeout=max(1, round(connect_timeout))).close()
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"cannot reach PostgreSQL at {_describe(conninfo)}: {reason}"
            ) from exc
        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_connections,
            open=False,
            timeout=connect_timeout,
            name=f"webhooks-{schema}",
            kwargs={"autocommit": True},
        )
        self._pool.open(wait=False)
        try:
            self._pool.wait(timeout=connect_timeout)
        except PoolTimeout as exc:
            self._pool.close()
            raise ConfigError(f"cannot reach PostgreSQL at {_describe(conninfo)}") from exc
        try:
            with self._pool.connection() as conn:
                row = conn.execute("SELECT current_database()").fetchone()
                self._database: str = row[0] if row else ""
            self.migrate()
        except BaseException:
            self._pool.close()
            raise

    def _sql(self, text: str) -> str:
        return text.replace("{s}", self.schema)

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in autocommit mode: each statement is its own transaction."""
        with self._pool.connection() as conn:
            yield conn

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    # -- schema -------------------------------------------------------------

    def migrate(self) -> int:
        """Apply pending migrations (once, even with many workers starting); return the version."""
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute(self._sql("CREATE SCHEMA IF NOT EXISTS {s}"))
            conn.execute(
                self._sql(
                    "CREATE TABLE IF NOT EXISTS {s}.schema_migrations ("
                    " version integer PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
            )
            version = self._version(conn)
            if version > len(MIGRATIONS):
                raise ConfigError(
                    f"schema {self.schema!r} has version {version}, newer than this library "
                    f"knows ({len(MIGRATIONS)}); upgrade the library"
                )
            for number in range(version, len(MIGRATIONS)):
                conn.execute(self._sql(MIGRATIONS[number]))
                conn.execute(
                    self._sql("INSERT INTO {s}.schema_migrations (version) VALUES (%s)"),
                    (number + 1,),
                )
        return self.schema_status().version

    def _version(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            self._sql("SELECT coalesce(max(version), 0) FROM {s}.schema_migrations")
        ).fetchone()
        return int(row[0]) if row else 0

    def schema_status(self) -> SchemaStatus:
        """The applied schema version against the latest this library knows."""
        with self._transaction() as conn:
            return SchemaStatus(self._version(conn), len(MIGRATIONS))

    # -- endpoints ------------------------------------------------------------

    def save_endpoint(self, endpoint: Endpoint) -> None:
        """Insert or replace an endpoint."""
        with self._connection() as conn:
            conn.execute(
                self._sql(
                    "INSERT INTO {s}.endpoints (id, created_at, record, tenant) "
                    "VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET record = excluded.record"
                ),
                (endpoint.id, endpoint.created_at, endpoint_to_json(endpoint), endpoint.tenant),
            )

    def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint, or None."""
        with self._connection() as conn:
            row = conn.execute(
                self._sql("SELECT record FROM {s}.endpoints WHERE id = %s"), (endpoint_id,)
            ).fetchone()
        return endpoint_from_json(row[0]) if row else None

    def get_endpoints(self, endpoint_ids: Collection[str]) -> dict[str, Endpoint]:
        """The endpoints of these ids that exist, by id, in one query."""
        with self._connection() as conn:
            rows = conn.execute(
                self._sql("SELECT record FROM {s}.endpoints WHERE id = ANY(%s)"),
                (list(endpoint_ids),),
            ).fetchall()
        return {e.id: e for e in (endpoint_from_json(r[0]) for r in rows)}

    def list_endpoints(self, tenant: str | None = None) -> list[Endpoint]:
        """Every endpoint (of ``tenant`` when given), oldest first."""
        with self._connection() as conn:
            rows = conn.execute(
                self._sql(
                    "SELECT record FROM {s}.endpoints WHERE %s::text IS NULL OR tenant = %s "
                    "ORDER BY created_at, id"
                ),
                (tenant, tenant),
            ).fetchall()
        return [endpoint_from_json(r[0]) for r in rows]

    def delete_endpoint(self, endpoint_id: str) -> bool:
        """Remove an endpoint; False if there was none."""
        with self._connection() as conn:
            cursor = conn.execute(
                self._sql("DELETE FROM {s}.endpoints WHERE id = %s"), (endpoint_id,)
            )
            return cursor.rowcount > 0

    # -- events and deliveries ---------------------------------------------------

    def add_events(self, batch: Sequence[EventBatch], *, connection: Any = None) -> None:
        """Store events with their deliveries, all or nothing.

        With ``connection`` (an open psycopg connection to this database), the
        rows are written in the caller's transaction and exist only once the
        caller commits.
        """
        if not batch:
            return
        if connection is None:
            with self._transaction() as conn:
                self._insert(conn, batch)
            return
        if not isinstance(connection, psycopg.Connection):
            raise ConfigError(
                "connection must be a psycopg.Connection for the PostgreSQL store, "
                f"not {type(connection).__name__}"
            )
        self._check_same_database(connection)
        with connection.transaction():
            self._insert(connection, batch)

    def _check_same_database(self, connection: psycopg.Connection[Any]) -> None:
        row = connection.execute(
            "SELECT current_database(), to_regclass(%s) IS NOT NULL",
            (f"{self.schema}.deliveries",),
        ).fetchone()
        assert row is not None
        if row[0] != self._database or not row[1]:
            raise ConfigError(
                f"connection is to database {row[0]!r}, but the store's tables are in "
                f"schema {self.schema!r} of database {self._database!r}"
            )

    def _insert(self, conn: psycopg.Connection[Any], batch: Sequence[EventBatch]) -> None:
        """The batch's events, then its deliveries, and a wake-up for the dispatchers."""
        try:
            self._copy(
                conn,
                "events",
                "id, name, created_at, body, tenant, trace_context",
                [(e.id, e.name, e.created_at, e.body, e.tenant, e.trace_context) for e, _ in batch],
            )
        except psycopg.errors.UniqueViolation as exc:
            raise DuplicateEvent([e.id for e, _ in batch]) from exc
        deliveries = [delivery_row(d) for _, ds in batch for d in ds]
        if deliveries:
            self._copy(conn, "deliveries", DELIVERY_COLUMNS, deliveries)
            conn.execute("SELECT pg_notify(%s, '')", (self.channel,))

    def _copy(
        self, conn: psycopg.Connection[Any], table: str, columns: str, rows: list[tuple[Any, ...]]
    ) -> None:
        """Insert ``rows`` into ``table`` with ``COPY``: psycopg encodes the rows in C, where
        array parameters (``unnest``) are built in Python, half the client's time in a
        grouped publish. A caller's connection in pipeline mode, which refuses ``COPY``,
        gets ``INSERT`` statements instead."""
        if conn.pgconn.pipeline_status != psycopg.pq.PipelineStatus.OFF:
            marks = ", ".join(["%s"] * len(rows[0]))
            sql = f"INSERT INTO {{s}}.{table} ({columns}) VALUES ({marks})"
            with conn.cursor() as cursor:
                cursor.executemany(self._sql(sql), rows)
            return
        copy_sql = self._sql(f"COPY {{s}}.{table} ({columns}) FROM STDIN")
        with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)

    def _upsert(self, conn: psycopg.Connection[Any], deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        columns = list(zip(*map(delivery_row, deliveries), strict=True))
        conn.execute(
            self._sql(
                f"INSERT INTO {{s}}.deliveries ({DELIVERY_COLUMNS}) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], "
                "%s::float8[], %s::text[], %s::float8[], %s::text[], %s::text[], %s::text[]) "
                "ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
                "next_attempt_at = excluded.next_attempt_at, attempts = excluded.attempts, "
                "reason = excluded.reason, locked_by = NULL, lease_expires_at = NULL,"
                " lease_token = NULL"
            ),
            [list(c) for c in columns],
        )
        conn.execute("SELECT pg_notify(%s, '')", (self.channel,))

    def get_event(self, event_id: str) -> Event | None:
        """The event, or None."""
        with self._connection() as conn:
            row = conn.execute(
                self._sql(
                    "SELECT id, name, created_at, body, tenant, trace_context"
                    " FROM {s}.events WHERE id = %s"
                ),
                (event_id,),
            ).fetchone()
        return Event(row[0], row[1], row[2], bytes(row[3]), row[4], row[5]) if row else None

    def claim(self, now: float, limit: int, worker: str, lease_until: float) -> list[Claimed]:
        """Lease up to ``limit`` due deliveries (expired leases first) in one statement.

        Each row's lease token is this call's prefix and the row's id.
        """
        prefix = claim_prefix()
        old = ", ".join(f"p.{c.strip()}" for c in DELIVERY_COLUMNS.split(","))
        live = "EXISTS (SELECT 1 FROM {s}.endpoints e WHERE e.id = d.endpoint_id)"
        with self._connection() as conn:
            rows = conn.execute(
                self._sql(
                    "WITH expired AS ("
                    f" SELECT {DELIVERY_COLUMNS} FROM {{s}}.deliveries d"
                    f" WHERE state = 'in_flight' AND lease_expires_at <= %(now)s AND {live}"
                    " ORDER BY lease_expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED),"
                    " due AS ("
                    f" SELECT {DELIVERY_COLUMNS} FROM {{s}}.deliveries d"
                    " WHERE state IN ('pending', 'retry_scheduled')"
                    f" AND next_attempt_at <= %(now)s AND {live}"
                    " ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED),"
                    " picked AS ("
                    " (SELECT * FROM expired) UNION ALL (SELECT * FROM due) LIMIT %(limit)s)"
                    " UPDATE {s}.deliveries t SET state = 'in_flight', next_attempt_at = NULL,"
                    " locked_by = %(worker)s, lease_expires_at = %(lease)s,"
                    " lease_token = %(prefix)s || t.id"
                    f" FROM picked p WHERE t.id = p.id RETURNING {old}"
                ),
                {
                    "now": now,
                    "limit": limit,
                    "worker": worker,
                    "lease": lease_until,
                    "prefix": prefix,
                },
            ).fetchall()
            if not rows:
                return []
            deliveries = [delivery_from_row(r, prefix + r[0]) for r in rows]
            events: dict[str, Event] = {}
            endpoints: dict[str, Endpoint] = {}
            for kind, key, name, created_at, body, tenant, trace_context, record in conn.execute(
                self._sql(
                    "SELECT 'event', id, name, created_at, body, tenant, trace_context, NULL"
                    " FROM {s}.events WHERE id = ANY(%s) UNION ALL"
                    " SELECT 'endpoint', id, NULL, NULL, NULL, NULL, NULL, record"
                    " FROM {s}.endpoints WHERE id = ANY(%s)"
                ),
                (list({d.event_id for d in deliveries}), list({d.endpoint_id for d in deliveries})),
            ):
                if kind == "event":
                    events[key] = Event(key, name, created_at, bytes(body), tenant, trace_context)
                else:
                    endpoints[key] = endpoint_from_json(record)
        return [
            claimed_of(d, events[d.event_id], endpoints[d.endpoint_id], lease_until)
            for d in deliveries
        ]

    def complete(self, deliveries: Sequence[Delivery], worker: str) -> int:
        """Write records of claims that still hold their rows, in one statement.

        A row is written only while leased to ``worker`` under the record's
        token (a record without one matches no row); a record given twice is
        written as first given.
        """
        if not deliveries:
            return 0
        firsts = first_of_each(deliveries)
        rows = [delivery_row(d) for d in firsts]
        notify = any(d.state is DeliveryState.RETRY_SCHEDULED for d in deliveries)
        with self._connection() as conn:
            row = conn.execute(
                self._sql(
                    "WITH written AS ("
                    " UPDATE {s}.deliveries d SET state = v.state, next_attempt_at = v.next_at,"
                    " attempts = v.attempts, reason = v.reason,"
                    " locked_by = NULL, lease_expires_at = NULL, lease_token = NULL"
                    " FROM unnest(%s::text[], %s::text[], %s::float8[], %s::text[], %s::text[],"
                    " %s::text[]) AS v(id, state, next_at, attempts, reason, token)"
                    " WHERE d.id = v.id AND d.locked_by = %s AND d.lease_token = v.token"
                    " AND d.state = 'in_flight'"
                    " RETURNING 1)"
                    " SELECT count(*), CASE WHEN %s THEN pg_notify(%s, '') END FROM written"
                ),
                (
                    [r[0] for r in rows],
                    [r[4] for r in rows],
                    [r[5] for r in rows],
                    [r[6] for r in rows],
                    [r[7] for r in rows],
                    [d.lease_token for d in firsts],
                    worker,
                    notify,
                    self.channel,
                ),
            ).fetchone()
        return int(row[0]) if row else 0

    def release(self, delivery_ids: Sequence[str], worker: str) -> None:
        """Return unstarted claims: due again at once (fenced by worker only; see ``Store``)."""
        if not delivery_ids:
            return
        with self._transaction() as conn:
            conn.execute(
                self._sql(
                    "UPDATE {s}.deliveries SET state = CASE WHEN attempts = '[]'"
                    " THEN 'pending' ELSE 'retry_scheduled' END, next_attempt_at = created_at,"
                    " locked_by = NULL, lease_expires_at = NULL, lease_token = NULL"
                    " WHERE id = ANY(%s) AND locked_by = %s AND state = 'in_flight'"
                ),
                (list(delivery_ids), worker),
            )
            conn.execute("SELECT pg_notify(%s, '')", (self.channel,))

    def save_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        """Insert or replace delivery records."""
        with self._transaction() as conn:
            self._upsert(conn, deliveries)

    def next_due(self) -> float | None:
        """Earliest due time or lease expiry."""
        live = "EXISTS (SELECT 1 FROM {s}.endpoints e WHERE e.id = d.endpoint_id)"
        with self._connection() as conn:
            row = conn.execute(
                self._sql(
                    "SELECT least("
                    " (SELECT next_attempt_at FROM {s}.deliveries d"
                    f"  WHERE state IN ('pending', 'retry_scheduled') AND {live}"
                    "  ORDER BY next_attempt_at LIMIT 1),"
                    " (SELECT lease_expires_at FROM {s}.deliveries d"
                    f"  WHERE state = 'in_flight' AND {live}"
                    "  ORDER BY lease_expires_at LIMIT 1))"
                )
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        """The delivery, or None."""
        with self._connection() as conn:
            row = conn.execute(
                self._sql(f"SELECT {DELIVERY_COLUMNS} FROM {{s}}.deliveries WHERE id = %s"),
                (delivery_id,),
            ).fetchone()
        return delivery_from_row(row) if row else None

    def list_deliveries(
        self, where: DeliveryFilter = ALL_DELIVERIES, limit: int = 100, offset: int = 0
    ) -> list[Delivery]:
        """Deliveries matching ``where``, oldest first."""
        clause, params = filter_sql(where, "%s", "{s}.events")
        with self._connection() as conn:
            rows = conn.execute(
                self._sql(
                    f"SELECT {DELIVERY_COLUMNS} FROM {{s}}.deliveries{clause} "
                    "ORDER BY created_at, id LIMIT %s OFFSET %s"
                ),
                (*params, limit, offset),
            ).fetchall()
        return [delivery_from_row(r) for r in rows]

    def count_deliveries(self, where: DeliveryFilter = ALL_DELIVERIES) -> int:
        """How many deliveries match ``where``."""
        clause, params = filter_sql(where, "%s", "{s}.events")
        with self._connection() as conn:
            row = conn.execute(
                self._sql(f"SELECT count(*) FROM {{s}}.deliveries{clause}"), params
            ).fetchone()
        return int(row[0]) if row else 0

    def prune(self, state: DeliveryState, before: float, limit: int) -> int:
        """Delete up to ``limit`` deliveries in ``state`` created before ``before``.

        Events left without deliveries go too. Only finished states may be pruned.
        """
        check_prunable(state)
        with self._transaction() as conn:
            row = conn.execute(
                self._sql(
                    "WITH gone AS (DELETE FROM {s}.deliveries WHERE id IN ("
                    " SELECT id FROM {s}.deliveries WHERE state = %s AND created_at < %s"
                    " ORDER BY created_at LIMIT %s) RETURNING event_id)"
                    " SELECT count(*), array_agg(DISTINCT event_id) FROM gone"
                ),
                (state.value, before, limit),
            ).fetchone()
            assert row is not None
            count, events = row
            if count:
                conn.execute(
                    self._sql(
                        "DELETE FROM {s}.events ev WHERE ev.id = ANY(%s) AND NOT EXISTS"
                        " (SELECT 1 FROM {s}.deliveries d WHERE d.event_id = ev.id)"
                    ),
                    (events,),
                )
        return int(count)

    # -- management API tokens ---------------------------------------------------

    def save_token(self, token: AdminToken) -> None:
        """Store a new token."""
        with self._connection() as conn:
            conn.execute(
                self._sql(
                    "INSERT INTO {s}.admin_tokens (id, tenant, digest, created_at, description) "
                    "VALUES (%s, %s, %s, %s, %s)"
                ),
                (token.id, token.tenant, token.digest, token.created_at, token.description),
            )

    def find_token(self, digest: str) -> AdminToken | None:
        """The token with this digest, or None."""
        with self._connection() as conn:
            row = conn.execute(
                self._sql(f"SELECT {_TOKEN_COLUMNS} FROM {{s}}.admin_tokens WHERE digest = %s"),
                (digest,),
            ).fetchone()
        return AdminToken(*row) if row else None

    def list_tokens(self, tenant: str | None = None) -> list[AdminToken]:
        """Every token (of ``tenant`` when given), oldest first."""
        with self._connection() as conn:
            rows = conn.execute(
                self._sql(
                    f"SELECT {_TOKEN_COLUMNS} FROM {{s}}.admin_tokens "
                    "WHERE %s::text IS NULL OR tenant = %s ORDER BY created_at, id"
                ),
                (tenant, tenant),
            ).fetchall()
        return [AdminToken(*r) for r in rows]

    def delete_token(self, token_id: str) -> bool:
        """Revoke a token; False if there was none."""
        with self._connection() as conn:
            cursor = conn.execute(
                self._sql("DELETE FROM {s}.admin_tokens WHERE id = %s"), (token_id,)
            )
            return cursor.rowcount > 0

    def close(self) -> None:
        """Close the pool (listeners stop through the function ``subscribe`` returned)."""
        self._pool.close()

    # -- notifications --------------------------------------------------------

    def subscribe(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` (from a listener thread) when work may be due; return a stop function.

        The listener reconnects after a lost connection and calls ``wake`` once
        it is listening again, since notifications sent meanwhile are lost.
        """
        stop = threading.Event()
        thread = threading.Thread(
            target=self._listen, args=(wake, stop), name=f"{self.channel}-listener", daemon=True
        )
        thread.start()

        def unsubscribe() -> None:
            stop.set()
            thread.join(timeout=5)

        return unsubscribe

    def _listen(self, wake: Callable[[], None], stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f'LISTEN "{self.channel}"')
                    wake()
                    while not stop.is_set():
                        if any(True for _ in conn.notifies(timeout=0.5, stop_after=1)):
                            wake()
            except psycopg.Error:
                stop.wait(1.0)


def _describe(conninfo: str) -> str:
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "the given conninfo (which does not parse)"
    host = params.get("host", "localhost")
    return f"{params.get('dbname', '(default database)')} on {host}:{params.get('port', 5432)}"
