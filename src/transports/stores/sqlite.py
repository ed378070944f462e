"""SQLite storage: the embedded default, durable on one host.

Three connections per store: two for writes, under one lock (durable writes
such as publishing with the configured ``synchronous``, claims and results
with ``NORMAL``, each connection keeping its setting), and one for reads,
under its own lock, so a read (listing endpoints to publish, say) never
waits behind a write that waits for the file lock. The driver's worker
threads share them. Python's implicit transactions are off (autocommit mode)
and every write transaction starts with ``BEGIN IMMEDIATE``, so a transaction
never upgrades from read to write (which makes SQLite return ``SQLITE_BUSY``
at once, ignoring ``busy_timeout``). WAL lets readers (the command line,
other processes) look while the dispatcher writes. Schema migrations are
versioned and applied when the store is opened.

Claims lease rows in the same transaction that selects them: ``state`` becomes
``in_flight`` with ``locked_by``, ``lease_expires_at`` and ``lease_token``
(the claim's random prefix and the row's id, set by the same ``UPDATE``);
results are written only ``WHERE locked_by = <this worker> AND lease_token =
<the record's token>``, so neither another worker's stale result nor this
worker's own from an earlier claim of the row is accepted; rows whose lease
expired are claimed again (after a crash, the delivery is attempted anew with
the same event id).

Parameters are encoded before the write lock is taken and rows decoded after
it is released, so a transaction holds the lock only for SQLite's own work.

Publishing commits in groups: callers of ``add_events`` that arrive while a
write transaction runs queue their batches, and whichever of them takes the
write lock next commits every queued batch in one transaction (one fsync),
each inside a savepoint of its own, so one batch's error undoes and reaches
only its caller. Each caller returns once the commit holding its rows is done;
a lone caller commits at once.

``add_events`` can write through the caller's own ``sqlite3`` connection to
the same file, inside the caller's transaction (the outbox pattern).

Claims and results can also be made without waiting (``without_waiting``),
which the async drivers use to make them on the event loop's thread: handed
to a worker thread, a call that takes a few hundred microseconds of SQLite's
time costs more than that in thread hand-offs, and the thread and the event
loop take the GIL from each other at every row SQLite steps through. Inside,
a call that would wait raises ``WouldWait`` instead: for the write lock
(another thread's write, another process's), for the disk (a durable
commit), or for a checkpoint. So no connection checkpoints the write-ahead
log on its own: a write made in a thread checkpoints before it begins, once
``_CHECKPOINT_ROWS`` rows have been written since the last checkpoint (and
``without_waiting`` refuses until one has), so that this same write, not
one made without waiting, starts the log again (which syncs its header).
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from transports.stores.interface import (
    ALL_DELIVERIES,
    AdminToken,
    Claimed,
    ClosesOnExit,
    DeliveryFilter,
    DuplicateEvent,
    EventBatch,
    SchemaStatus,
    WouldWait,
    claim_prefix,
    claimed_of,
    error_twin,
    first_of_each,
)
from transports.stores.records import (
    DELIVERY_COLUMNS,
    attempts_to_json,
    check_prunable,
    delivery_from_row,
    delivery_row,
    endpoint_from_json,
    endpoint_to_json,
    filter_sql,
)
from webhook_core import ConfigError, Delivery, DeliveryState, Endpoint, Event

DEFAULT_PATH = "webhooks.db"
# Deliveries of removed endpoints are never claimed. Due work is found by walking
# the partial indexes in time order (INDEXED BY: without statistics the planner
# may walk another index and sort every waiting row).
_TOKEN_COLUMNS = "id, tenant, digest, created_at, description"
_LIVE = "EXISTS (SELECT 1 FROM endpoints e WHERE e.id = d.endpoint_id)"


MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE endpoints (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        record TEXT NOT NULL
    );
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at REAL NOT NULL,
        body BLOB NOT NULL
    );
    CREATE TABLE deliveries (
        id TEXT PRIMARY KEY,
        event_id TEXT NOT NULL REFERENCES events (id),
        endpoint_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        state TEXT NOT NULL,
        next_attempt_at REAL,
        attempts TEXT NOT NULL DEFAULT '[]',
        reason TEXT,
        replay_of TEXT,
        locked_by TEXT,
        lease_expires_at REAL
    );
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
        WHERE state IN ('pending', 'retry_scheduled');
    CREATE INDEX deliveries_lease ON deliveries (lease_expires_at) WHERE state = 'in_flight';
    CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, state);
    CREATE INDEX deliveries_event ON deliveries (event_id);
    CREATE INDEX deliveries_state ON deliveries (state, created_at);
    """,
    # Indexes that a claim or a result must move a row between cost every
    # delivery twice; listings need only time order. Keyed by state: the due
    # and lease indexes (waiting and in-flight rows) and failed rows.
    """
    DROP INDEX deliveries_state;
    DROP INDEX deliveries_endpoint;
    CREATE INDEX deliveries_created ON deliveries (created_at);
    CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, created_at);
    CREATE INDEX deliveries_failed ON deliveries (created_at) WHERE state = 'failed';
    """,
    # Results are fenced per claim: the token the claim handed out must match.
    # Rows leased before the upgrade have none; their results are refused and the
    # deliveries are claimed again when those leases expire.
    """
    ALTER TABLE deliveries ADD COLUMN lease_token TEXT;
    """,
    # Tenants: what existed before belongs to 'default'. A delivery's tenant is
    # its event's. Management API tokens are kept as digests only.
    """
    ALTER TABLE endpoints ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE events ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
    CREATE INDEX endpoints_tenant ON endpoints (tenant, created_at);
    CREATE INDEX events_tenant ON events (tenant, id);
    CREATE TABLE admin_tokens (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        digest TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        description TEXT NOT NULL DEFAULT ''
    );
    """,
    # The traceparent of the span current at publish (tracing on), beside the body.
    """
    ALTER TABLE events ADD COLUMN trace_context TEXT;
    """,
)


