"""Idempotency-Key: a retried send returns the first response and queues nothing new.

A key is claimed in Redis with `SET NX` before the job is published, so of two concurrent
requests with the same key only one can publish; the other waits for the first to finish
and answers with its response. The claim records a fingerprint of the request, so the same
key with a different request is refused. A claim whose request failed is removed, so the
client's retry is processed afresh. Claims live 24 hours.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass

from redis.asyncio import Redis

from shared.errors import ErrorCode, GatewayError

MAX_KEY_LENGTH = 255
_PENDING = "pending"


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes


class IdempotencyStore:
    def __init__(self, redis: Redis, *, ttl_seconds: int, wait_seconds: float, prefix: str = "rsms:idem") -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._wait = wait_seconds
        self._prefix = prefix

    @staticmethod
    def check_key(key: str) -> None:
        if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
            raise GatewayError(
                ErrorCode.VALIDATION_ERROR,
                details=[f"Idempotency-Key: must be 1-{MAX_KEY_LENGTH} printable ASCII characters"],
            )

    async def claim(self, project: str, key: str, fingerprint: str) -> StoredResponse | None:
        """Claim `key` for this request; or the first request's response if it has one.

        Raises when the key belongs to a different request, or the first request with it
        is still being processed after waiting for it.
        """
        name = self._name(project, key)
        claim = json.dumps({"state": _PENDING, "fingerprint": fingerprint})
        deadline = asyncio.get_running_loop().time() + self._wait
        while True:
            if await self._redis.set(name, claim, nx=True, ex=self._ttl):
                return None
            raw = await self._redis.get(name)
            if raw is None:
                continue  # the first request failed and let go of the key: claim it again
            stored = json.loads(raw)
            if stored["fingerprint"] != fingerprint:
                raise GatewayError(
                    ErrorCode.VALIDATION_ERROR,
                    details=["Idempotency-Key: already used with a different request in the last 24 hours"],
                )
            if stored["state"] != _PENDING:
                return StoredResponse(int(stored["status"]), stored["body"].encode())
            if asyncio.get_running_loop().time() >= deadline:
                raise GatewayError(
                    ErrorCode.INTERNAL_ERROR,
                    "A request with this Idempotency-Key is still being processed; retry shortly",
                    retry_after=1,
                )
            await asyncio.sleep(0.05)

    async def complete(self, project: str, key: str, fingerprint: str, response: StoredResponse) -> None:
        value = {"state": "done", "fingerprint": fingerprint, "status": response.status, "body": response.body.decode()}
        await self._redis.set(self._name(project, key), json.dumps(value), keepttl=True)

    async def release(self, project: str, key: str) -> None:
        await self._redis.delete(self._name(project, key))

    def _name(self, project: str, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return f"{self._prefix}:{project}:{digest}"


def fingerprint(tag: str, recipients: list[str], message: str) -> str:
    """The request as the gateway understands it, so whitespace or key order in the JSON
    does not make a retry look like a different request."""
    canonical = json.dumps([tag, recipients, message], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
