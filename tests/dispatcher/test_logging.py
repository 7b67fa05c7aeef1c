"""What the dispatcher logs for the ordinary life of a job: a retry is not an error."""

from __future__ import annotations

from tests.dispatcher.harness import eventually, make_job, numbers, publish


async def test_a_retried_job_logs_its_retry_and_no_error(amqp_url, simulator, start_dispatcher):
    await simulator.faults(recipient_error_rate=0.5)
    dispatcher = await start_dispatcher(RSMS_DISPATCHER_MAX_ATTEMPTS="25").ready()
    job = make_job(numbers(20))
    await publish(amqp_url, job)

    await eventually(simulator.stats, lambda s: s.get("delivered", 0) >= 20, what="everyone sent")
    await eventually(lambda: _async(dispatcher.output()), lambda out: "job attempt retrying" in out, what="a retry")
    output = dispatcher.output()
    retry_line = next(line for line in output.splitlines() if "job attempt retrying" in line)
    assert '"retrying": ' in retry_line and str(job.message_id) in retry_line
    assert "ERROR" not in output and "Traceback" not in output, output


async def _async(value: str) -> str:
    return value
