"""`rsms webhooks`: run the webhook sender until SIGTERM or SIGINT."""

from __future__ import annotations

import uvloop

from services.webhooks.app import build_app
from services.webhooks.settings import WebhooksSettings
from shared.log import configure_logging


def run() -> None:
    settings = WebhooksSettings()
    configure_logging("webhooks", settings.log_level, settings.log_format)
    # uvloop, as the dispatcher: every event is a few small socket writes (AMQP, HTTP).
    uvloop.run(build_app(settings).run())


if __name__ == "__main__":
    run()
