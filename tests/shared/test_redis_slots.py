"""In a Redis Cluster every script's and transaction's keys must hash to one slot: the key
names carry hash tags for it. Checked with redis-py's own slot function."""

from __future__ import annotations

import uuid

import pytest
from redis.crc import key_slot

from services.dispatcher.send_markers import GENERATION_KEY, marker_key
from services.ingest.ratelimit import concurrency_key, rate_keys


def slots(keys: list[str]) -> set[int]:
    return {key_slot(key.encode()) for key in keys}


@pytest.mark.parametrize("project", ["acme", "proj-2", "x", ""])
@pytest.mark.parametrize("read", [False, True])
def test_the_admission_scripts_keys_share_the_projects_slot(project: str, read: bool) -> None:
    keys = rate_keys("rsms:rl", project, "key_0123abcd", f"{project}:billing", read=read)
    # The script appends the day to the spend prefix: that key is in the slot too.
    spend_today = keys[3] + ":20426"
    assert len(slots([*keys, spend_today])) == 1
    # The release's ZREM goes to the same slot as the admission's ZADD.
    assert slots([concurrency_key("rsms:rl", project, "key_0123abcd")]) == slots(keys)


def test_projects_spread_over_slots() -> None:
    assert len({key_slot(rate_keys("rsms:rl", f"p{i}", "k", None, read=False)[0].encode()) for i in range(50)}) > 40


def test_one_marker_script_call_for_many_messages_stays_in_one_slot() -> None:
    keys = [GENERATION_KEY, *(marker_key(uuid.uuid4()) for _ in range(200))]
    assert len(slots(keys)) == 1
