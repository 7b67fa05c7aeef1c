"""The group-commit rule (`services/ingest/publish_groups.py`), without a broker: the
publish is a plain function that records what it was given."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.publish_groups import (
    BATCH_TYPE,
    SINGLE_JOB_TYPE,
    GroupCommitter,
    GroupLimits,
    GroupMessage,
    flush_delay,
    group_body,
    is_full,
)
from shared.contracts import SmsJob, SmsJobBatch


def job(n: int) -> SmsJob:
    return SmsJob(
        message_id=uuid.uuid4(),
        project="acme",
        key_id="key-1",
        tag="billing",
        sender="Billing",
        recipients=[f"+47900{n:05d}"],
        message=f"Reminder {n}",
        encoding="GSM-7",
        segments=1,
        prices={"NO": Decimal("0.67")},
        default_price=Decimal("0.80"),
        currency="NOK",
        estimated_cost=Decimal("0.67"),
        test=False,
        store_body=False,
        accepted_at=datetime.now(UTC),
    )


class Recorder:
    """Stands in for the broker publish: records each message; fails when told to."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.messages: list[tuple[bytes, str]] = []
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()
        self.published = asyncio.Event()

    async def publish(self, message: GroupMessage) -> None:
        self.messages.append((message.body, message.message_type))
        self.published.set()
        await self.release.wait()
        if self.fail is not None:
            raise self.fail


def bodies(n: int) -> list[bytes]:
    return [job(i).model_dump_json().encode() for i in range(n)]


def submit(committer: GroupCommitter, body: bytes) -> asyncio.Future[None]:
    return asyncio.ensure_future(committer.submit(body, SmsJob.model_validate_json(body).message_id.hex))


def test_one_job_goes_as_a_plain_job_and_more_as_a_batch_of_the_same_jobs() -> None:
    one = bodies(1)
    assert group_body(one, ["id-1"]) == GroupMessage(one[0], SINGLE_JOB_TYPE, "id-1")
    three = bodies(3)
    message = group_body(three, ["id-1", "id-2", "id-3"])
    assert (message.message_type, message.message_id) == (BATCH_TYPE, "batch-id-1")
    batch = SmsJobBatch.model_validate_json(message.body)
    assert [j.model_dump_json().encode() for j in batch.jobs] == three
    with pytest.raises(ValueError):
        group_body([], [])


@given(
    jobs=st.integers(0, 500),
    size=st.integers(0, 5_000_000),
    max_jobs=st.integers(1, 200),
    max_bytes=st.integers(1, 2_000_000),
)
def test_a_group_is_full_exactly_at_either_limit(jobs: int, size: int, max_jobs: int, max_bytes: int) -> None:
    limits = GroupLimits(max_jobs=max_jobs, max_bytes=max_bytes)
    assert is_full(jobs, size, limits) == (jobs >= max_jobs or size >= max_bytes)


@given(waiting=st.integers(0, 100), wait=st.floats(0, 1), in_flight=st.none() | st.integers(1, 10))
def test_an_idle_publisher_never_waits_a_busy_one_waits_the_max_a_full_one_for_a_confirm(
    waiting: int, wait: float, in_flight: int | None
) -> None:
    delay = flush_delay(waiting, GroupLimits(max_wait_seconds=wait, max_in_flight=in_flight))
    if in_flight is not None and waiting >= in_flight:
        assert delay is None
    else:
        assert delay == (wait if waiting else 0.0)


async def test_jobs_submitted_in_one_turn_share_one_message_and_each_waits_for_it() -> None:
    recorder = Recorder()
    recorder.release.clear()
    committer = GroupCommitter(recorder.publish, GroupLimits(max_jobs=100))
    submits = [submit(committer, b) for b in bodies(5)]
    await recorder.published.wait()
    assert len(recorder.messages) == 1 and recorder.messages[0][1] == BATCH_TYPE
    assert not any(s.done() for s in submits), "nobody is answered before the confirm"
    recorder.release.set()
    await asyncio.gather(*submits)
    assert len(SmsJobBatch.model_validate_json(recorder.messages[0][0]).jobs) == 5


async def test_a_lone_job_on_an_idle_publisher_leaves_alone_as_a_plain_job() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.publish, GroupLimits(max_wait_seconds=60))
    (body,) = bodies(1)
    await asyncio.wait_for(submit(committer, body), timeout=30)  # far below the 60 s max wait
    assert recorder.messages == [(body, SINGLE_JOB_TYPE)]


async def test_groups_are_cut_at_max_jobs() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.publish, GroupLimits(max_jobs=4))
    await asyncio.gather(*(submit(committer, b) for b in bodies(10)))
    sizes = sorted(len(SmsJobBatch.model_validate_json(b).jobs) if t == BATCH_TYPE else 1 for b, t in recorder.messages)
    assert sizes == [2, 4, 4]