# Listings of waiting or in-flight deliveries walk the due or lease index (the
# working set, sorted for the listing) rather than the whole table's history;
# the extra term is what lets SQLite use the partial index. With an endpoint
# or an event named, that endpoint's or event's rows are walked instead.
_WORKING_SET = {
    DeliveryState.PENDING: ("deliveries_due", "state IN ('pending', 'retry_scheduled')"),
    DeliveryState.RETRY_SCHEDULED: ("deliveries_due", "state IN ('pending', 'retry_scheduled')"),
    DeliveryState.IN_FLIGHT: ("deliveries_lease", "state = 'in_flight'"),
}


def _filtered(where: DeliveryFilter) -> tuple[str, list[Any]]:
    """``deliveries`` with the ``WHERE`` clause selecting ``where``, and its parameters."""
    sql, params = filter_sql(where, "?")
    named = (where.endpoint_id, where.event_id, where.event_name) != (None, None, None)
    working = None if where.state is None or named else _WORKING_SET.get(where.state)
    if working is None:
        return "deliveries" + sql, params
    index, term = working
    return f"deliveries INDEXED BY {index}{sql} AND {term}", params


# Rows per statement, under the oldest SQLite's limit of 999 parameters.
_EVENTS_PER_INSERT = 160  # 6 parameters each
_DELIVERIES_PER_INSERT = 100  # 9 parameters each
_RESULTS_PER_UPDATE = 150  # 6 each, and the worker
_IDS_PER_QUERY = 500
# UPDATE ... FROM came with SQLite 3.33; before it, results take a statement each.
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)
_BUSY_MS = 30_000  # how long a write waits for another connection's (made without waiting: 0)
# Rows written (published, claimed, written back; a transaction counts one at least)
# between two checkpoints of the write-ahead log: about SQLite's own 1,000 pages for the
# benchmark's deliveries, whose claims and results write 0.16 pages a row.
_CHECKPOINT_ROWS = 5_000


_EVENT_COLUMNS = "id, name, created_at, body, tenant, trace_context"


