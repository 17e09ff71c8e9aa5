"""schemathesis over each of the ingest's OpenAPI documents (the public listener's and the
admin listener's): every operation, with generated valid and invalid requests, against the
app served in this process on the real Kafka and store. No answer is a 5xx, and every
answer conforms to the document."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy
from schemathesis import checks
from schemathesis.generation.case import Case
from schemathesis.specs.openapi import checks as openapi_checks

from services.core.settings import Settings
from services.ingest.app import create_admin_app, create_app
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


# Each listener's app with its own document, and how many operations that document has
# at least.
LISTENERS = {"public": (create_app, 20), "admin": (create_admin_app, 5)}


@pytest.fixture(params=LISTENERS)
def listener(request: pytest.FixtureRequest) -> tuple[Callable[[Settings], FastAPI], int]:
    return LISTENERS[request.param]


@pytest.fixture
def served(
    ingest_settings: Settings, listener: tuple[Callable[[Settings], FastAPI], int]
) -> Iterator[tuple[str, dict[str, object]]]:
    """The listener's app served by uvicorn on a thread of this process; its URL and
    OpenAPI."""
    app = listener[0](ingest_settings)
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
    served: tuple[str, dict[str, object]],
    listener: tuple[Callable[[Settings], FastAPI], int],
    tenant: Tenant,
) -> None:
    base_url, document = served
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) > listener[1]
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
