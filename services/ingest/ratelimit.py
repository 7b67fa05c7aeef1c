"""The Redis adapter of admission: one round trip decides and records a request's limits
(requests per minute per key and per tag, concurrent requests per key, the project's
daily spend) and reads what the later checks need (blocked recipients: the global
blocklist and the project's opt-out list, provider state).

It answers with typed values (`AdmissionAnswers`); what they mean for the request is
decided by plain functions in `admission.py`.

One Lua script decides and records the limits atomically, so any number of ingest
processes share them without races. The minute limits are sliding logs (a sorted set of
request times, at most `limit` entries): "100 per minute" means at most 100 in any 60
seconds, with no burst at a window boundary. A concurrency slot is a member of a sorted
set scored by its expiry, so a slot a crashed process never released stops counting
after `slot_seconds`. Time comes from Redis, so processes on several hosts agree.

The daily spend is a counter per project and UTC day (of Redis's clock) in millionths of
the currency. An admitted request under a spend cap reserves its estimated cost in the
same script, only if it fits under the cap; the reservation is given back unless the job
is then published (a refusal by a later check, a replay, a failed publish all return it).

Reads (message status, usage) have a window of their own per key (`reads_per_minute`),
so polling for a status never takes a send's place; they share the key's concurrency slots.

The X-RateLimit-* headers describe the per-key limit, as the contract shows them, except
on a refusal by the per-tag limit, where they describe the tag's window; on a read they
describe the key's read window.
"""

from __future__ import annotations

import itertools
import math
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from enum import IntEnum
from typing import Any

from redis.asyncio.client import Pipeline as NodePipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.exceptions import NoScriptError

from shared.blocklist import BLOCKLIST_KEY
from shared.optouts import opt_out_key
from shared.provider_state import PROVIDER_STATE_KEY, ProviderState
from shared.redis_connection import RedisClient
from shared.turn_batch import TurnBatch

Pipeline = NodePipeline | ClusterPipeline

WINDOW_MS = 60_000
_ANSWER_LENGTH = 9
"""Numbers the rate script answers per admission."""
SPEND_KEY_TTL_SECONDS = 2 * 86_400
MICROS = Decimal(1_000_000)

# The admissions of one project in one pipeline, decided in order, as if each ran alone one
# after the other (they share one `now`). KEYS: every key they touch, once. ARGV[1]: the
# window, the slot's lifetime and the spend key's TTL, joined by commas; then one argument
# per admission: indices into KEYS of its key window, tag window (0: none), concurrency set
# and spend prefix, then its key limit, tag limit (0: none), concurrency limit, whether to
# count it (0: only read the key window), the cost to reserve and the spend cap (0: none),
# all joined by commas, and last its slot. Answers nine numbers per admission, in order:
# verdict, limit, remaining, reset (ms), retry (ms), now, spend status, spent, day.
#
# Each key is trimmed, counted and read once however many admissions use it; the counts
# then live in Lua, and the admitted slots go in with one ZADD per key at the end (an
# admission's verdict depends only on the counts, and the oldest entry of a window never
# changes within the call). Per request the script cost Redis ~15 calls into Lua's command
# layer, each more than the command itself; now a project's requests of one loop turn share
# about a dozen.
_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local head = {}
for v in string.gmatch(ARGV[1], '[^,]+') do head[#head + 1] = tonumber(v) end
local window, slot_ms, spend_ttl = head[1], head[2], head[3]
local day = math.floor(now / 86400000)

local windows = {}
local function usage(i)
  local w = windows[i]
  if w == nil then
    local key = KEYS[i]
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    local count = redis.call('ZCARD', key)
    local reset = now + window
    if count > 0 then
      reset = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]) + window
    end
    w = {count = count, reset = reset, adds = {}}
    windows[i] = w
  end
  return w
end

local slots = {}
local function taken(i)
  local s = slots[i]
  if s == nil then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    s = {count = redis.call('ZCARD', KEYS[i]), adds = {}}
    slots[i] = s
  end
  return s
end

local spends = {}
local function spending(i)
  local s = spends[i]
  if s == nil then
    local key = KEYS[i] .. ':' .. day
    s = {key = key, spent = tonumber(redis.call('GET', key) or '0'), added = 0}
    spends[i] = s
  end
  return s