def _event(row: Sequence[Any]) -> Event:
    """An ``Event`` from a row of ``_EVENT_COLUMNS``."""
    return Event(row[0], row[1], row[2], bytes(row[3]), row[4], row[5])


class _Nulls(NamedTuple):
    """Where a kind of row may hold ``None``: those columns, and a row's ``None``s there."""

    columns: tuple[int, ...]
    of: Callable[[tuple[Any, ...]], tuple[bool, ...]]


_EVENT_NULLS = _Nulls((5,), lambda r: (r[5] is None,))
_DELIVERY_NULLS = _Nulls((5, 7, 8), lambda r: (r[5] is None, r[7] is None, r[8] is None))
_RESULT_NULLS = _Nulls((2, 4, 5), lambda r: (r[2] is None, r[4] is None, r[5] is None))


def _values(
    rows: Sequence[tuple[Any, ...]], per: int, nulls: _Nulls
) -> list[tuple[str, list[Any]]]:
    """``rows`` as ``VALUES`` lists of up to ``per`` rows each, with their parameters.

    A ``None`` is written as ``NULL`` in the text instead of being bound: the
    sqlite3 module binds ``None`` only after looking for an adapter, which
    raises and clears an exception each time. Rows are grouped by where their
    ``None`` values are (among ``nulls.columns``; the other columns are ``NOT
    NULL``), so that one text serves each group.
    """
    groups: dict[tuple[bool, ...], list[tuple[Any, ...]]] = {}
    of = nulls.of
    for row in rows:
        mask = of(row)
        group = groups.get(mask)
        if group is None:
            groups[mask] = [row]
        else:
            group.append(row)
    return [
        (
            _marks(len(group[0]), nulls.columns, mask, min(per, len(group) - i)),
            [v for row in group[i : i + per] for v in row if v is not None],
        )
        for mask, group in groups.items()
        for i in range(0, len(group), per)
    ]


@functools.lru_cache(maxsize=1024)
def _marks(width: int, columns: tuple[int, ...], mask: tuple[bool, ...], count: int) -> str:
    """``(?, NULL), (?, NULL)``: ``count`` rows ``width`` wide, ``NULL`` in the ``columns``
    that ``mask`` sets."""
    one = ["?"] * width
    for column, none in zip(columns, mask, strict=True):
        if none:
            one[column] = "NULL"
    return ", ".join(["(" + ", ".join(one) + ")"] * count)


def _id_lists(ids: Collection[str]) -> Iterator[tuple[str, list[str]]]:
    """``ids`` 500 at a time, each with its ``?, ?, ...`` for an ``IN`` list."""
    listed = list(ids)
    for i in range(0, len(listed), _IDS_PER_QUERY):
        some = listed[i : i + _IDS_PER_QUERY]
        yield ", ".join("?" * len(some)), some


def _select_by_ids(db: sqlite3.Connection, selected: str, ids: set[str]) -> list[Any]:
    """The rows of ``SELECT selected`` whose ``id`` is in ``ids``, 500 ids a query."""
    return [
        row
        for marks, some in _id_lists(ids)
        for row in db.execute(f"SELECT {selected} WHERE id IN ({marks})", some)
    ]


class _Rows:
    """A batch's parameters, encoded before the write lock is taken."""

    __slots__ = ("count", "deliveries", "event_ids", "events")

    def __init__(self, batch: Sequence[EventBatch]) -> None:
        self.count = len(batch) + sum(len(ds) for _, ds in batch)
        self.event_ids = [e.id for e, _ in batch]
        self.events = _values(
            [(e.id, e.name, e.created_at, e.body, e.tenant, e.trace_context) for e, _ in batch],
            _EVENTS_PER_INSERT,
            _EVENT_NULLS,
        )
        self.deliveries = _delivery_values([d for _, ds in batch for d in ds])


def _delivery_values(deliveries: Sequence[Delivery]) -> list[tuple[str, list[Any]]]:
    """Deliveries as ``_upsert`` takes them."""
    return _values([delivery_row(d) for d in deliveries], _DELIVERIES_PER_INSERT, _DELIVERY_NULLS)


