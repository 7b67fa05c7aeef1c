"""Per message-and-recipient send markers in Redis: what a redelivered job must not redo.

One hash per message (`rsms:dispatch:markers:<message id>`), one field per recipient:

    p          claimed before the send; its outcome was not recorded (in flight, crashed,
               or failed transiently): send again, with the same idempotency reference
    s:<ref>    sent, the provider's reference: never sent again
    b / i      the provider refused it as blocked / invalid: never sent again

A claim is atomic with respect to every other dispatcher (a Lua script). The "p" window
(claimed, sent, crash before the outcome was recorded) is closed by the provider: the
resend carries the same reference, which it does not deliver twice.

With a thousand small jobs a second, one Redis round trip per claim and per record cost
more than the marker work itself. So the claims and records asked for in one event-loop
turn go to Redis together, as one script call: each job's claim is still all-or-nothing
(the whole script is), and every caller still waits until Redis has its own answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from uuid import UUID

from redis.asyncio import Redis

CLAIMED = "p"
SENT_PREFIX = "s:"
BLOCKED = "b"
INVALID = "i"

# ARGV: ttl, then per key in KEYS order: an op ("c" claim / "r" record), a count n, and
# n fields (claim) or n field/value pairs (record). Answers one list per key: the
# earlier markers for a claim ('' where there was none), an empty list for a record.
_APPLY = """
local ttl = ARGV[1]
local answers = {}
local at = 2
for k = 1, #KEYS do
  local key = KEYS[k]
  local op = ARGV[at]
  local n = tonumber(ARGV[at + 1])
  at = at + 2
  local answer = {}
  if op == 'c' then
    for i = 1, n do
      local field = ARGV[at + i - 1]
      if redis.call('HSETNX', key, field, 'p') == 1 then
        answer[i] = ''
      else
        answer[i] = redis.call('HGET', key, field)
      end
    end
    at = at + n
    redis.call('EXPIRE', key, ttl)
  else
    for i = 1, n do
      redis.call('HSET', key, ARGV[at], ARGV[at + 1])
      at = at + 2
    end
  end
  answers[k] = answer
end
return answers
"""

# Fields in one script call at most: a few big jobs must not hold Redis for long.
_MAX_FIELDS_PER_CALL = 4_000

_Op = tuple[str, str, list[str], "asyncio.Future[list[str]]"]


def marker_key(message_id: UUID) -> str:
    return f"rsms:dispatch:markers:{message_id.hex}"


class SendMarkers:
    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self._ttl = ttl_seconds
        self._apply = redis.register_script(_APPLY)
        self._pending: list[_Op] = []
        self._flush_scheduled = False
        self._calls: set[asyncio.Task[None]] = set()

    async def claim(self, message_id: UUID, recipients: Sequence[str]) -> list[str]:
        """Marks every recipient claimed; returns each one's earlier marker ('' if none)."""
        return await self._submit("c", marker_key(message_id), list(recipients))

    async def record(self, message_id: UUID, markers: Mapping[str, str]) -> None:
        if markers:
            args = [part for field, value in markers.items() for part in (field, value)]
            await self._submit("r", marker_key(message_id), args)

    async def _submit(self, op: str, key: str, args: list[str]) -> list[str]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[str]] = loop.create_future()
        self._pending.append((op, key, args, future))
        if not self._flush_scheduled:
            # Next loop turn: every job woken in this one has asked by then.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        group: list[_Op] = []
        fields = 0
        for op in pending:
            if group and fields + len(op[2]) > _MAX_FIELDS_PER_CALL:
                self._start_call(group)
                group, fields = [], 0
            group.append(op)
            fields += len(op[2])
        if group:
            self._start_call(group)

    def _start_call(self, group: list[_Op]) -> None:
        task = asyncio.get_running_loop().create_task(self._call(group))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    async def _call(self, group: list[_Op]) -> None:
        argv: list[str | int] = [self._ttl]
        for op, _, args, _ in group:
            argv.append(op)
            argv.append(len(args) // 2 if op == "r" else len(args))
            argv.extend(args)
        try:
            answers = await self._apply(keys=[key for _, key, _, _ in group], args=argv)
        except Exception as exc:
            # Not swallowed: every caller in the call gets it (RedisError above all) and
            # hands its own job back.
            for *_, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), answer in zip(group, answers, strict=True):
            if not future.done():
                future.set_result([a.decode() if isinstance(a, bytes) else a for a in answer])
