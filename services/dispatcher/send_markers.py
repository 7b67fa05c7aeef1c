"""Per message-and-recipient send markers in Redis: what a redelivered job must not redo.

One hash per message (`rsms:dispatch:{rsms:dispatch}:markers:<message id>`), one field per recipient:

    p          claimed before the send; its outcome was not recorded (in flight, or a
               crash between the send and the record): the outcome is unknown
    t          the provider answered "not sent, try again" (TRANSIENT): send again
    s:<ref>    sent, the provider's reference: never sent again
    b / i      the provider refused it as blocked / invalid: never sent again
    u:<n>      outcome unknown, held in the dead-letter queue by replay n of the job;
               only a later replay (`rsms dlq replay`: an operator's decision) sends it

A claim is atomic with respect to every other dispatcher (a Lua script): it turns "",
"t" and a released "u:<n>" into "p" and answers the earlier marker.

Markers live in Redis, and a Redis can come back empty (no persistence, a lost disk) or
without its last writes (an RDB snapshot, the last second of an AOF). So the marker store
has a generation: the script keeps the Redis server's run id and the time it first saw it
(`rsms:dispatch:{rsms:dispatch}:generation`). Every restart of the server starts a new generation. A
recipient without a marker is then known never to have been sent only if its job cannot
have been worked on before the generation began: see `markers_may_be_lost`. Otherwise
its outcome is unknown, like "p", and `JobDispatcher` resends it only where the provider
deduplicates by the reference (`Provider.resends_are_safe`), or holds it for an operator.

With a thousand small jobs a second, one Redis round trip per claim and per record cost
more than the marker work itself. So the claims and records asked for in one event-loop
turn go to Redis together, as one script call (`shared.turn_batch`): each claim is still
all-or-nothing (the whole script is), and every caller still waits until Redis has its
own answer.

A job claims its recipients one provider batch at a time, just before the batch goes to
the provider (`JobDispatcher`): after a crash only the batches in flight are "p"; the
rest have no marker, and on a redelivery they are sent unless `markers_may_be_lost`.
For that a generation begins when a dispatcher starts (`begin_generation`), not at the
first claim, so the jobs accepted after are known to have all their markers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from shared.log import get_logger
from shared.redis_connection import PRIMARY_ONLY, ConfirmedScript, Durability, RedisClient
from shared.turn_batch import TurnBatch, regroup

log = get_logger(__name__)

CLAIMED = "p"
RETRYABLE = "t"
SENT_PREFIX = "s:"
BLOCKED = "b"
INVALID = "i"
HELD_PREFIX = "u:"

MARKERS_SLOT_TAG = "{rsms:dispatch}"
"""Every marker hash and the generation share one hash tag: one script call claims and
records for many messages, and in a Redis Cluster a script's keys must share a slot."""
GENERATION_KEY = f"rsms:dispatch:{MARKERS_SLOT_TAG}:generation"

# KEYS[1] is the generation hash, then one marker hash per op. ARGV: ttl, settled ttl, then
# per marker key: an op ("c" claim, "r" record, "u" record only where still claimed, "e"
# the job is done: keep it the settled ttl, "n" nothing: a call for the "e" alone), a count
# n, for a claim the job's replay number and n fields, for a record n field/value pairs,
# nothing for "e" and "n". Answers the
# generation's start (ms since the epoch, Redis's clock), then one list per marker key: the
# earlier markers for a claim ('' where there was none), an empty list for a record.
_APPLY = """
local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local generation = redis.call('HMGET', KEYS[1], 'run_id', 'since')
local since = tonumber(generation[2])
if generation[1] ~= run_id or not since then
  local now = redis.call('TIME')
  since = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('HSET', KEYS[1], 'run_id', run_id, 'since', since)
end
local ttl = ARGV[1]
local settled_ttl = ARGV[2]
local answers = {since}
local at = 3
for k = 2, #KEYS do
  local key = KEYS[k]
  local op = ARGV[at]
  local n = tonumber(ARGV[at + 1])
  at = at + 2
  local answer = {}
  if op == 'c' then
    local replay = tonumber(ARGV[at])
    at = at + 1
    for i = 1, n do
      local field = ARGV[at + i - 1]
      local old = redis.call('HGET', key, field) or ''
      local take = old == '' or old == 't'
      if not take and string.sub(old, 1, 2) == 'u:' then
        take = tonumber(string.sub(old, 3)) < replay
      end
      if take then
        redis.call('HSET', key, field, 'p')
      end
      answer[i] = old
    end
    at = at + n
    redis.call('EXPIRE', key, ttl)
  elseif op == 'e' then
    redis.call('EXPIRE', key, settled_ttl)
  else
    for i = 1, n do
      -- 'u' settles an unknown outcome: only where the claim still stands, never over
      -- the sent marker another dispatcher working the same job recorded meanwhile.
      if op == 'r' or redis.call('HGET', key, ARGV[at]) == 'p' then
        redis.call('HSET', key, ARGV[at], ARGV[at + 1])
      end
      at = at + 2
    end
  end
  answers[k] = answer
end
return answers
"""

