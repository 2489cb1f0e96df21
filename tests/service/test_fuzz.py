"""A short schemathesis run over every API operation as a user and an admin (issue 9): no 5xx answer, and the
store holds exactly the jobs whose submit answered 201. bench/fuzz_api.py runs thousands of cases live."""

from __future__ import annotations

import schemathesis

from tests.service.api_helpers import total_jobs
from tests.service.conftest import ADMIN, ALICE
from tests.service.fuzzing import fuzz


def test_fuzzing_every_operation_finds_no_server_error_and_stores_nothing_for_a_failure(app, store):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    report = fuzz(schema, {"user": ALICE, "admin": ADMIN}, examples=12)
    assert report.cases > 300
    assert report.server_errors == []
    assert total_jobs(store) == report.created
    assert report.statuses[422] > 0  # the negative cases reached validation
