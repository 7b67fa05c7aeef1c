"""`rsms provider-sim`: run the provider simulator, switch its faults, read its counters.

rsms provider-sim                       run it (RSMS_PROVIDER_SIM_HOST/PORT/TOKEN)
rsms provider-sim faults --error-rate 0.3 --blocked +4790000001
rsms provider-sim faults --no-credits   / --credits, --auth-failure / --auth-ok
rsms provider-sim stats                 what reached the simulated network
rsms provider-sim inbound --from +4790000001 --to RSMS STOP    an MO message over its SMPP face
"""

from __future__ import annotations

import json
from typing import Any

import click
import httpx

from cli.table import json_option, print_document, print_table


def _admin(url: str | None) -> httpx.Client:
    """A client of the running simulator's admin API, with its token (RSMS_PROVIDER_SIM_TOKEN)."""
    from services.provider_sim.settings import ProviderSimSettings

    settings = ProviderSimSettings()
    base = url.rstrip("/") if url else f"http://{settings.provider_sim_host}:{settings.provider_sim_port}"
    return httpx.Client(base_url=base, timeout=5, headers={"Authorization": f"Bearer {settings.provider_sim_token}"})


_URL_OPTION = click.option("--url", default=None, help="The running simulator (default: its settings).")


@click.group("provider-sim", invoke_without_command=True)
@click.pass_context
def provider_sim(ctx: click.Context) -> None:
    """Run the SMS provider simulator (no subcommand), or talk to a running one."""
    if ctx.invoked_subcommand is None:
        from services.provider_sim.main import run

        run()


@provider_sim.command("faults")
@_URL_OPTION
@click.option("--latency-ms", type=float, help="Added to every send request.")
@click.option("--error-rate", type=click.FloatRange(0, 1), help="Share of requests answered 503.")
@click.option("--timeout-rate", type=click.FloatRange(0, 1), help="Share of requests that hang.")
@click.option("--recipient-error-rate", type=click.FloatRange(0, 1), help="Share of recipients failed.")
@click.option("--auth-failure/--auth-ok", default=None, help="Answer every request 401.")
@click.option("--no-credits/--credits", default=None, help="Answer every request 402.")
@click.option("--blocked", multiple=True, help="A number reported blocked (repeatable).")
@click.option("--invalid", multiple=True, help="A number reported invalid (repeatable).")
@click.option("--receipt-failure-rate", type=click.FloatRange(0, 1), help="Share of receipts reported undelivered.")
@click.option("--clear-numbers", is_flag=True, help="Empty the blocked and invalid lists.")
def faults(url: str | None, clear_numbers: bool, **changes: Any) -> None:
    """Show the faults, or change the ones given (the others stay as they are)."""
    body = {k: v for k, v in changes.items() if v is not None and v != ()}
    for key in ("blocked", "invalid"):
        if key in body:
            body[key] = list(body[key])
        elif clear_numbers:
            body[key] = []
    with _admin(url) as client:
        response = client.post("/admin/faults", json=body) if body else client.get("/admin/faults")
        response.raise_for_status()
    click.echo(json.dumps(response.json(), indent=2))


@provider_sim.command("stats")
@_URL_OPTION
@json_option
def stats(url: str | None, as_json: bool) -> None:
    """What reached the simulated network: deliveries, duplicates, refusals."""
    with _admin(url) as client:
        response = client.get("/admin/stats")
        response.raise_for_status()
    if as_json:
        print_document(response.json())
        return
    print_table(["counter", "value"], sorted(response.json().items()), empty="Nothing yet.")


@provider_sim.command("reset")
@_URL_OPTION
def reset(url: str | None) -> None:
    """Forget every delivery and counter, and clear the faults."""
    with _admin(url) as client:
        client.post("/admin/reset").raise_for_status()
    click.echo("Simulator reset.")


@provider_sim.command("inbound")
@_URL_OPTION
@click.option("--from", "sender", required=True, help="The handset's number, e.g. +4790000001.")
@click.option("--to", "to", required=True, help="The number or sender name it was sent to.")
@click.argument("text")
def inbound(url: str | None, sender: str, to: str, text: str) -> None:
    """Send TEXT as an inbound (MO) message to the gateway over the simulator's SMPP face."""
    with _admin(url) as client:
        response = client.post("/admin/smpp/inbound", json={"from": sender, "to": to, "text": text})
    if response.status_code != 200:
        raise click.ClickException(response.json().get("error", response.text))
    status = response.json()["deliver_sm_resp_status"]
    click.echo("Taken by the gateway." if status == 0 else f"The gateway answered deliver_sm with 0x{status:08X}.")
