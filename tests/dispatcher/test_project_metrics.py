"""The dispatcher's recipient outcomes carry the project: its values come from accepted
jobs, whose projects ingest took from the accounts file, so the label stays bounded."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.dispatcher.harness import eventually, make_job, numbers, publish


def recipients_by_label(text: str) -> dict[tuple[str, str, str], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "rsms_dispatcher_recipients_total":
                labels = sample.labels
                found[(labels["project"], labels["status"], labels["traffic"])] = sample.value
    return found


async def test_sent_recipients_are_counted_per_project_and_traffic(amqp_url, simulator, start_dispatcher):
    dispatcher = await start_dispatcher().ready()
    acme = make_job(numbers(3)).model_copy(update={"project": "acme"})
    globex = make_job(numbers(2, start=10)).model_copy(update={"project": "globex"})
    globex_test = make_job(numbers(1, start=20), test=True).model_copy(update={"project": "globex"})
    await publish(amqp_url, acme, globex, globex_test)

    async def counted() -> dict[tuple[str, str, str], float]:
        return recipients_by_label(await dispatcher.metrics())

    found = await eventually(counted, lambda c: sum(c.values()) >= 6, what="6 recipients counted")
    assert found == {
        ("acme", "sent", "live"): 3.0,
        ("globex", "sent", "live"): 2.0,
        ("globex", "sent", "test"): 1.0,
    }
