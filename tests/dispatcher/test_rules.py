"""The dispatcher's decisions that need no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.dispatcher.http_provider import classify_status
from services.dispatcher.job_dispatcher import delivery_from_marker, marker_for
from services.dispatcher.job_reader import delivered_before, read_job, read_jobs
from services.dispatcher.provider import Delivery, DeliveryStatus, ProviderAccountError
from services.dispatcher.retry_policy import RetryPolicy
from services.dispatcher.settings import DispatcherSettings
from shared.contracts import DeadLetter, SmsJobBatch
from shared.provider_state import ProviderState


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, ProviderState.AUTH_ERROR),
        (403, ProviderState.AUTH_ERROR),
        (402, ProviderState.NO_CREDITS),
        (503, DeliveryStatus.TRANSIENT),
        (429, DeliveryStatus.TRANSIENT),
    ],
)
def test_http_status_classification(status, expected):
    verdict = classify_status(status)
    if isinstance(verdict, ProviderAccountError):
        assert verdict.state is expected
    else:
        assert isinstance(verdict, Delivery) and verdict.status is expected
    assert classify_status(200) is None


def test_backoff_grows_then_repeats_and_stops_at_the_last_attempt():
    policy = RetryPolicy(max_attempts=5, delays_ms=(1_000, 5_000, 25_000))
    assert [policy.delay_after(n) for n in (1, 2, 3, 4)] == [1_000, 5_000, 25_000, 25_000]
    assert [policy.can_retry(n) for n in (1, 4, 5)] == [True, True, False]
    assert policy.delays_in_use() == (1_000, 5_000, 25_000)


def test_markers_round_trip_and_unsettled_ones_settle_nothing():
    sent = Delivery(DeliveryStatus.SENT, "sim-7")
    assert delivery_from_marker(marker_for(sent) or "") == sent
    assert delivery_from_marker(marker_for(Delivery(DeliveryStatus.BLOCKED)) or "").status is DeliveryStatus.BLOCKED
    assert marker_for(Delivery(DeliveryStatus.TRANSIENT)) == "t"  # not sent: the retry sends it
    assert marker_for(Delivery(DeliveryStatus.UNKNOWN)) is None  # stays claimed until decided
    assert all(delivery_from_marker(m) is None for m in ("", "p", "t", "u:0"))


def test_an_invalid_job_becomes_a_dead_letter_without_its_contents():
    letter = read_job(b'{"recipients": ["+4791234567"], "message": "secret"}')
    assert isinstance(letter, DeadLetter) and letter.reason == "invalid_job"
    assert "message_id: Field required" in letter.detail
    assert "+4791234567" not in letter.detail and "secret" not in letter.detail


def test_a_batch_is_read_job_by_job_and_a_job_it_cannot_read_is_dead_lettered_alone():
    from tests.dispatcher.harness import make_job, numbers

    jobs = [make_job(numbers(2, start=10 * n)) for n in range(3)]
    assert read_jobs(jobs[0].model_dump_json().encode()) == [jobs[0]]
    assert read_jobs(SmsJobBatch(jobs=jobs).model_dump_json().encode()) == jobs
    poison = b'{"recipients": ["+4791234567"], "message": "secret"}'
    body = b'{"schema_version":1,"jobs":[' + jobs[0].model_dump_json().encode() + b"," + poison + b","
    body += jobs[2].model_dump_json().encode() + b"]}"
    first, letter, third = read_jobs(body)
    assert (first, third) == (jobs[0], jobs[2])
    assert isinstance(letter, DeadLetter) and letter.reason == "invalid_job" and letter.body == poison.decode()
    for unreadable in (b"not json", b'{"schema_version":2,"jobs":[{}]}', b'{"schema_version":1,"jobs":[]}'):
        (whole,) = read_jobs(unreadable)
        assert isinstance(whole, DeadLetter) and whole.reason == "invalid_job"


def test_acks_cover_only_settled_tags_and_never_a_job_in_flight():
    import asyncio

    from services.dispatcher.acknowledger import Acknowledger, _ChannelAcks

    loop = asyncio.new_event_loop()
    try:
        state = _ChannelAcks()
        # Tags 1, 2 and 4 finished, 3 handed back, 6 finished; 5 still in flight.
        state.finished = {t: loop.create_future() for t in (1, 2, 4, 6)}
        state.tags.settled_above = {3}
        frames = Acknowledger._plan(state)
        assert [(tag, multiple, len(jobs)) for tag, multiple, jobs in frames] == [
            (4, True, 3),  # one frame for 1..4: every tag up to 4 is settled
            (6, False, 1),  # past the gap at 5: on its own, not held back
        ]
        assert state.tags.settled_upto == 4 and state.tags.settled_above == {6}

        # 5 finishes: the multiple-ack stops at 5, 6 was already acked on its own.
        state.finished = {5: loop.create_future()}
        frames = Acknowledger._plan(state)
        assert [(tag, multiple) for tag, multiple, _ in frames] == [(5, True)]
        assert state.tags.settled_upto == 6 and not state.tags.settled_above
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, False),
        ({"x-death": [{"reason": "expired", "queue": "rsms.dispatch.retry.1000ms"}]}, False),  # a retry
        ({"x-death": [{"reason": "delivery_limit", "queue": "rsms.dispatch.jobs"}]}, True),
        ({"x-death": [{"reason": "delivery_limit"}, {"reason": "expired"}]}, True),
        ({"x-death": "garbage"}, False),
    ],
)
def test_a_job_replayed_after_the_broker_dead_lettered_it_counts_as_delivered_before(
    headers: dict[str, object], expected: bool
) -> None:
    assert delivered_before(headers) is expected


@given(window=st.integers(1, 1000), binds=st.integers(1, 64), batch_size=st.integers(1, 5000))
def test_an_smpp_job_claims_no_more_than_the_windows_hold(window, binds, batch_size):
    settings = DispatcherSettings(
        provider_kind="smpp", smpp_window=window, smpp_binds=binds, provider_batch_size=batch_size
    )
    size, in_flight = settings.provider_chunking()
    # Every recipient a job has claimed fits in the windows at once: none is claimed (and
    # held after a crash) while it waits, unwritten, for a free slot.
    assert 1 <= size <= batch_size
    assert size * in_flight <= window * binds
    # Two batches where the windows allow it, so the next one is written while the other
    # is still being answered.
    assert in_flight == (2 if window * binds > 1 else 1)


def test_an_http_job_fills_the_requests_in_flight():
    settings = DispatcherSettings(provider_batch_size=500, provider_max_concurrent_requests=6)
    assert settings.provider_chunking() == (500, 6)