async def test_groups_are_cut_at_max_bytes() -> None:
    recorder = Recorder()
    jobs = bodies(6)
    committer = GroupCommitter(recorder.publish, GroupLimits(max_bytes=2 * len(jobs[0])))
    await asyncio.gather(*(submit(committer, b) for b in jobs))
    assert all(len(SmsJobBatch.model_validate_json(b).jobs) <= 2 for b, t in recorder.messages if t == BATCH_TYPE)
    assert (
        sum(len(SmsJobBatch.model_validate_json(b).jobs) if t == BATCH_TYPE else 1 for b, t in recorder.messages) == 6
    )


async def test_while_a_publish_awaits_its_confirm_the_next_jobs_gather_into_one_group() -> None:
    recorder = Recorder()
    recorder.release.clear()
    committer = GroupCommitter(recorder.publish, GroupLimits(max_wait_seconds=0.05))
    first = submit(committer, bodies(1)[0])
    await recorder.published.wait()
    later = []
    for body in bodies(3):  # one per loop turn, while the first is unconfirmed
        later.append(submit(committer, body))
        await asyncio.sleep(0)
    recorder.release.set()
    await asyncio.gather(first, *later)
    assert [t for _, t in recorder.messages] == [SINGLE_JOB_TYPE, BATCH_TYPE]
    assert len(SmsJobBatch.model_validate_json(recorder.messages[1][0]).jobs) == 3


async def test_at_the_in_flight_limit_a_group_waits_for_a_confirm_however_long_and_leaves_then() -> None:
    recorder = Recorder()
    recorder.release.clear()
    committer = GroupCommitter(recorder.publish, GroupLimits(max_wait_seconds=0.001, max_in_flight=1))
    first = submit(committer, bodies(1)[0])
    await recorder.published.wait()
    later = []
    for body in bodies(3):  # one per loop turn, well past the 1 ms wait, the first unconfirmed
        later.append(submit(committer, body))
        await asyncio.sleep(0.01)
    assert len(recorder.messages) == 1, "nothing leaves while the one publish allowed awaits its confirm"
    recorder.published.clear()
    recorder.release.set()
    await asyncio.gather(first, *later)
    assert [t for _, t in recorder.messages] == [SINGLE_JOB_TYPE, BATCH_TYPE]
    assert len(SmsJobBatch.model_validate_json(recorder.messages[1][0]).jobs) == 3


async def test_at_the_in_flight_limit_a_full_group_still_leaves_at_once() -> None:
    recorder = Recorder()
    recorder.release.clear()
    committer = GroupCommitter(recorder.publish, GroupLimits(max_jobs=2, max_in_flight=1))
    first = submit(committer, bodies(1)[0])
    await recorder.published.wait()
    full = [submit(committer, b) for b in bodies(2)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(recorder.messages) == 2, "a full group does not wait for the confirm under way"
    recorder.release.set()
    await asyncio.gather(first, *full)


async def test_a_failed_publish_at_the_in_flight_limit_lets_the_waiting_group_go() -> None:
    recorder = Recorder(fail=ConnectionError("broker gone"))
    recorder.release.clear()
    committer = GroupCommitter(recorder.publish, GroupLimits(max_in_flight=1))
    first = submit(committer, bodies(1)[0])
    await recorder.published.wait()
    second = submit(committer, bodies(1)[0])
    await asyncio.sleep(0)
    recorder.release.set()
    answers = await asyncio.wait_for(asyncio.gather(first, second, return_exceptions=True), timeout=30)
    assert len(recorder.messages) == 2 and all(isinstance(a, ConnectionError) for a in answers)


async def test_a_failed_publish_fails_every_job_of_its_message() -> None:
    recorder = Recorder(fail=ConnectionError("broker gone"))
    committer = GroupCommitter(recorder.publish, GroupLimits())
    answers = await asyncio.gather(*(submit(committer, b) for b in bodies(4)), return_exceptions=True)
    assert len(recorder.messages) == 1
    assert all(isinstance(a, ConnectionError) for a in answers)


async def test_a_caller_gone_before_its_group_left_is_not_published() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.publish, GroupLimits())
    kept, dropped = bodies(2)
    staying = submit(committer, kept)
    leaving = submit(committer, dropped)
    await asyncio.sleep(0)  # both joined the open group
    leaving.cancel()
    await staying
    assert recorder.messages == [(kept, SINGLE_JOB_TYPE)]


async def test_close_sends_the_open_group() -> None:
    recorder = Recorder()
    committer = GroupCommitter(recorder.publish, GroupLimits())
    pending = submit(committer, bodies(1)[0])
    await asyncio.sleep(0)
    await committer.close()
    await pending
    assert len(recorder.messages) == 1
