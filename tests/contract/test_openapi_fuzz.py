"""schemathesis over the ingest's own OpenAPI document: every operation, with generated
valid and invalid requests, against the app served in this process on the real Kafka and
store. No answer is a 5xx, and every answer conforms to the document."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy
from schemathesis import checks
from schemathesis.generation.case import Case
from schemathesis.specs.openapi import checks as openapi_checks

from services.core.settings import Settings
from services.ingest.app import create_app
from tests.contract.conftest import ADMIN_TOKEN, Tenant, TenantFactory
from tests.integration.processes import free_port

pytestmark = pytest.mark.integration

EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]


@pytest.fixture
def served(ingest_settings: Settings) -> Iterator[tuple[str, dict[str, object]]]:
    """The ingest app served by uvicorn on a thread of this process; its URL and OpenAPI."""
    app = create_app(ingest_settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "the ingest stopped"
        assert time.monotonic() < deadline, "the ingest did not start"
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}", app.openapi()
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
async def tenant(tenants: TenantFactory) -> Tenant:
    return await tenants.make()


def test_no_operation_answers_5xx_or_off_the_schema(
    served: tuple[str, dict[str, object]], tenant: Tenant
) -> None:
    base_url, document = served
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) > 20
    for operation in operations:
        # A real key, so that generated requests get past authentication to the parsers.
        token = ADMIN_TOKEN if operation.path.startswith("/admin/") else tenant.api_key
        _fuzz(operation.as_strategy(), base_url, {"Authorization": f"Bearer {token}"})


def _fuzz(cases: SearchStrategy[Case], base_url: str, headers: dict[str, str]) -> None:  # type: ignore[type-arg]
    @EXAMPLES
    @given(case=cases)
    def call(case: Case) -> None:  # type: ignore[type-arg]
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS)

    call()
