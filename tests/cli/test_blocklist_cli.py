from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from click.testing import CliRunner

from cli.main import rsms
from shared.blocklist import BLOCKLIST_KEY


def test_blocklist_add_list_remove(redis_url: str) -> None:
    runner = CliRunner(env={"RSMS_REDIS_URL": redis_url})
    assert "Added 2" in runner.invoke(rsms, ["blocklist", "add", "+4712345678", "+4687654321"]).output
    listing = runner.invoke(rsms, ["blocklist", "list"]).output
    assert "+4712345678" in listing and "+4687654321" in listing

    async def members() -> set[bytes]:
        client = aioredis.Redis.from_url(redis_url)
        try:
            return set(await client.smembers(BLOCKLIST_KEY))
        finally:
            await client.aclose()

    assert asyncio.run(members()) == {b"+4712345678", b"+4687654321"}
    assert "Removed 1" in runner.invoke(rsms, ["blocklist", "remove", "+4712345678"]).output
    assert asyncio.run(members()) == {b"+4687654321"}
    bad = runner.invoke(rsms, ["blocklist", "add", "12345"])
    assert bad.exit_code != 0 and "not E.164" in bad.output