# Fields in one script call at most: a few big jobs must not hold Redis for long.
_MAX_FIELDS_PER_CALL = 4_000
_SETTLE_DELAY_SECONDS = 1.0


class MarkerVerdict(StrEnum):
    SEND = "send"
    """Never sent, or the provider said it was not: send it (the claim holds it now)."""
    UNKNOWN = "unknown"
    """It may have reached the provider: resend only where that cannot deliver twice."""
    SETTLED = "settled"
    """Its outcome is known (sent, blocked, invalid) or an operator has yet to decide."""


def verdict(marker: str, replay: int, *, markers_may_be_lost: bool) -> MarkerVerdict:
    """What to do with a recipient whose claim answered `marker`, for replay `replay`.

    The claim script follows the same rule: after it, every SEND and UNKNOWN recipient is
    claimed ("p"), and a SETTLED one keeps its marker.
    """
    if marker == "":
        return MarkerVerdict.UNKNOWN if markers_may_be_lost else MarkerVerdict.SEND
    if marker == RETRYABLE:
        return MarkerVerdict.SEND
    if marker == CLAIMED:
        return MarkerVerdict.UNKNOWN
    if marker.startswith(HELD_PREFIX):
        # A replay newer than the one that held it is the operator's decision to send.
        return MarkerVerdict.SEND if int(marker[len(HELD_PREFIX) :]) < replay else MarkerVerdict.SETTLED
    return MarkerVerdict.SETTLED


def markers_may_be_lost(accepted_at: datetime, attempt: int, redelivered: bool, generation_since_ms: int) -> bool:
    """Whether a missing marker may be one Redis lost rather than one never written.

    A job worked on before the marker store's generation began may have had its markers
    in the Redis that was lost. A job's first delivery (not redelivered, attempt 1) was
    never handed to any dispatcher, so nothing of it was sent, whatever Redis forgot. A
    redelivery, or a retry (its earlier attempt sent some recipients), accepted before
    the generation began may have been.
    """
    if not redelivered and attempt == 1:
        return False
    return accepted_at.timestamp() * 1000 < generation_since_ms


@dataclass(frozen=True, slots=True)
class Claim:
    markers: list[str]
    """Each recipient's earlier marker, '' where there was none."""
    generation_since_ms: int
    """When the marker store's current generation began (Redis's clock)."""


_Answer = tuple[int, list[str]]
_Op = tuple[str, str, list[str]]
"""An op ("c", "r" or "u"), its marker key, its args."""
_Ops = list[_Op]
"""The ops one caller hands in together (the claims of a whole provider batch of jobs):
one wait for all of their answers."""


def _fields(ops: _Ops) -> int:
    return sum(len(args) or 1 for _, _, args in ops)


def marker_key(message_id: UUID) -> str:
    return f"rsms:dispatch:{MARKERS_SLOT_TAG}:markers:{message_id.hex}"


