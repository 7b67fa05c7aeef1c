"""Runs the simulator under uvicorn until SIGTERM/SIGINT (`rsms provider-sim`)."""

from __future__ import annotations

import contextvars
import os
import threading
from types import FrameType

import uvicorn

from services.provider_sim.settings import ProviderSimSettings
from shared.log import configure_logging, exit_normally_on_stop_signals, get_logger

GRACEFUL_SHUTDOWN_SECONDS = 5
"""On SIGTERM, requests in flight (one hanging in the timeout fault, say) get this long to
finish before they are cancelled and the app shuts down."""
KILL_AFTER_SECONDS = 10.0
"""A stop that has not ended this long after the signal ends the process: the simulator
keeps nothing worth a long drain."""


def run(settings: ProviderSimSettings | None = None) -> None:
    settings = settings or ProviderSimSettings()
    configure_logging("provider-sim", settings.log_level, settings.log_format)
    get_logger(__name__).info(
        "provider simulator starting",
        host=settings.provider_sim_host,
        port=settings.provider_sim_port,
    )
    # One process, no workers: the delivery log lives in its memory, and tests and
    # benchmarks read it back through the admin API.
    config = uvicorn.Config(
        "services.provider_sim.app:create_app",
        factory=True,
        host=settings.provider_sim_host,
        port=settings.provider_sim_port,
        loop="uvloop",
        http="httptools",
        ws="none",
        # The receipt reporter and the SMPP face start and stop with the app.
        lifespan="on",
        # Logging is ours (`configure_logging`), and there is no access log; uvicorn's
        # info lines about starting and stopping are left out (its warnings stay).
        log_config=None,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    # uvicorn raises the signal that stopped it again once it has shut down: these make
    # that an exit with code 0 through the interpreter's own exit (which writes the log
    # lines still waiting), not a death by SIGTERM or a KeyboardInterrupt's traceback.
    exit_normally_on_stop_signals()
    _StoppedInTime(config).run()


class _StoppedInTime(uvicorn.Server):
    """uvicorn's server, ended `KILL_AFTER_SECONDS` after the first SIGTERM/SIGINT if its
    stop has not ended it by then (a stop that came while the app was still starting, the
    SMPP face binding under load, was once seen to hang)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            # In this thread's context: its log line names the service.
            deadline = threading.Timer(KILL_AFTER_SECONDS, contextvars.copy_context().run, args=(_stop_overdue,))
            deadline.daemon = True
            deadline.start()
        super().handle_exit(sig, frame)


def _stop_overdue() -> None:
    get_logger(__name__).error("provider simulator did not stop in time; exiting", seconds=KILL_AFTER_SECONDS)
    os._exit(1)