end

local out = {}
local function answer(...)
  for _, v in ipairs({...}) do out[#out + 1] = v end
end

for a = 2, #ARGV do
  local n = {}
  local slot
  for v in string.gmatch(ARGV[a], '[^,]+') do n[#n + 1] = v end
  slot = n[11]
  for j = 1, 10 do n[j] = tonumber(n[j]) end
  local key_i, tag_i, conc_i, spend_i = n[1], n[2], n[3], n[4]
  local key_limit, tag_limit, concurrency_limit = n[5], n[6], n[7]
  local admit, cost, spend_cap = n[8] == 1, n[9], n[10]

  local kw = usage(key_i)
  local key_count, key_reset = kw.count, kw.reset
  local tw = nil
  local tag_count, tag_reset = 0, now + window
  if tag_limit > 0 then
    tw = usage(tag_i)
    tag_count, tag_reset = tw.count, tw.reset
  end
  if not admit then
    answer(0, key_limit, key_limit - key_count, key_reset, 0, now, 0, 0, day)
  elseif key_count >= key_limit then
    answer(1, key_limit, 0, key_reset, key_reset - now, now, 0, 0, day)
  elseif tag_limit > 0 and tag_count >= tag_limit then
    answer(2, tag_limit, 0, tag_reset, tag_reset - now, now, 0, 0, day)
  else
    local cs = taken(conc_i)
    if cs.count >= concurrency_limit then
      answer(3, key_limit, key_limit - key_count, key_reset, 1000, now, 0, 0, day)
    else
      kw.count = kw.count + 1
      kw.adds[#kw.adds + 1] = now
      kw.adds[#kw.adds + 1] = slot
      if tw ~= nil then
        tw.count = tw.count + 1
        tw.adds[#tw.adds + 1] = now
        tw.adds[#tw.adds + 1] = slot
      end
      cs.count = cs.count + 1
      cs.adds[#cs.adds + 1] = now + slot_ms
      cs.adds[#cs.adds + 1] = slot
      local spend_status, spent = 0, 0
      if spend_cap > 0 then
        local s = spending(spend_i)
        spent = s.spent
        if spent + cost > spend_cap then
          spend_status = 2
        elseif cost > 0 then
          s.spent = spent + cost
          s.added = s.added + cost
          spent = s.spent
          spend_status = 1
        end
      end
      answer(0, key_limit, key_limit - key_count - 1, key_reset, 0, now, spend_status, spent, day)
    end
  end
end

-- ZADD in chunks: unpack() of a very long list would overflow Lua's C stack.
local function add_all(key, adds, ttl_ms)
  if #adds == 0 then return end
  for first = 1, #adds, 1000 do
    redis.call('ZADD', key, unpack(adds, first, math.min(first + 999, #adds)))
  end
  redis.call('PEXPIRE', key, ttl_ms)
end
for i, w in pairs(windows) do add_all(KEYS[i], w.adds, window) end
for i, s in pairs(slots) do add_all(KEYS[i], s.adds, slot_ms) end
for _, s in pairs(spends) do
  if s.added > 0 then
    redis.call('INCRBY', s.key, s.added)
    redis.call('EXPIRE', s.key, spend_ttl)
  end
end
return out
"""


# Which of the recipients (ARGV[1], joined by commas: validated E.164 numbers hold none)
# are members of the set KEYS[1]. One argument and a reply of the few found, where
# SMISMEMBER takes a thousand arguments and answers a thousand integers: for a
# 1000-recipient send, redis-py's packing and parsing of those was a quarter of ingest's CPU.
_MEMBERS_SCRIPT = """
local numbers = {}
for n in string.gmatch(ARGV[1], '[^,]+') do numbers[#numbers + 1] = n end
if #numbers == 0 then return {} end
local found = {}
local hits = redis.call('SMISMEMBER', KEYS[1], unpack(numbers))
for i, hit in ipairs(hits) do
  if hit == 1 then found[#found + 1] = numbers[i] end
end
return found
"""


class Verdict(IntEnum):
    ADMITTED = 0
    KEY_LIMIT = 1
    TAG_LIMIT = 2
    CONCURRENCY_LIMIT = 3


class SpendVerdict(IntEnum):
    UNCAPPED = 0
    """No cap, nothing to reserve, or the request was not admitted: nothing was recorded."""
    RESERVED = 1
    OVER_CAP = 2


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: int
    tag_requests_per_minute: int
    concurrent_requests: int
    reads_per_minute: int


@dataclass(frozen=True, slots=True)
class RateDecision:
    verdict: Verdict
    limit: int
    remaining: int
    reset_epoch: int
    """When the reported window frees its oldest request, in Unix seconds."""
    retry_after: int
    """Seconds until a rejected request may succeed; 0 when admitted."""
    slot: str

    @property
    def admitted(self) -> bool:
        return self.verdict is Verdict.ADMITTED

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(self.reset_epoch),
        }

    @classmethod
    def untracked(cls, limit: int) -> RateDecision:
        """Headers for a request no key's limits were counted for (no valid key, Redis down)."""
        now = time.time()
        return cls(Verdict.ADMITTED, limit, limit, math.ceil(now) + WINDOW_MS // 1000, 0, "")


@dataclass(frozen=True, slots=True)
class SpendAnswer:
    verdict: SpendVerdict
    spent: Decimal
    """The project's spend today, this request's reservation included when RESERVED."""


@dataclass(frozen=True, slots=True)
class SpendQuery:
    project: str
    cost: Decimal
    cap: Decimal


@dataclass(frozen=True, slots=True)
class AdmissionQuery:
    key_id: str
    limits: Limits
    tag: str | None = None
    """The project-qualified tag, or None when the request names no valid tag."""
    recipients: Sequence[str] = ()
    """Looked up in the blocklist and the project's opt-out list (only those of a valid
    request are)."""
    project: str = ""
    """Whose opt-out list the recipients are looked up in."""
    spend: SpendQuery | None = None
    """Reserve this request's cost under the project's daily cap (None: no cap applies)."""
    read: bool = False
    """A status or usage read: counted in the key's read window instead of its send window."""


@dataclass(frozen=True, slots=True)
class KeyWrite:
    """A key a request leaves behind, with its time to live."""

    name: str
    value: bytes
    ttl_seconds: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """What an admitted request holds until it ends (its concurrency slot, its spend), and
    what it leaves behind then."""

    project: str
    key_id: str
    slot: str
    spend_key: str = ""
    spend_micros: int = 0
    record: KeyWrite | None = None
    """Written in the release's round trip (a published message's status record, so that
    it costs the request no round trip of its own)."""


@dataclass(frozen=True, slots=True)
class AdmissionAnswers:
    rate: RateDecision
    blocked: frozenset[str]
    """Recipients on the blocklist or the project's opt-out list: one set, since the answer
    must not tell which (`admission.send_refusal`)."""
    provider_state: ProviderState
    spend: SpendAnswer
    reservation: Reservation
    """What to give back when the request ends (nothing when it was not admitted)."""


def slot_tag(project: str) -> str:
    """The hash tag of a project's keys: the script touches several of them, and in a Redis
    Cluster a script's keys must share one hash slot."""
    return "{" + (project or "-") + "}"


def rate_keys(prefix: str, project: str, key_id: str, tag: str | None, *, read: bool) -> list[str]:
    """The script's KEYS: the key's send (or read) window, the tag's window, the key's
    concurrency slots, and the prefix of the project's daily spend counters."""
    project_keys = f"{prefix}:{slot_tag(project)}"
    return [
        f"{project_keys}:{'read' if read else 'key'}:{key_id}",
        f"{project_keys}:tag:{tag or ''}",
        concurrency_key(prefix, project, key_id),
        spend_prefix(prefix, project),
    ]


def concurrency_key(prefix: str, project: str, key_id: str) -> str:
    return f"{prefix}:{slot_tag(project)}:conc:{key_id}"


def spend_prefix(prefix: str, project: str) -> str:
    """The script appends `:<day>`: the same hash tag, so the same slot."""
    return f"{prefix}:{slot_tag(project)}:spend"


def to_micros(amount: Decimal) -> int:
    return int((amount * MICROS).to_integral_value(rounding=ROUND_CEILING))


def script_numbers(*numbers: int) -> str:
    """The rate script's numeric arguments as its one ARGV[1], joined by commas: redis-py
    encodes every argument of a command in Python, and ten of them a request were a
    visible share of ingest's CPU (the script splits them back)."""
    return ",".join(map(str, numbers))


def shared_numbers(recipient_lists: Iterable[Sequence[str]]) -> str:
    """The members script's argument for the recipients of several requests: each number
    once, joined by commas (validated E.164 numbers hold none)."""
    return ",".join(dict.fromkeys(itertools.chain.from_iterable(recipient_lists)))


def found_among(recipients: Sequence[str], found: Sequence[bytes]) -> frozenset[str]:
    """Which of one request's recipients are among `found`, the members script's reply for
    the numbers of every request it was asked for."""
    if not found:
        return frozenset()
    return frozenset(recipients).intersection(n.decode() for n in found)


@dataclass(frozen=True, slots=True)
class _Admit:
    """An admission on its way to Redis: the script, then the lookups."""

    query: AdmissionQuery
    slot: str
    cost: int
    count: bool = True
    """Count the request (False: only read the key's usage)."""


class RateLimiter:
    def __init__(self, redis: RedisClient, *, slot_seconds: int, prefix: str = "rsms:rl") -> None:
        self._redis = redis
        self._sha = redis.register_script(_SCRIPT).sha
        self._members_sha = redis.register_script(_MEMBERS_SCRIPT).sha
        # Group commit: the admissions and releases of every request that reaches Redis in
        # one event-loop turn go in one pipeline (a task, not the first caller, sends it:
        # a cancelled caller must not strand the others, and its release still happens).
        # Under load one round trip carries a dozen requests' commands, where one pipeline
        # each cost redis-py more CPU than the rest of the request's own work.
        self._pipelines: TurnBatch[_Admit | Reservation, list[Any] | Exception] = TurnBatch(
            self._pipeline, max_in_flight=2
        )
        self._slot_ms = slot_seconds * 1000
        self._prefix = prefix
        # A slot's name only has to be unique among the key's slots: a random prefix per
        # limiter (per process) and a counter, where a uuid4 a request cost os.urandom.
        self._slot_prefix = secrets.token_hex(8)
        self._slot_numbers = itertools.count()

    def _next_slot(self) -> str:
        return f"{self._slot_prefix}{next(self._slot_numbers)}"

    async def admit(self, query: AdmissionQuery) -> AdmissionAnswers:
        """Count the request against its limits, reserve its spend, and read the blocklist,
        the project's opt-out list and the provider state, in one round trip (shared with
        the other requests of this loop turn). Raises RedisError when Redis fails."""
        spend = query.spend
        cost = to_micros(spend.cost) if spend else 0
        admission = _Admit(query, self._next_slot(), cost)
        results = await self._round_trip(admission)
        rate = self._decision(results[0], admission.slot)
        blocked, state = results[1], results[2]
        status, spent, day = (int(v) for v in results[0][6:9])
        spend_verdict = SpendVerdict(status)
        reserved = spend is not None and spend_verdict is SpendVerdict.RESERVED
        return AdmissionAnswers(
            rate=rate,
            blocked=blocked,
            provider_state=ProviderState(state.decode()) if state else ProviderState.OK,
            spend=SpendAnswer(spend_verdict, Decimal(spent) / MICROS),
            reservation=Reservation(
                query.project,
                query.key_id,
                rate.slot,
                f"{self._spend_prefix(spend.project)}:{day}" if reserved and spend else "",
                cost if reserved else 0,
            ),
        )

    async def peek(self, project: str, key_id: str, limits: Limits, *, read: bool = False) -> RateDecision:
        """The key's usage (of its read window when `read`), recording nothing (for the
        headers of early refusals)."""

        query = AdmissionQuery(key_id=key_id, limits=limits, project=project, read=read)
        results = await self._round_trip(_Admit(query, "", 0, count=False))
        return self._decision(results[0], "")

    async def _round_trip(self, item: _Admit | Reservation) -> list[Any]:
        result = await self._pipelines.submit(item)
        if isinstance(result, Exception):
            raise result
        return result

    async def _pipeline(self, items: list[_Admit | Reservation]) -> list[list[Any] | Exception]:
        """One pipeline for `items`; each gets its own replies, or the first error among them.

        What is the same for every request of the pipeline goes once: one provider-state
        GET, one blocklist lookup for the recipients of all admissions, one opt-out lookup
        per project, one ZREM per concurrency key for all the slots released. A request's
        answers are then split back out of those (`found_among`); an error in a shared
        reply is the error of every request that needed it.

        The scripts go as a bare EVALSHA: redis-py's `Script` would send SCRIPT EXISTS
        before every pipeline, a second round trip. If Redis has lost a script (first use,
        restart, SCRIPT FLUSH) those scripts did not run, so the scripts are loaded and the
        requests that needed them sent once more: an admission queues nothing but reads
        besides its script.
        """
        answers: list[list[Any] | Exception] = [[] for _ in items]
        todo = list(range(len(items)))
        for attempt in (1, 2):
            async with self._redis.pipeline(transaction=False) as pipe:
                needs_of, splits = self._queue_all(pipe, [items[i] for i in todo])
                replies = list(await pipe.execute(raise_on_error=False))
            for at, count in splits:
                # A project's admissions share one script reply: nine numbers each, appended
                # as one reply per admission where `_queue_all` said they would be.
                reply = replies[at]
                if isinstance(reply, Exception):
                    replies += [reply] * count
                else:
                    replies += [reply[k : k + _ANSWER_LENGTH] for k in range(0, count * _ANSWER_LENGTH, _ANSWER_LENGTH)]
            again: list[int] = []
            for i, needs in zip(todo, needs_of, strict=True):
                error = next((replies[n] for n in needs if isinstance(replies[n], Exception)), None)
                if isinstance(error, NoScriptError) and attempt == 1:
                    again.append(i)
                    continue
                if error is not None:
                    answers[i] = error
                    continue
                item = items[i]
                answers[i] = self._admit_answer(item, needs, replies) if isinstance(item, _Admit) else []
            if not again:
                break
            await self._redis.script_load(_SCRIPT)
            await self._redis.script_load(_MEMBERS_SCRIPT)
            todo = again
        return answers

    @staticmethod
    def _admit_answer(item: _Admit, needs: list[int], replies: list[Any]) -> list[Any]:
        """[the rate script's reply, the blocked recipients, the provider state's value]."""
        rate, state = replies[needs[0]], replies[needs[1]]
        recipients = item.query.recipients
        blocked: frozenset[str] = frozenset()
        if recipients:
            # needs[2:]: the blocklist's and the project's opt-out list's shared replies.
            blocked = found_among(recipients, replies[needs[2]]) | found_among(recipients, replies[needs[3]])
        return [rate, blocked, state]

    def _queue_all(
        self, pipe: Pipeline, items: list[_Admit | Reservation]
    ) -> tuple[list[list[int]], list[tuple[int, int]]]:
        """Queue the commands of `items`: the releases' in order, then one rate script call
        per project for all its admissions, then the shared lookups. Answers, per item, the
        indices of the replies it needs (an admission's: its own share of its project's
        script reply, the provider state's, and when it has recipients the blocklist's and
        its project's opt-out list's), and where each script reply is and how many
        admissions share it: `_pipeline` appends their shares to the replies, in order, at
        the indices given here.

        The releases go first, so within one loop turn a slot given back is free for the
        admissions (they come from requests that were all under way together)."""
        # The releases' slots, one ZREM per concurrency key, queued where that key's first
        # release was: no slot is given back later than it was with a ZREM each.
        slots: dict[str, list[str]] = {}
        for item in items:
            if isinstance(item, Reservation) and item.slot:
                slots.setdefault(concurrency_key(self._prefix, item.project, item.key_id), []).append(item.slot)
        zrem_at: dict[str, int] = {}
        needs: list[list[int]] = []
        admits: list[tuple[list[int], _Admit]] = []
        queued = 0
        for item in items:
            own: list[int] = []
            if isinstance(item, Reservation):
                if item.slot:
                    key = concurrency_key(self._prefix, item.project, item.key_id)
                    if key not in zrem_at:
                        pipe.zrem(key, *slots[key])
                        zrem_at[key] = queued
                        queued += 1
                    own.append(zrem_at[key])
                if item.spend_micros:
                    pipe.decrby(item.spend_key, item.spend_micros)
                    own.append(queued)
                    queued += 1
                if item.record is not None:
                    record = item.record
                    pipe.set(record.name, record.value, ex=record.ttl_seconds)
                    own.append(queued)
                    queued += 1
            else:
                admits.append((own, item))
            needs.append(own)
        splits: list[tuple[int, int]] = []
        if admits:
            by_project: dict[str, list[tuple[list[int], _Admit]]] = {}
            for admit in admits:
                by_project.setdefault(admit[1].query.project, []).append(admit)
            shares: list[list[list[int]]] = []  # per project, in the order `_pipeline` appends
            for project, group in by_project.items():
                self._queue_script(pipe, project, [item for _, item in group])
                splits.append((queued, len(group)))
                queued += 1
                shares.append([own for own, _ in group])
            pipe.get(PROVIDER_STATE_KEY)
            state_at = queued
            queued += 1
            blocklist_at = -1
            with_recipients = [(own, item.query) for own, item in admits if item.query.recipients]
            if with_recipients:
                pipe.evalsha(
                    self._members_sha, 1, BLOCKLIST_KEY, shared_numbers(q.recipients for _, q in with_recipients)
                )
                blocklist_at = queued
                queued += 1
            opt_outs_at: dict[str, int] = {}
            for project in dict.fromkeys(q.project for _, q in with_recipients):
                numbers = shared_numbers(q.recipients for _, q in with_recipients if q.project == project)
                pipe.evalsha(self._members_sha, 1, opt_out_key(project), numbers)
                opt_outs_at[project] = queued
                queued += 1
            # Each admission's share of its project's script reply comes after every reply.
            share_at = queued
            for group_owns in shares:
                for own in group_owns:
                    own.append(share_at)
                    share_at += 1
            for own, item in admits:
                own.append(state_at)
                if item.query.recipients:
                    own += (blocklist_at, opt_outs_at[item.query.project])
        return needs, splits

    def _queue_script(self, pipe: Pipeline, project: str, admissions: list[_Admit]) -> None:
        """One call of the rate script for `admissions`, all of `project`: its keys once
        each, one argument per admission."""
        keys: dict[str, int] = {}

        def index(key: str) -> int:
            at = keys.get(key)
            if at is None:
                at = keys[key] = len(keys) + 1  # Lua counts from 1
            return at

        records: list[str] = []
        for item in admissions:
            query = item.query
            limits = query.limits
            spend = query.spend
            key, tag, conc, spend_key = rate_keys(self._prefix, project, query.key_id, query.tag, read=query.read)
            tag_limit = limits.tag_requests_per_minute if query.tag else 0
            records.append(
                script_numbers(
                    index(key),
                    index(tag) if tag_limit else 0,
                    index(conc),
                    index(spend_key),
                    limits.reads_per_minute if query.read else limits.requests_per_minute,
                    tag_limit,
                    limits.concurrent_requests,
                    1 if item.count else 0,
                    item.cost,
                    to_micros(spend.cap) if spend else 0,
                )
                + f",{item.slot}"
            )
        head = script_numbers(WINDOW_MS, self._slot_ms, SPEND_KEY_TTL_SECONDS)
        pipe.evalsha(self._sha, len(keys), *keys, head, *records)

    def _spend_prefix(self, project: str) -> str:
        return spend_prefix(self._prefix, project)

    @staticmethod
    def _decision(result: list[Any], slot: str) -> RateDecision:
        verdict, limit, remaining, reset_ms, retry_ms = (int(v) for v in result[:5])
        return RateDecision(
            verdict=Verdict(verdict),
            limit=limit,
            remaining=remaining,
            reset_epoch=math.ceil(reset_ms / 1000),
            retry_after=max(1, math.ceil(retry_ms / 1000)) if verdict else 0,
            slot=slot if verdict == Verdict.ADMITTED else "",
        )

    async def release(self, reservation: Reservation) -> None:
        """Give the slot (and an unused spend reservation) back, and write the record the
        request leaves; returns once Redis has them (or raises why not). It goes in the
        pipeline of this loop turn, with the other requests' admissions and releases."""
        if not reservation.slot and not reservation.spend_micros and reservation.record is None:
            return
        await self._round_trip(reservation)
