"""Idempotency-Key: a retried send returns the first response and queues nothing new.

A key is claimed in Redis with `SET NX` before the job is published, so of two concurrent
requests with the same key only one can publish; the other waits for the first to finish
and answers with its response. The claim records a fingerprint of the request, so the same
key with a different request is refused. A claim whose request failed is let go: the
client's retry takes it over at once, under the same message id (a publish whose confirm
was lost may have queued the job after all). Claims live 24 hours.

A claim also names the message id its job is published under, and when it was made. A
claim whose holder died (an ingest worker killed between claim and answer) would keep
every retry waiting for 24 hours; once it is older than anything a live holder can take
(`stale_after_seconds`), a retry takes it over and publishes under the same message id. If
the holder had published before it died, the job is then queued twice with one id, as a
broker redelivery would queue it: the dispatcher's send markers and the ledger count a
message id's recipient once, so nobody is sent or billed twice.

Records are scoped by project and key kind: a live key never sees a test key's records,
so a live send is never answered with a test send that was never delivered.

Once a job is published its response must be kept whatever Redis does: if the record
cannot be completed (Redis failed right after the confirm), the response is held in
memory and written as soon as Redis answers again, and a retry reaching this process
meanwhile is answered from memory. What a stored record means for a new request is
decided by `decide()`, a plain function.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from enum import Enum

from redis.exceptions import RedisError

from shared.errors import ErrorCode, GatewayError
from shared.keys import KeyKind
from shared.log import get_logger
from shared.redis_connection import PRIMARY_ONLY, Durability, NotConfirmed, RedisClient, write_confirmed

log = get_logger(__name__)

MAX_KEY_LENGTH = 255
_PENDING = "pending"
_DONE = "done"
FLUSH_INTERVAL_SECONDS = 0.2
_TAKE_OVER_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    fingerprint: str
    response: StoredResponse | None
    """None while the first request is still being processed."""
    message_id: str = ""
    """A pending claim's: the id its job is published under ("" in claims made before
    claims named one)."""
    claimed_at: float = 0.0
    """A pending claim's: when it was made or taken over (Unix seconds)."""

    def encode(self) -> str:
        if self.response is None:
            return json.dumps(
                {
                    "state": _PENDING,
                    "fingerprint": self.fingerprint,
                    "message_id": self.message_id,
                    "claimed_at": self.claimed_at,
                }
            )
        return json.dumps(
            {
                "state": _DONE,
                "fingerprint": self.fingerprint,
                "status": self.response.status,
                "body": self.response.body.decode(),
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> IdempotencyRecord:
        stored = json.loads(raw)
        if stored["state"] == _PENDING:
            return cls(stored["fingerprint"], None, stored.get("message_id", ""), float(stored.get("claimed_at", 0)))
        return cls(stored["fingerprint"], StoredResponse(int(stored["status"]), stored["body"].encode()))


class Claim(Enum):
    TAKE = "take"
    """No record: claim the key."""
    WAIT = "wait"
    """The first request with this key is still being processed."""
    TAKE_OVER = "take_over"
    """The first request let go of its claim (it failed), or its claim is older than a live
    request can be (its holder died): publish under the claim's message id."""
    REPLAY = "replay"
    """Answer with the first request's response."""


def decide(
    record: IdempotencyRecord | None, fingerprint: str, now: float = 0.0, stale_after: float = float("inf")
) -> Claim:
    """What an existing record means for a request with the same key at `now`; raises when
    the key belongs to a different request."""
    if record is None:
        return Claim.TAKE
    if record.fingerprint != fingerprint:
        raise GatewayError(
            ErrorCode.VALIDATION_ERROR,
            details=["Idempotency-Key: already used with a different request in the last 24 hours"],
        )
    if record.response is not None:
        return Claim.REPLAY
    return Claim.TAKE_OVER if now - record.claimed_at >= stale_after else Claim.WAIT


def check_key(key: str) -> None:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise GatewayError(
            ErrorCode.VALIDATION_ERROR,
            details=[f"Idempotency-Key: must be 1-{MAX_KEY_LENGTH} printable ASCII characters"],
        )


class IdempotencyStore:
    def __init__(
        self,
        redis: RedisClient,
        *,
        ttl_seconds: int,
        wait_seconds: float,
        stale_after_seconds: float = 30.0,
        prefix: str = "rsms:idem",
        durability: Durability = PRIMARY_ONLY,
    ) -> None:
        self._redis = redis
        self._durability = durability
        self._ttl = ttl_seconds
        self._wait = wait_seconds
        self._stale_after = stale_after_seconds
        self._prefix = prefix
        self._unwritten: dict[str, IdempotencyRecord] = {}
        self._flusher: asyncio.Task[None] | None = None

    async def claim(self, project: str, kind: KeyKind, key: str, fingerprint: str) -> StoredResponse | uuid.UUID:
        """Claim `key` for this request: the message id to publish its job under; or the
        first request's response if it has one.

        Raises GatewayError when the key belongs to a different request, or the first
        request with it is still being processed after waiting for it; RedisError when
        Redis fails.
        """
        name = self._name(project, kind, key)
        message_id = uuid.uuid4()
        deadline = asyncio.get_running_loop().time() + self._wait
        while True:
            held = self._unwritten.get(name)
            if held is not None:
                decide(held, fingerprint)
                assert held.response is not None
                return held.response
            pending = IdempotencyRecord(fingerprint, None, str(message_id), time.time())
            if await self._claim_confirmed(name, pending.encode()):
                return message_id
            raw = await self._redis.get(name)
            record = IdempotencyRecord.decode(raw) if raw is not None else None
            match decide(record, fingerprint, time.time(), self._stale_after):
                case Claim.TAKE:
                    continue
                case Claim.REPLAY:
                    assert record is not None and record.response is not None
                    return record.response
                case Claim.TAKE_OVER:
                    assert raw is not None and record is not None
                    taken = uuid.UUID(record.message_id) if record.message_id else message_id
                    if await self._take_over(name, raw, IdempotencyRecord(fingerprint, None, str(taken), time.time())):
                        log.warning("idempotency_claim_taken_over", project=project, message_id=str(taken))
                        return taken
                case Claim.WAIT:
                    if asyncio.get_running_loop().time() >= deadline:
                        raise GatewayError(
                            ErrorCode.INTERNAL_ERROR,
                            "A request with this Idempotency-Key is still being processed; retry shortly",
                            retry_after=1,
                        )
                    await asyncio.sleep(0.05)

    async def _take_over(self, name: str, seen: bytes | str, claim: IdempotencyRecord) -> bool:
        """Replace the stale claim `seen` with `claim`, unless it changed meanwhile (its
        holder answered, or another retry took it over first)."""
        (replaced,) = await write_confirmed(
            self._redis, name, [("EVAL", _TAKE_OVER_SCRIPT, 1, name, seen, claim.encode())], self._durability
        )
        return bool(replaced)

    async def _claim_confirmed(self, name: str, pending: str) -> bool:
        """SET NX, confirmed by the replicas the setting asks for. A claim they do not
        confirm could vanish in a failover, and the client's retry would then be sent
        again: so it is withdrawn, and the request fails as if Redis had (nothing queued)."""
        try:
            (taken,) = await write_confirmed(
                self._redis, name, [("SET", name, pending, "NX", "EX", self._ttl)], self._durability
            )
        except NotConfirmed as unconfirmed:
            if not unconfirmed.replies[0]:
                return False  # another request holds the key: nothing was written to confirm
            with contextlib.suppress(RedisError):
                await self._redis.delete(name)
            raise
        return bool(taken)

    async def complete(self, project: str, kind: KeyKind, key: str, fingerprint: str, response: StoredResponse) -> None:
        """Record the response of a published job. Never raises: if Redis fails, the record
        is kept in memory and written when Redis answers again."""
        name = self._name(project, kind, key)
        record = IdempotencyRecord(fingerprint, response)
        try:
            await self._write(name, record)
        except RedisError:
            log.warning("idempotency_record_deferred", project=project)
            self._unwritten[name] = record
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush())

    async def let_go(self, project: str, kind: KeyKind, key: str, fingerprint: str, message_id: uuid.UUID) -> None:
        """The request failed: its claim is left for the client's retry to take over at
        once, under the same message id. Not deleted: a publish whose confirm was lost
        (the broker's connection died) may still have queued the job, and a retry under a
        new id would then send it twice."""
        name = self._name(project, kind, key)
        given_up = IdempotencyRecord(fingerprint, None, str(message_id), claimed_at=0.0)
        await self._redis.set(name, given_up.encode(), xx=True, keepttl=True)

    async def close(self) -> None:
        """Try once more to write what is held in memory, then stop trying."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(RedisError):
            await self._write_unwritten()
        if self._unwritten:
            log.error("idempotency_records_lost", count=len(self._unwritten))

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._ttl
        while self._unwritten and loop.time() < give_up:
            try:
                await self._write_unwritten()
            except RedisError:
                await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
        self._unwritten.clear()

    async def _write_unwritten(self) -> None:
        for name, record in list(self._unwritten.items()):
            await self._write(name, record)
            del self._unwritten[name]
            log.info("idempotency_record_written")

    async def _write(self, name: str, record: IdempotencyRecord) -> None:
        """The response, confirmed like the claim; until it is, the claim (confirmed) keeps
        a retry waiting rather than sent again."""
        await write_confirmed(self._redis, name, [("SET", name, record.encode(), "EX", self._ttl)], self._durability)

    def _name(self, project: str, kind: KeyKind, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self._prefix}:{project}:{kind}:{digest}"


def fingerprint(tag: str, recipients: list[str], message: str) -> str:
    """The request as the gateway understands it, so whitespace or key order in the JSON
    does not make a retry look like a different request."""
    canonical = json.dumps([tag, recipients, message], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
