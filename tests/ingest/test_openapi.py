"""The OpenAPI description: valid, complete, and good enough to generate a typed client from."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.errors import ErrorCode, GatewayError
from tests.ingest.conftest import StartIngest
from tests.support.accounts import add_project

SEND, STATUS, USAGE = "/api/v1/sms/send", "/api/v1/sms/{messageId}", "/api/v1/usage"
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(IngestSettings()).openapi_schema.to_schema()


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield f"{method.upper()} {path}", item[method]


def test_the_description_passes_the_validator(spec: dict[str, Any]) -> None:
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    assert set(spec["paths"]) == {SEND, STATUS, USAGE}


def test_every_header_and_parameter_has_a_schema(spec: dict[str, Any]) -> None:
    for name, operation in operations(spec):
        for parameter in operation.get("parameters", []):
            assert "schema" in parameter, (name, parameter["name"])
        for status, response in operation["responses"].items():
            headers = response.get("headers", {})
            assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(headers), (name, status)
            if status in ("429", "500"):
                assert "Retry-After" in headers, (name, status)
            for header_name, header in headers.items():
                assert header["schema"]["type"] == "integer", (name, status, header_name)


def test_parameters_say_what_they_accept(spec: dict[str, Any]) -> None:
    def parameters(path: str, method: str) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in spec["paths"][path][method]["parameters"]}

    idempotency_key = parameters(SEND, "post")["Idempotency-Key"]
    assert idempotency_key["in"] == "header" and idempotency_key["required"] is False
    assert idempotency_key["schema"]["maxLength"] == 255
    message_id = parameters(STATUS, "get")["messageId"]
    assert message_id["required"] is True and message_id["schema"]["format"] == "uuid"
    usage = parameters(USAGE, "get")
    assert usage["from"]["required"] is usage["to"]["required"] is True
    assert usage["from"]["schema"]["format"] == usage["to"]["schema"]["format"] == "date"
    assert usage["groupBy"]["schema"]["enum"] == ["day", "tag", "country"]
    assert spec["security"] == [{"BearerAuth": []}]
    assert spec["components"]["securitySchemes"]["BearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "sk_live_… or sk_test_…",
    }


def test_responses_are_typed_with_formats(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    for path, method, model in (
        (SEND, "post", "SendResponse"),
        (STATUS, "get", "MessageStatusResponse"),
        (USAGE, "get", "UsageResponse"),
    ):
        ok = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": f"#/components/schemas/{model}"}
    assert schemas["SendResult"]["properties"]["messageId"]["format"] == "uuid"
    assert schemas["SendResult"]["properties"]["timestamp"]["format"] == "date-time"
    assert schemas["MessageStatus"]["properties"]["messageId"]["format"] == "uuid"
    assert {"recipients", "summary", "status", "cost"} <= set(schemas["MessageStatus"]["required"])
    assert schemas["Usage"]["properties"]["from"]["format"] == "date"
    assert set(schemas["UsageRow"]["required"]) == {"messages", "recipients", "smsSegments", "cost"}


def test_every_error_code_has_an_example_from_the_catalogue(spec: dict[str, Any]) -> None:
    shown: dict[str, list[dict[str, Any]]] = {}
    for name, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                continue
            media = response["content"]["application/json"]
            assert media["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
            assert media["examples"], (name, status)
            for example in media["examples"].values():
                body = example["value"]
                assert body["success"] is False
                assert ErrorCode(body["error"]["code"]).http_status == int(status) or status in ("404", "413")
                shown.setdefault(body["error"]["code"], []).append(body)
    assert set(shown) == {code.value for code in ErrorCode}
    # The contract's own examples, word for word.
    assert GatewayError(ErrorCode.UNAUTHORIZED).body() in shown["UNAUTHORIZED"]
    assert {
        "success": False,
        "error": {
            "code": "RATE_LIMIT_EXCEEDED",
            "message": "Rate limit exceeded. Try again in 60 seconds",
            "retryAfter": 60,
        },
    } in shown["RATE_LIMIT_EXCEEDED"]
    assert {
        "success": False,
        "error": {
            "code": "VALIDATION_ERROR",
            "message": "Invalid request payload",
            "details": [
                "recipients[0]: Invalid phone number format '+47abc'",
                "message: Message exceeds maximum length of 1000 characters",
            ],
        },
    } in shown["VALIDATION_ERROR"]
    assert {
        "success": False,
        "error": {"code": "IP_NOT_WHITELISTED", "message": "Request from unauthorized IP address"},
    } in shown["IP_NOT_WHITELISTED"]


def generate_client(spec_path: Path, output: Path) -> None:
    """openapi-python-client, as a user runs it (without formatting the code it writes)."""
    config = output.with_suffix(".yaml")
    config.write_text("post_hooks: []\n")
    generator = Path(sys.executable).with_name("openapi-python-client")
    subprocess.run(
        [
            str(generator),
            "generate",
            *("--path", str(spec_path)),
            *("--output-path", str(output)),
            *("--meta", "none"),
            *("--config", str(config)),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.slow
async def test_a_client_generated_from_it_gets_typed_models_for_every_endpoint(
    start_ingest: StartIngest, accounts_file: Path, ledger: None, tmp_path: Path
) -> None:
    keys = add_project(accounts_file)
    served = start_ingest()
    spec_path = tmp_path / "openapi.json"
    async with httpx.AsyncClient(base_url=served.url) as http:
        spec_path.write_bytes((await http.get("/docs/openapi.json")).content)
    package = f"rsms_generated_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(generate_client, spec_path, tmp_path / package)
    sys.path.insert(0, str(tmp_path))
    try:
        generated = importlib.import_module(package)
        send_sms = importlib.import_module(f"{package}.api.sms.send_sms")
        get_message_status = importlib.import_module(f"{package}.api.sms.get_message_status")
        get_usage = importlib.import_module(f"{package}.api.billing.get_usage")
        models = importlib.import_module(f"{package}.models")
    finally:
        sys.path.remove(str(tmp_path))

    client = generated.AuthenticatedClient(base_url=served.url, token=keys.live_key)
    async with client:
        body = models.SendSmsSendRequest(
            tag="billing", recipients=["+4712345678"], message="Hello from a generated client"
        )
        sent = await send_sms.asyncio_detailed(client=client, body=body, idempotency_key="generated-1")
        assert sent.status_code == 200
        assert isinstance(sent.parsed, models.SendResponse)
        result = sent.parsed.data
        assert isinstance(result.message_id, uuid.UUID)
        assert isinstance(result.timestamp, datetime)
        assert result.status == "queued"
        assert result.estimated_cost == "0.67 NOK"
        assert sent.headers["X-RateLimit-Limit"] == "100"

        status = await get_message_status.asyncio(result.message_id, client=client)
        assert isinstance(status, models.MessageStatusResponse)
        assert status.data.message_id == result.message_id
        assert status.data.status == models.MessageStatusStatus.QUEUED
        [recipient] = status.data.recipients
        assert isinstance(recipient, models.RecipientStatus)
        assert recipient.recipient == "+4712345678" and recipient.country == "NO"
        assert recipient.delivery_status is None

        today = datetime.now(UTC).date()
        usage = await get_usage.asyncio(client=client, from_=today, to=today, group_by=models.GetUsageGroupBy.TAG)
        assert isinstance(usage, models.UsageResponse)
        assert usage.data.from_ == today and isinstance(usage.data.to, date)
        assert isinstance(usage.data.totals, models.UsageTotals)

        refused = await send_sms.asyncio_detailed(
            client=client, body=models.SendSmsSendRequest(tag="nope", recipients=["+4712345678"], message="x")
        )
        assert refused.status_code == 400
        assert isinstance(refused.parsed, models.ErrorResponse)
        assert refused.parsed.error.code == models.ErrorCode.INVALID_TAG
