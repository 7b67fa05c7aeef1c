"""The simulator's admin API (faults, counters, every delivered number) needs its token and
listens on loopback unless told otherwise."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from services.provider_sim.app import create_app
from services.provider_sim.settings import ProviderSimSettings

TOKEN = "admin-test-token"


async def test_admin_routes_refuse_a_request_without_the_token():
    app = create_app(ProviderSimSettings(provider_sim_token=TOKEN))
    async with AsyncTestClient(app=app) as client:
        for method, path in (
            ("GET", "/admin/stats"),
            ("GET", "/admin/messages"),
            ("GET", "/admin/faults"),
            ("POST", "/admin/faults"),
            ("POST", "/admin/reset"),
        ):
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                response = await client.request(method, path, headers=headers, json={})
                assert response.status_code == 401, (method, path, headers)
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/admin/stats", headers=good)).status_code == 200
        # The auth-failure fault refuses the provider API, never the switch that ends it.
        assert (await client.post("/admin/faults", headers=good, json={"auth_failure": True})).status_code == 200
        assert (await client.post("/admin/faults", headers=good, json={"auth_failure": False})).status_code == 200


def test_the_simulator_listens_on_loopback_by_default(monkeypatch):
    monkeypatch.delenv("RSMS_PROVIDER_SIM_HOST", raising=False)
    assert ProviderSimSettings().provider_sim_host == "127.0.0.1"
