"""Property-based run of the live OpenAPI schema: no 5xx, and every response matches the documented schema.

Both schema-valid (positive) and schema-violating (negative) requests are generated for every operation,
with a fixed seed and a bounded number of examples so the run stays well under a minute.
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from api_support import LiveServer
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
OPERATIONS = [
    "POST /v1/search/text",
    "GET /v1/search/text",
    "POST /v1/search/image",
    "GET /v1/images/{image_id}",
    "GET /v1/images/{image_id}/thumbnail",
    "GET /v1/index",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "POST /v1/admin/reload",
    "GET /v1/images/{image_id}/view",
    "GET /v1/scenes",
    "GET /v1/scenes/{scene_id}",
    "GET /v1/scenes/{scene_id}/overview",
    "GET /v1/scenes/{scene_id}/original",
    "GET /v1/items/{image_id}/similar",
    "POST /v1/search/feedback",
    "GET /stac",
    "GET /stac/api",
    "GET /stac/conformance",
    "GET /stac/collections",
    "GET /stac/collections/{collection_id}",
    "GET /stac/collections/{collection_id}/items",
    "GET /stac/collections/{collection_id}/items/{item_id}",
    "GET /stac/search",
    "POST /stac/search",
    "POST /v1/detect",
    "POST /v1/searches",
    "GET /v1/searches",
    "GET /v1/searches/{search_id}",
    "PATCH /v1/searches/{search_id}",
    "DELETE /v1/searches/{search_id}",
    "GET /v1/searches/{search_id}/matches",
    "GET /v1/feeds/{token}.atom",
]


@pytest.fixture(scope="module")
def live_schema(server: LiveServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def test_schema_covers_every_operation(live_schema: schemathesis.BaseSchema) -> None:
    labels = {result.ok().label for result in live_schema.get_all_operations()}
    assert labels == set(OPERATIONS)


WITH_INPUT = [
    *OPERATIONS[:5], "GET /v1/items/{image_id}/similar", "POST /v1/search/feedback", "POST /v1/detect",
    "POST /v1/searches", "PATCH /v1/searches/{search_id}",
]
CASES = [(label, GenerationMode.POSITIVE) for label in OPERATIONS] + [
    (label, GenerationMode.NEGATIVE) for label in WITH_INPUT
]


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{label} {mode.value}" for label, mode in CASES])
def test_operation_conforms(live_schema: schemathesis.BaseSchema, label: str, mode: GenerationMode) -> None:
    operation = live_schema.find_operation_by_label(label)
    assert operation is not None

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=12,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    run()
