"""The SDK's tests run against the real ingest server (`rsms ingest`), as the ingest tests do."""

from tests.ingest.conftest import StartIngest, start_ingest

__all__ = ["StartIngest", "start_ingest"]
