"""Runs the simulator under granian until SIGTERM/SIGINT (`rsms provider-sim`)."""

from __future__ import annotations

from granian import Granian
from granian.constants import Interfaces

from services.provider_sim.settings import ProviderSimSettings
from shared.log import configure_logging, get_logger


def run(settings: ProviderSimSettings | None = None) -> None:
    settings = settings or ProviderSimSettings()
    configure_logging("provider-sim", settings.log_level, settings.log_format)
    get_logger(__name__).info(
        "provider simulator starting",
        host=settings.provider_sim_host,
        port=settings.provider_sim_port,
    )
    # One worker: the delivery log lives in that process's memory, and tests and
    # benchmarks read it back through the admin API.
    Granian(
        "services.provider_sim.app:create_app",
        factory=True,
        interface=Interfaces.ASGI,
        address=settings.provider_sim_host,
        port=settings.provider_sim_port,
        workers=1,
        log_access=False,
        # A worker stopped while it was still starting (the SMPP face binding, under load)
        # was seen to hang on its shutdown, keeping both processes up after SIGTERM: the
        # simulator keeps nothing worth a long drain, so it is killed after this long.
        workers_kill_timeout=10,
    ).serve()
