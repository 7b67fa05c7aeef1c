"""Per message-and-recipient send markers in Redis: what a redelivered job must not redo.

One hash per message (`rsms:dispatch:markers:<message id>`), one field per recipient:

    p          claimed before the send; its outcome was not recorded (in flight, crashed,
               or failed transiently): send again, with the same idempotency reference
    s:<ref>    sent, the provider's reference: never sent again
    b / i      the provider refused it as blocked / invalid: never sent again

A claim is one Lua call per job, atomic with respect to every other dispatcher. The
"p" window (claimed, sent, crash before the outcome was recorded) is closed by the
provider: the resend carries the same reference, which it does not deliver twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from uuid import UUID

from redis.asyncio import Redis

CLAIMED = "p"
SENT_PREFIX = "s:"
BLOCKED = "b"
INVALID = "i"

_CLAIM = """
local key = KEYS[1]
local previous = {}
for i = 2, #ARGV do
  if redis.call('HSETNX', key, ARGV[i], 'p') == 1 then
    previous[i - 1] = ''
  else
    previous[i - 1] = redis.call('HGET', key, ARGV[i])
  end
end
redis.call('EXPIRE', key, ARGV[1])
return previous
"""


def marker_key(message_id: UUID) -> str:
    return f"rsms:dispatch:markers:{message_id.hex}"


class SendMarkers:
    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._claim = redis.register_script(_CLAIM)

    async def claim(self, message_id: UUID, recipients: Sequence[str]) -> list[str]:
        """Marks every recipient claimed; returns each one's earlier marker ('' if none)."""
        previous = await self._claim(keys=[marker_key(message_id)], args=[self._ttl, *recipients])
        return [p.decode() if isinstance(p, bytes) else p for p in previous]

    async def record(self, message_id: UUID, markers: Mapping[str, str]) -> None:
        if markers:
            await self._redis.hset(marker_key(message_id), mapping=dict(markers))  # type: ignore[arg-type]
