"""The receipt sink's state in Redis (`receipts.ReceiptStore`), shared by every dispatcher.

    rsms:receipts:part:<carrier id>                    a sent part: JSON
        [message id, project, recipient, part index, parts, test]
    rsms:receipts:state:<message id>:<recipient>       hash, one recipient's delivery:
        f<i>        part i's final report (set once: a late ACCEPTD never replaces DELIVRD)
        i<i>        part i's latest intermediate report
        published   the status last published for the recipient

Reports are JSON [status, error code, occurred at (ISO 8601), carrier id]. Both keys
expire after `ttl_seconds` (set at every write): a receipt later than that is unmatched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import cast
from uuid import UUID

from services.dispatcher.receipts import PartReport, RecipientState, SentPart, is_final
from shared.contracts import ReceiptStatus
from shared.redis_connection import RedisClient
from shared.turn_batch import TurnBatch

PUBLISHED = "published"


def part_key(carrier_id: str) -> str:
    return f"rsms:receipts:part:{carrier_id}"


def state_key(part: SentPart) -> str:
    return f"rsms:receipts:state:{part.message_id.hex}:{part.recipient}"


class RedisReceiptStore:
    def __init__(self, redis: RedisClient, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._parts: TurnBatch[Mapping[str, SentPart], None] = TurnBatch(self._write)

    async def remember(self, parts: Mapping[str, SentPart]) -> None:
        """Every job sent in one event-loop turn is written in one pipeline (as the send
        markers are, `shared.turn_batch`): a connection per job would drain the pool the
        jobs share."""
        await self._parts.submit(parts)

    async def _write(self, waiting: list[Mapping[str, SentPart]]) -> list[None]:
        # An error reaches every caller (RedisError above all), and each hands its job back.
        async with self._redis.pipeline(transaction=False) as pipe:
            for parts in waiting:
                for carrier_id, part in parts.items():
                    value = json.dumps(
                        [part.message_id.hex, part.project, part.recipient, part.part, part.parts, part.test],
                        separators=(",", ":"),
                    )
                    pipe.set(part_key(carrier_id), value, ex=self._ttl)
            await pipe.execute()
        return [None] * len(waiting)

    async def find(self, carrier_id: str) -> SentPart | None:
        value = await self._redis.get(part_key(carrier_id))
        if value is None:
            return None
        message_id, project, recipient, index, parts, test = json.loads(value)
        return SentPart(UUID(message_id), project, recipient, int(index), int(parts), bool(test))

    async def add_report(self, part: SentPart, report: PartReport) -> RecipientState:
        key = state_key(part)
        value = json.dumps(
            [report.status, report.error_code, report.occurred_at.isoformat(), report.carrier_id],
            separators=(",", ":"),
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            if is_final(report.status):
                pipe.hsetnx(key, f"f{part.part}", value)
            else:
                pipe.hset(key, f"i{part.part}", value)
            pipe.expire(key, self._ttl)
            pipe.hgetall(key)
            *_, fields = await pipe.execute()
        return _state(cast(dict[str | bytes, str | bytes], fields))

    async def mark_published(self, part: SentPart, status: ReceiptStatus) -> None:
        await self._redis.hset(state_key(part), PUBLISHED, status)


def _state(fields: dict[str | bytes, str | bytes]) -> RecipientState:
    finals: dict[int, PartReport] = {}
    intermediates: dict[int, PartReport] = {}
    published: ReceiptStatus | None = None
    for raw_name, raw_value in fields.items():
        name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
        value = raw_value.decode() if isinstance(raw_value, bytes) else raw_value
        if name == PUBLISHED:
            published = cast(ReceiptStatus, value)
            continue
        status, error_code, occurred_at, carrier_id = json.loads(value)
        report = PartReport(status, error_code, datetime.fromisoformat(occurred_at), carrier_id)
        (finals if name[0] == "f" else intermediates)[int(name[1:])] = report
    return RecipientState({**intermediates, **finals}, published)
