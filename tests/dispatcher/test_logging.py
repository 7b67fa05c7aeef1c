"""What the dispatcher says about itself: a retry is not an error; a Redis that forgets is."""

from __future__ import annotations

import json

import httpx

from tests.dispatcher.harness import eventually, make_job, numbers, publish
from tests.support.redis_server import RedisServer


async def test_a_retried_job_logs_its_retry_and_no_error(amqp_url, simulator, start_dispatcher):
    await simulator.faults(recipient_error_rate=0.5)
    dispatcher = await start_dispatcher(RSMS_DISPATCHER_MAX_ATTEMPTS="25").ready()
    job = make_job(numbers(20))
    await publish(amqp_url, job)

    await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 20, what="everyone sent")
    await eventually(lambda: _async(dispatcher.output()), lambda out: "job attempt retrying" in out, what="a retry")
    output = dispatcher.output()
    retry_line = next(line for line in output.splitlines() if "job attempt retrying" in line)
    retry = json.loads(retry_line)
    assert retry["retrying"] > 0 and retry["message_id"] == str(job.message_id)
    assert "ERROR" not in output and "Traceback" not in output, output


async def _async(value: str) -> str:
    return value


async def test_a_redis_without_persistence_is_a_warning_at_start_and_a_readiness_detail(start_dispatcher):
    # The tests' Redis keeps nothing over a restart (--save "" --appendonly no).
    dispatcher = await start_dispatcher().ready()
    async with httpx.AsyncClient(timeout=5) as client:
        ready = (await client.get(f"http://127.0.0.1:{dispatcher.http_port}/health/ready")).json()
    assert ready["status"] == "ready"  # it serves, but says so
    assert ready["details"]["redis_persistence"].startswith("DOES NOT PERSIST")
    warning = next(line for line in dispatcher.output().splitlines() if "Redis does not persist" in line)
    assert json.loads(warning)["level"] == "warning" and "--appendonly yes" in warning


async def test_a_redis_with_an_append_only_file_is_reported_as_persisting(start_dispatcher, free_port, tmp_path):
    server = RedisServer(free_port(), tmp_path / "redis", appendonly=True).start()
    try:
        dispatcher = await start_dispatcher(RSMS_REDIS_URL=server.url).ready()
        async with httpx.AsyncClient(timeout=5) as client:
            ready = (await client.get(f"http://127.0.0.1:{dispatcher.http_port}/health/ready")).json()
        assert ready["details"]["redis_persistence"] == "persists: AOF enabled"
        assert "Redis does not persist" not in dispatcher.output()
    finally:
        server.stop()