class SendMarkers:
    def __init__(
        self,
        redis: RedisClient,
        ttl_seconds: int,
        durability: Durability = PRIMARY_ONLY,
        settled_ttl_seconds: int | None = None,
    ) -> None:
        self._ttl = ttl_seconds
        # What a job's markers keep once it is done (`settled`); the full TTL if not set.
        self._settled_ttl = min(settled_ttl_seconds or ttl_seconds, ttl_seconds)
        # A claim must outlive a failover before its recipients are sent: WAIT for replicas.
        self._apply = ConfirmedScript(redis, _APPLY, durability)
        # The claims and records asked for in one loop turn: one script call, or a few
        # when they are many (see `_MAX_FIELDS_PER_CALL`).
        # A partial call waits while another is in flight, so under load the ops pile up
        # behind it and go together (group commit): fewer, bigger calls, each a system call
        # and a script run less, for at most one round trip more.
        self._ops: TurnBatch[_Ops, list[_Answer]] = TurnBatch(
            self._call, max_size=_MAX_FIELDS_PER_CALL, size_of=_fields, max_partial_in_flight=1
        )
        self._settled: list[UUID] = []
        self._settle_timer: asyncio.TimerHandle | None = None
        self._settling: set[asyncio.Task[list[_Answer]]] = set()

    async def begin_generation(self) -> int:
        """Starts the marker store's generation unless it has begun; answers its start.

        Called when a dispatcher starts, so a generation begins before the jobs it will
        work on are accepted rather than at their first claim: a job accepted after it
        began has every marker it ever had, so a redelivery sends its unclaimed recipients
        instead of treating them as possibly forgotten (`markers_may_be_lost`).
        """
        (since,) = await self._apply(keys=[GENERATION_KEY], args=[self._ttl, self._settled_ttl])
        return int(since)

    async def claim(self, message_id: UUID, recipients: Sequence[str], replay: int = 0) -> Claim:
        """Claims every recipient that may be sent (see `verdict`); answers the earlier markers."""
        ((since, markers),) = await self._ops.submit([("c", marker_key(message_id), [str(replay), *recipients])])
        return Claim(markers, since)

    async def claim_many(self, claims: Sequence[tuple[UUID, Sequence[str], int]]) -> list[Claim]:
        """`claim` for several messages at once, (message id, recipients, replay) each, in
        one wait: each claim is the same as on its own, their answers in their order."""
        ops = [("c", marker_key(message_id), [str(replay), *recipients]) for message_id, recipients, replay in claims]
        return [Claim(markers, since) for since, markers in await self._ops.submit(ops)]

    async def record(self, message_id: UUID, markers: Mapping[str, str]) -> None:
        if markers:
            await self._ops.submit([("r", marker_key(message_id), _pairs(markers))])

    async def record_many(self, records: Sequence[tuple[UUID, Mapping[str, str]]]) -> None:
        """`record` for several messages at once, in one wait."""
        ops = [("r", marker_key(message_id), _pairs(markers)) for message_id, markers in records if markers]
        if ops:
            await self._ops.submit(ops)

    async def settle_unknown(self, message_id: UUID, markers: Mapping[str, str]) -> None:
        """Record the decision on recipients whose outcome is unknown (held, or to resend)
        only where their claim ("p") still stands: two dispatchers can work one job (a
        redelivery while the first still runs), and the other may have recorded one as
        sent meanwhile; overwriting that with a hold would let a replay send it twice."""
        if markers:
            await self._ops.submit([("u", marker_key(message_id), _pairs(markers))])

    def settled(self, message_ids: Sequence[UUID]) -> None:
        """The jobs' attempts are done and acknowledged, with nothing left to send (no
        retry, no dead letter, nobody held): their markers keep the settled TTL.

        Every marker keeps the full TTL while its job may still come back after a long
        wait: handed back behind an open circuit (as long as the provider is down), a
        retry in its delay queue, recipients held until an operator replays them. An
        acknowledged attempt comes back only when its ack was lost with its channel, and
        RabbitMQ then delivers it again at once, to the next dispatcher consuming: the
        settled TTL only has to outlast the longest time no dispatcher consumes. A claim
        (a replay, a duplicate) puts the full TTL back.

        Not a Redis call of its own: the keys ride along with the next claims and records
        (`_call`), or go on their own after `_SETTLE_DELAY_SECONDS` when none come. Lost
        with the process, they only keep the full TTL.
        """
        self._settled.extend(message_ids)
        if self._settled and self._settle_timer is None:
            loop = asyncio.get_running_loop()
            self._settle_timer = loop.call_later(_SETTLE_DELAY_SECONDS, self._settle_alone)

    async def close(self) -> None:
        """On shutdown: the settled keys still waiting go now (best effort: if Redis
        fails, they keep the full TTL)."""
        if self._settle_timer is not None:
            self._settle_timer.cancel()
            self._settle_timer = None
        if self._settled:
            self._settle_alone()
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    def _settle_alone(self) -> None:
        self._settle_timer = None
        if self._settled:
            task = asyncio.get_running_loop().create_task(self._ops.submit([("n", GENERATION_KEY, [])]))
            self._settling.add(task)
            task.add_done_callback(self._settle_done)

    def _settle_done(self, task: asyncio.Task[list[_Answer]]) -> None:
        self._settling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Their markers keep the full TTL: safe, only longer.
            log.info("send markers kept the full TTL: Redis failed", error=type(task.exception()).__name__)

    async def _call(self, handed_in: list[_Ops]) -> list[list[_Answer]]:
        # An error reaches every caller in the call (RedisError above all), and each hands
        # its own job back.
        group = [op for ops in handed_in for op in ops]
        argv: list[str | int] = [self._ttl, self._settled_ttl]
        # The settled keys first (`settled`), then the callers' ops, each answered in order.
        settled, self._settled = self._settled, []
        keys = [GENERATION_KEY, *(marker_key(m) for m in settled), *(key for _, key, _ in group)]
        for _ in settled:
            argv.extend(("e", 0))
        for op, _, args in group:
            argv.append(op)
            # A claim's args are its replay number, then its fields.
            argv.append(len(args) - 1 if op == "c" else len(args) // 2)
            argv.extend(args)
        since, *answers = await self._apply(keys=keys, args=argv)
        start = int(since)
        flat = [
            (start, [a.decode() if isinstance(a, bytes) else a for a in answer]) for answer in answers[len(settled) :]
        ]
        return regroup(flat, handed_in)


def _pairs(markers: Mapping[str, str]) -> list[str]:
    return [part for field, value in markers.items() for part in (field, value)]
