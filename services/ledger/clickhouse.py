"""ClickHouse access for the ledger, one code path for embedded chDB and a server.

`chdb:///abs/dir` opens the embedded engine in this process; `http(s)://…` talks to a
ClickHouse server. Both go through clickhouse-connect, so every statement runs on both.
The calls block: the service runs them in a worker thread (`asyncio.to_thread`), and chDB
releases the GIL while it runs a statement, so the event loop decodes on meanwhile.
Every table name is qualified with the database, so a client never depends on `USE`.

A DSN naming several hosts (the nodes of a cluster: `RSMS_CLICKHOUSE_CLUSTER`) gives a
`FailoverClient`: it talks to one host and, when that host cannot be reached or cannot
take writes (lost Keeper), moves on to the next and tries the statement there. Moving on
is safe for every statement the ledger sends: reads and idempotent DDL change nothing
twice, and an insert carries a deduplication token that the replicated tables honour
whichever node the retry arrives at.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from clickhouse_connect.driver.exceptions import Error as ClickHouseDriverError

from services.ledger.dsn import host_dsns, next_host
from services.ledger.rows import RowChunk
from services.ledger.schema import (
    INBOUND_COLUMNS,
    INBOUND_TABLE,
    OUTCOME_EVENT_INSERT_SETTINGS,
    OUTCOME_EVENTS_TABLE,
    OUTCOMES_TABLE,
    RECEIPT_COLUMNS,
    RECEIPTS_TABLE,
    REQUEST_COLUMNS,
    REQUESTS_TABLE,
    apply_migrations,
    insert_settings,
)
from shared.private_dir import private_directory

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    REQUESTS_TABLE: REQUEST_COLUMNS,
    RECEIPTS_TABLE: RECEIPT_COLUMNS,
    INBOUND_TABLE: INBOUND_COLUMNS,
}
"""Tables written column by column (a few rows per event: building columns is cheap)."""
EVENT_TABLES: dict[str, tuple[str, dict[str, Any]]] = {
    OUTCOMES_TABLE: (OUTCOME_EVENTS_TABLE, OUTCOME_EVENT_INSERT_SETTINGS),
}
"""Tables written as JSON bodies into an events table whose view fans them out into rows."""

STORAGE_ERRORS: tuple[type[BaseException], ...] = (ClickHouseDriverError, OSError)


class StorageUnavailable(RuntimeError):
    """ClickHouse did not take a statement; the caller keeps its data and tries again later."""


HOST_FAILURE_CODES = frozenset({225, 242, 319, 999})
"""Server errors that are the host's, not the statement's: NO_ZOOKEEPER, TABLE_IS_READ_ONLY
(a replica without Keeper), UNKNOWN_STATUS_OF_INSERT, KEEPER_EXCEPTION. Another replica may
well take the statement."""


def moves_on(error: BaseException) -> bool:
    """Whether a failed statement should be tried on the next host of a cluster."""
    if isinstance(error, OSError | OperationalError):
        return True  # unreachable, connection lost, or the driver gave up retrying
    return isinstance(error, DatabaseError) and getattr(error, "code", None) in HOST_FAILURE_CODES


def connect_host(dsn: str) -> Any:
    """A clickhouse-connect client for one host (or chDB)."""
    kwargs: dict[str, Any] = {}
    if dsn.startswith("chdb://"):
        # The ledger holds message bodies: its data directory is the owner's only (chDB
        # creates what is missing with the process umask, usually world-readable).
        private_directory(Path(dsn.removeprefix("chdb://").split("?", 1)[0]), tighten=True)
    else:
        # A session id per client would make concurrent queries on one client fail with
        # "session is locked"; the ledger needs no session state.
        kwargs["autogenerate_session_id"] = False
    return clickhouse_connect.get_client(dsn=dsn, **kwargs)


class FailoverClient:
    """A ClickHouse client over several hosts of one cluster: one host at a time, the next
    (`next_host`) when a statement fails for the host's sake (`moves_on`), at most as many
    tries per statement as there are hosts. Opening it connects to the first that answers."""

    def __init__(self, dsns: Sequence[str], connect: Callable[[str], Any], first: int) -> None:
        self._dsns = list(dsns)
        self._connect = connect
        self._current = first % len(self._dsns)
        self._client: Any = None
        # The ledger calls a client from worker threads (reads run side by side): the lock
        # keeps one host current, so two threads failing at once move on once, not twice.
        self._lock = threading.Lock()
        self._call(lambda client: None)

    @property
    def host_index(self) -> int:
        """Which host (its place in the DSN) statements go to now."""
        return self._current

    def _call(self, statement: Callable[[Any], Any]) -> Any:
        failure: BaseException | None = None
        for _ in self._dsns:
            with self._lock:
                index, client = self._current, self._client
                if client is None:
                    try:
                        client = self._client = self._connect(self._dsns[index])
                    except STORAGE_ERRORS as error:
                        if not moves_on(error):
                            raise
                        failure, self._current = error, next_host(index, len(self._dsns))
                        continue
            try:
                return statement(client)
            except STORAGE_ERRORS as error:
                if not moves_on(error):
                    raise
                failure = error
                with self._lock:
                    if self._client is client:  # else another thread has moved on already
                        self._client, self._current = None, next_host(index, len(self._dsns))
                with contextlib.suppress(*STORAGE_ERRORS):  # the host is gone already
                    client.close()
        assert failure is not None
        raise failure

    def command(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(lambda client: client.command(*args, **kwargs))

    def query(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(lambda client: client.query(*args, **kwargs))

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(lambda client: client.insert(*args, **kwargs))

    def raw_insert(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(lambda client: client.raw_insert(*args, **kwargs))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def open_client(dsn: str) -> Any:
    """A client for `dsn`: chDB or one server as clickhouse-connect gives it; several hosts
    as a `FailoverClient` starting at a random one (ledgers spread over the replicas)."""
    dsns = host_dsns(dsn)
    try:
        if len(dsns) == 1:
            return connect_host(dsn)
        return FailoverClient(dsns, connect_host, first=random.randrange(len(dsns)))
    except STORAGE_ERRORS as error:
        raise StorageUnavailable(f"ClickHouse unreachable: {type(error).__name__}") from error


class LedgerWriter:
    """Inserts batches (columns, or event bodies ClickHouse fans out into rows); an insert
    token makes a retried batch land once."""

    def __init__(self, client: Any, database: str, cluster: str | None = None) -> None:
        self._client = client
        self._database = database
        self._cluster = cluster
        self._settings = insert_settings(cluster)

    def migrate(self) -> list[int]:
        try:
            return apply_migrations(self._client, self._database, self._cluster)
        except STORAGE_ERRORS as error:
            raise StorageUnavailable(f"schema migration failed: {error}") from error

    def write_batch(self, chunks: list[RowChunk]) -> dict[str, int]:
        """One insert per table; returns the rows written per table.

        The token names the events in the batch, so the same batch tried again after a
        lost answer is dropped by ClickHouse instead of stored twice.
        """
        written: dict[str, int] = {}
        for table in (*TABLE_COLUMNS, *EVENT_TABLES):
            parts = [chunk for chunk in chunks if chunk.table == table and chunk.row_count]
            if not parts:
                continue
            digest = hashlib.sha256("\n".join(sorted(p.key for p in parts)).encode()).hexdigest()
            token = f"{table}:{digest}"
            if table in EVENT_TABLES:
                self._insert_bodies(table, parts, token)
            else:
                self._insert_columns(table, parts, token)
            written[table] = sum(p.row_count for p in parts)
        return written

    def _insert_columns(self, table: str, parts: list[RowChunk], token: str) -> None:
        column_names = TABLE_COLUMNS[table]
        columns: list[list[Any]] = [[] for _ in column_names]
        for part in parts:
            assert part.columns is not None, f"{table} is written column by column"
            for merged, column in zip(columns, part.columns, strict=True):
                merged.extend(column)
        self.insert(table, column_names, columns, token=token)

    def _insert_bodies(self, table: str, parts: list[RowChunk], token: str) -> None:
        events_table, settings = EVENT_TABLES[table]
        bodies = [p.body for p in parts if p.body is not None]
        assert len(bodies) == len(parts), f"{table} is written from event bodies"
        try:
            self._client.raw_insert(
                f"{self._database}.{events_table}",
                # JSONEachRow reads one object after another, whatever spaces them.
                insert_block=b"\n".join(bodies),
                fmt="JSONEachRow",
                settings={**settings, **self._settings, "insert_deduplication_token": token},
            )
        except STORAGE_ERRORS as error:
            raise StorageUnavailable(f"insert into {table} failed: {error}") from error

    def insert(self, table: str, column_names: Sequence[str], columns: list[list[Any]], token: str) -> None:
        try:
            self._client.insert(
                f"{self._database}.{table}",
                columns,
                column_names=list(column_names),
                column_oriented=True,
                settings={**self._settings, "insert_deduplication_token": token},
            )
        except STORAGE_ERRORS as error:
            raise StorageUnavailable(f"insert into {table} failed: {error}") from error


def answers(client: Any) -> bool:
    """Whether ClickHouse answers `SELECT 1` (the readiness probe)."""
    try:
        return bool(client.command("SELECT 1") == 1)
    except STORAGE_ERRORS:
        return False
