"""ClickHouse access for the ledger, one code path for embedded chDB and a server.

`chdb:///abs/dir` opens the embedded engine in this process; `http(s)://…` talks to a
ClickHouse server. Both go through clickhouse-connect, so every statement runs on both.
The calls block: the service runs them in a worker thread (`asyncio.to_thread`), and chDB
releases the GIL while it runs a statement, so the event loop decodes on meanwhile.
Every table name is qualified with the database, so a client never depends on `USE`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.exceptions import Error as ClickHouseDriverError

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


def open_client(dsn: str) -> Any:
    kwargs: dict[str, Any] = {}
    if dsn.startswith("chdb://"):
        # The ledger holds message bodies: its data directory is the owner's only (chDB
        # creates what is missing with the process umask, usually world-readable).
        private_directory(Path(dsn.removeprefix("chdb://").split("?", 1)[0]), tighten=True)
    else:
        # A session id per client would make concurrent queries on one client fail with
        # "session is locked"; the ledger needs no session state.
        kwargs["autogenerate_session_id"] = False
    try:
        return clickhouse_connect.get_client(dsn=dsn, **kwargs)
    except STORAGE_ERRORS as error:
        raise StorageUnavailable(f"ClickHouse unreachable: {type(error).__name__}") from error


class LedgerWriter:
    """Inserts batches (columns, or event bodies ClickHouse fans out into rows); an insert
    token makes a retried batch land once."""

    def __init__(self, client: Any, database: str) -> None:
        self._client = client
        self._database = database

    def migrate(self) -> list[int]:
        try:
            return apply_migrations(self._client, self._database)
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
                settings={**settings, "insert_deduplication_token": token},
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
                settings={"insert_deduplication_token": token},
            )
        except STORAGE_ERRORS as error:
            raise StorageUnavailable(f"insert into {table} failed: {error}") from error


def answers(client: Any) -> bool:
    """Whether ClickHouse answers `SELECT 1` (the readiness probe)."""
    try:
        return bool(client.command("SELECT 1") == 1)
    except STORAGE_ERRORS:
        return False