class _Queued:
    """A caller's batch waiting for a group commit, then its outcome."""

    __slots__ = ("done", "error", "rows")

    def __init__(self, rows: _Rows) -> None:
        self.rows = rows
        self.done = False
        self.error: BaseException | None = None


@contextmanager
def _refused_when_busy(waitless: bool = True) -> Iterator[None]:
    """``WouldWait`` for SQLite's "database is locked", when ``waitless``."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        # The extended codes (SQLITE_BUSY_RECOVERY, ...) keep the primary code's low byte.
        if waitless and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
            raise WouldWait("another connection is writing") from exc
        raise


class _Waitless(threading.local):
    """Whether this thread's calls are made without waiting (see ``without_waiting``)."""

    on = False


class SQLiteStore(ClosesOnExit):
    """A durable ``Store`` in one SQLite file (``webhooks.db`` by default).

    ``synchronous`` is SQLite's setting for writes that must survive a power
    cut: publishing, endpoint changes, replays, cancellations (``FULL`` by
    default). Claims and attempt results commit with ``NORMAL`` (no fsync of
    their own; the next durable commit or checkpoint carries them): a power
    cut can undo the last few, and the deliveries concerned are then sent
    again with the same event id, never lost. Any process crash loses nothing.
    """

    blocking = True

    def __init__(
        self, path: str | os.PathLike[str] = DEFAULT_PATH, *, synchronous: str = "FULL"
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL or EXTRA")
        self.path = Path(path)
        self._lock = threading.RLock()
        self._read_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Queued] = []
        durable = synchronous.upper()
        self._db = self._connect(durable)
        self._lease_db = self._connect("NORMAL" if durable in ("FULL", "NORMAL") else durable)
        for writer in (self._db, self._lease_db):
            writer.execute("PRAGMA wal_autocheckpoint=0")  # see the module
        self._reader = self._connect(durable)
        self._waitless = _Waitless()
        self._lease_syncs = durable == "EXTRA"  # every commit, so none can skip waiting
        self._written = 0  # rows since the last checkpoint
        self.migrate()

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cannot open SQLite database {str(self.path)!r}: {exc}") from exc
        db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        db.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        db.execute("PRAGMA foreign_keys=ON")
        return db

    @contextmanager
    def without_waiting(self) -> Iterator[None]:
        """Make this thread's calls inside raise ``WouldWait`` wherever they would wait.

        Claims, results and reads then cost SQLite's own work (and the GIL
        taken back after each row it steps through); a durable write
        (publishing, an endpoint change) raises, as does a write while another
        connection writes. Raises at once when another thread is writing, when
        a checkpoint is due (see the module) or with ``synchronous="EXTRA"``
        (whose every commit syncs). A call that raised may have committed a
        lease write before it did: a result written is not written twice (the
        lease is cleared), so such calls can be made again in a worker thread.
        Rarely, a call can still wait: for a page read from a cold disk, or to
        start the log again after another process's checkpoint.
        """
        if self._lease_syncs:
            raise WouldWait('synchronous="EXTRA" syncs every commit')
        if not self._lock.acquire(blocking=False):
            raise WouldWait("another thread is writing")
        try:
            if self._written >= _CHECKPOINT_ROWS:
                raise WouldWait("the write-ahead log is due for a checkpoint")
            lease = self._lease_db
            lease.execute("PRAGMA busy_timeout=0")
            try:
                self._waitless.on = True
                yield
            finally:
                self._waitless.on = False
                lease.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        finally:
            self._lock.release()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        if self._waitless.on:
            # The write lock is held: the lease connection is free, and waits for nothing.
            with _refused_when_busy():
                yield self._lease_db
            return
        with self._read_lock:
            yield self._reader

    @contextmanager
    def _write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction; ``durable=False`` for claims and results (see the class).

        The two kinds use connections of their own, each keeping its
        ``synchronous`` setting, under one lock: writes never wait for each
        other on the file lock, only on this one.
        """
        waitless = self._waitless.on
        if waitless and durable:
            raise WouldWait("a durable commit waits for the disk")
        db = self._db if durable else self._lease_db
        with self._lock:
            if not waitless:
                self._checkpoint_if_due(db)
            with _refused_when_busy(waitless):
                db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            self._written += 1

    def _checkpoint_if_due(self, db: sqlite3.Connection) -> None:
        """Checkpoint the write-ahead log if due (see the module); called holding the write
        lock, from a thread, before a write begins."""
        if self._written >= _CHECKPOINT_ROWS:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._written = 0

    def schema_status(self) -> SchemaStatus:
        """The applied schema version against the latest this library knows."""
        with self._read() as db:
            (version,) = db.execute("PRAGMA user_version").fetchone()
        return SchemaStatus(int(version), len(MIGRATIONS))

    def migrate(self) -> int:
        """Apply pending migrations in one transaction each; return the schema version."""
        with self._write() as db:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version > len(MIGRATIONS):
                raise ConfigError(
                    f"{self.path} has schema version {version}, newer than this library "
                    f"knows ({len(MIGRATIONS)}); upgrade the library"
                )
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={number + 1}")
        return self.schema_status().version

    # -- endpoints ---------------------------------------------------------

    def save_endpoint(self, endpoint: Endpoint) -> None:
        """Insert or replace an endpoint."""
        with self._write() as db:
            db.execute(
                "INSERT INTO endpoints (id, created_at, record, tenant) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET record = excluded.record",
                (endpoint.id, endpoint.created_at, endpoint_to_json(endpoint), endpoint.tenant),
            )

    def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint, or None."""
        with self._read() as db:
            row = db.execute("SELECT record FROM endpoints WHERE id = ?", (endpoint_id,)).fetchone()
        return endpoint_from_json(row[0]) if row else None

    def get_endpoints(self, endpoint_ids: Collection[str]) -> dict[str, Endpoint]:
        """The endpoints of these ids that exist, by id (one query per 500 ids)."""
        with self._read() as db:
            rows = _select_by_ids(db, "record FROM endpoints", set(endpoint_ids))
        return {e.id: e for e in (endpoint_from_json(r[0]) for r in rows)}

    def list_endpoints(self, tenant: str | None = None) -> list[Endpoint]:
        """Every endpoint (of ``tenant`` when given), oldest first."""
        with self._read() as db:
            if tenant is None:
                rows = db.execute("SELECT record FROM endpoints ORDER BY created_at, id").fetchall()
            else:
                rows = db.execute(
                    "SELECT record FROM endpoints WHERE tenant = ? ORDER BY created_at, id",
                    (tenant,),
                ).fetchall()
        return [endpoint_from_json(r[0]) for r in rows]

    def delete_endpoint(self, endpoint_id: str) -> bool:
        """Remove an endpoint; False if there was none."""
        with self._write() as db:
            return db.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,)).rowcount > 0

    # -- events and deliveries ---------------------------------------------------

    def add_events(self, batch: Sequence[EventBatch], *, connection: Any = None) -> None:
        """Store events with their deliveries in one transaction.

        Concurrent callers share a commit (see the module); each returns once
        its rows are durable and sees only its own batch's errors, or the
        commit's. With ``connection`` (the caller's ``sqlite3.Connection`` to
        this file), the rows join the caller's transaction (one is begun if
        none is open) and exist once the caller commits.
        """
        if connection is None:
            if self._waitless.on:
                raise WouldWait("a durable commit waits for the disk")
            mine = _Queued(_Rows(batch))
            with self._queue_lock:
                self._queue.append(mine)
            with self._lock:
                if not mine.done:
                    self._commit_queued(mine)
            if mine.error is not None:
                raise mine.error
            return
        if not isinstance(connection, sqlite3.Connection):
            raise ConfigError(
                "connection must be a sqlite3.Connection for the SQLite store, "
                f"not {type(connection).__name__}"
            )
        self._check_same_file(connection)
        if not connection.in_transaction:
            connection.execute("BEGIN IMMEDIATE")
        connection.execute("SAVEPOINT webhooks_publish")
        try:
            self._insert(connection, _Rows(batch))
        except BaseException:
            connection.execute("ROLLBACK TO webhooks_publish")
            raise
        finally:
            connection.execute("RELEASE webhooks_publish")

    def _commit_queued(self, mine: _Queued) -> None:
        """Commit every queued batch in one transaction, each in a savepoint of its own.

        Called with the write lock held. A failure to begin is raised to this
        caller alone (the others' batches stay queued for the next leader); a
        failure after that reaches every batch of the group.
        """
        db = self._db
        try:
            self._checkpoint_if_due(db)
            db.execute("BEGIN IMMEDIATE")
        except BaseException:
            with self._queue_lock:
                self._queue.remove(mine)
            raise
        with self._queue_lock:
            group, self._queue = self._queue, []
        try:
            if len(group) == 1:
                self._insert(db, group[0].rows)
            else:
                for queued in group:
                    db.execute("SAVEPOINT webhooks_publish")
                    try:
                        self._insert(db, queued.rows)
                    except Exception as exc:
                        db.execute("ROLLBACK TO webhooks_publish")
                        queued.error = exc
                    db.execute("RELEASE webhooks_publish")
            db.execute("COMMIT")
            self._written += sum(queued.rows.count for queued in group)
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            for queued in group:
                if queued.error is None:
                    queued.error = exc if queued is mine else error_twin(exc)
        finally:
            for queued in group:
                queued.done = True

    def _check_same_file(self, connection: sqlite3.Connection) -> None:
        files = {row[1]: row[2] for row in connection.execute("PRAGMA database_list")}
        theirs = files.get("main") or ""
        if not theirs or not os.path.samefile(theirs, self.path):
            raise ConfigError(
                f"connection is to {theirs or 'an in-memory database'!r}, "
                f"but the store is {str(self.path)!r}"
            )

    @staticmethod
    def _insert(db: sqlite3.Connection, rows: _Rows) -> None:
        """A batch's events, then its deliveries, many rows a statement.

        Few statements matter more than it seems: between two, the worker
        thread must take the GIL back from a busy event loop, while holding
        the write lock that claims and results wait for.
        """
        try:
            for marks, values in rows.events:
                db.execute(
                    "INSERT INTO events (id, name, created_at, body, tenant, trace_context) "
                    f"VALUES {marks}",
                    values,
                )
        except sqlite3.IntegrityError as exc:
            raise DuplicateEvent(rows.event_ids) from exc
        SQLiteStore._upsert(db, rows.deliveries)

    @staticmethod
    def _upsert(db: sqlite3.Connection, params: list[tuple[str, list[Any]]]) -> None:
        """Insert or replace deliveries given as ``_delivery_values``."""
        for marks, values in params:
            db.execute(
                f"INSERT INTO deliveries ({DELIVERY_COLUMNS}) VALUES {marks} "
                "ON CONFLICT (id) DO UPDATE SET state = excluded.state, "
                "next_attempt_at = excluded.next_attempt_at, attempts = excluded.attempts, "
                "reason = excluded.reason, locked_by = NULL, lease_expires_at = NULL, "
                "lease_token = NULL",
                values,
            )

    def get_event(self, event_id: str) -> Event | None:
        """The event, or None."""
        with self._read() as db:
            row = db.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,)
            ).fetchone()
        return _event(row) if row else None

    def claim(self, now: float, limit: int, worker: str, lease_until: float) -> list[Claimed]:
        """Lease up to ``limit`` due deliveries (expired leases first) in one transaction.

        Each row's lease token is this call's prefix and the row's id. Records
        are decoded once the write lock is released.
        """
        prefix = claim_prefix()
        with self._write(durable=False) as db:
            rows = db.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries d INDEXED BY deliveries_lease "
                f"WHERE state = 'in_flight' AND lease_expires_at <= ? AND {_LIVE} "
                "ORDER BY lease_expires_at LIMIT ?",
                (now, limit),
            ).fetchall()
            if len(rows) < limit:
                rows += db.execute(
                    f"SELECT {DELIVERY_COLUMNS} FROM deliveries d INDEXED BY deliveries_due "
                    "WHERE state IN ('pending', 'retry_scheduled') AND next_attempt_at <= ? "
                    f"AND {_LIVE} ORDER BY next_attempt_at LIMIT ?",
                    (now, limit - len(rows)),
                ).fetchall()
            if not rows:
                return []
            self._written += len(rows)
            for marks, some in _id_lists([r[0] for r in rows]):
                db.execute(
                    "UPDATE deliveries SET state = 'in_flight', next_attempt_at = NULL, "
                    "locked_by = ?, lease_expires_at = ?, lease_token = ? || id "
                    f"WHERE id IN ({marks})",
                    [worker, lease_until, prefix, *some],
                )
            event_rows = _select_by_ids(db, f"{_EVENT_COLUMNS} FROM events", {r[1] for r in rows})
            records = _select_by_ids(db, "record FROM endpoints", {r[2] for r in rows})
        events = {r[0]: _event(r) for r in event_rows}
        endpoints = {e.id: e for e in (endpoint_from_json(r[0]) for r in records)}
        return [
            claimed_of(d, events[d.event_id], endpoints[d.endpoint_id], lease_until)
            for d in (delivery_from_row(r, prefix + r[0]) for r in rows)
        ]

    def complete(self, deliveries: Sequence[Delivery], worker: str) -> int:
        """Write records of claims that still hold their rows, in one transaction.

        A row is written only while leased to ``worker`` under the record's
        token (a record without one matches no row: ``= NULL`` is never
        true). Up to 150 records a statement (``UPDATE ... FROM``, SQLite 3.33
        and later; one a statement before).
        """
        rows = [
            (
                d.id,
                d.state._value_,
                d.next_attempt_at,
                attempts_to_json(d.attempts) if d.attempts else "[]",
                d.reason,
                d.lease_token,
            )
            for d in first_of_each(deliveries)
        ]
        if not _UPDATE_FROM:
            each = [(*r[1:5], r[0], worker, r[5]) for r in rows]
            with self._write(durable=False) as db:
                self._written += len(each)
                return db.executemany(
                    "UPDATE deliveries SET state = ?, next_attempt_at = ?, attempts = ?, "
                    "reason = ?, locked_by = NULL, lease_expires_at = NULL, lease_token = NULL "
                    "WHERE id = ? AND locked_by = ? AND lease_token = ? AND state = 'in_flight'",
                    each,
                ).rowcount
        params = _values(rows, _RESULTS_PER_UPDATE, _RESULT_NULLS)
        written = 0
        with self._write(durable=False) as db:
            self._written += len(rows)
            for marks, values in params:
                written += db.execute(
                    "UPDATE deliveries SET state = r.column2, next_attempt_at = r.column3, "
                    "attempts = r.column4, reason = r.column5, locked_by = NULL, "
                    "lease_expires_at = NULL, lease_token = NULL "
                    f"FROM (VALUES {marks}) AS r "
                    "WHERE deliveries.id = r.column1 AND locked_by = ? "
                    "AND lease_token = r.column6 AND state = 'in_flight'",
                    [*values, worker],
                ).rowcount
        return written

    def release(self, delivery_ids: Sequence[str], worker: str) -> None:
        """Return unstarted claims: due again at once (fenced by worker only; see ``Store``)."""
        with self._write(durable=False) as db:
            self._written += len(delivery_ids)
            db.executemany(
                "UPDATE deliveries SET state = CASE WHEN attempts = '[]' THEN 'pending' "
                "ELSE 'retry_scheduled' END, next_attempt_at = created_at, "
                "locked_by = NULL, lease_expires_at = NULL, lease_token = NULL "
                "WHERE id = ? AND locked_by = ? AND state = 'in_flight'",
                [(i, worker) for i in delivery_ids],
            )

    def save_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        """Insert or replace delivery records."""
        params = _delivery_values(deliveries)
        with self._write() as db:
            self._upsert(db, params)

    def next_due(self) -> float | None:
        """Earliest due time or lease expiry."""
        with self._read() as db:
            row = db.execute(
                "SELECT min(t) FROM ("
                " SELECT * FROM (SELECT next_attempt_at AS t FROM deliveries d"
                "  INDEXED BY deliveries_due WHERE state IN ('pending', 'retry_scheduled')"
                f"  AND {_LIVE} ORDER BY next_attempt_at LIMIT 1)"
                " UNION ALL"
                " SELECT * FROM (SELECT lease_expires_at FROM deliveries d"
                "  INDEXED BY deliveries_lease WHERE state = 'in_flight'"
                f"  AND {_LIVE} ORDER BY lease_expires_at LIMIT 1))"
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def get_delivery(self, delivery_id: str) -> Delivery | None:
        """The delivery, or None."""
        with self._read() as db:
            row = db.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,)
            ).fetchone()
        return delivery_from_row(row) if row else None

    def list_deliveries(
        self, where: DeliveryFilter = ALL_DELIVERIES, limit: int = 100, offset: int = 0
    ) -> list[Delivery]:
        """Deliveries matching ``where``, oldest first."""
        source, params = _filtered(where)
        with self._read() as db:
            rows = db.execute(
                f"SELECT {DELIVERY_COLUMNS} FROM {source} ORDER BY created_at, id LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
        return [delivery_from_row(r) for r in rows]

    def count_deliveries(self, where: DeliveryFilter = ALL_DELIVERIES) -> int:
        """How many deliveries match ``where``."""
        source, params = _filtered(where)
        with self._read() as db:
            (count,) = db.execute(f"SELECT count(*) FROM {source}", params).fetchone()
        return int(count)

    def prune(self, state: DeliveryState, before: float, limit: int) -> int:
        """Delete up to ``limit`` deliveries in ``state`` created before ``before``.

        Events left without deliveries go too. Only finished states may be pruned.
        """
        check_prunable(state)
        with self._write() as db:
            rows = db.execute(
                "SELECT id, event_id FROM deliveries WHERE state = ? AND created_at < ? "
                "ORDER BY created_at LIMIT ?",
                (state.value, before, limit),
            ).fetchall()
            db.executemany("DELETE FROM deliveries WHERE id = ?", [(r[0],) for r in rows])
            db.executemany(
                "DELETE FROM events WHERE id = ? AND NOT EXISTS "
                "(SELECT 1 FROM deliveries WHERE event_id = ?)",
                [(e, e) for e in {r[1] for r in rows}],
            )
        return len(rows)

    # -- management API tokens ---------------------------------------------------

    def save_token(self, token: AdminToken) -> None:
        """Store a new token."""
        with self._write() as db:
            db.execute(
                "INSERT INTO admin_tokens (id, tenant, digest, created_at, description) "
                "VALUES (?, ?, ?, ?, ?)",
                (token.id, token.tenant, token.digest, token.created_at, token.description),
            )

    def find_token(self, digest: str) -> AdminToken | None:
        """The token with this digest, or None."""
        with self._read() as db:
            row = db.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM admin_tokens WHERE digest = ?", (digest,)
            ).fetchone()
        return AdminToken(*row) if row else None

    def list_tokens(self, tenant: str | None = None) -> list[AdminToken]:
        """Every token (of ``tenant`` when given), oldest first."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM admin_tokens WHERE ? IS NULL OR tenant = ? "
                "ORDER BY created_at, id",
                (tenant, tenant),
            ).fetchall()
        return [AdminToken(*r) for r in rows]

    def delete_token(self, token_id: str) -> bool:
        """Revoke a token; False if there was none."""
        with self._write() as db:
            return db.execute("DELETE FROM admin_tokens WHERE id = ?", (token_id,)).rowcount > 0

    def close(self) -> None:
        """Close the store's connections."""
        with self._lock, self._read_lock:
            self._db.close()
            self._lease_db.close()
            self._reader.close()
