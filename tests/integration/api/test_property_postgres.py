"""The schemathesis run of tests/integration/api/test_property.py on PostgreSQL (NUL bytes, big ints, odd text)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_no_generated_request_answers_500_on_postgresql(postgres_url, tmp_path):
    from tests.integration.api.test_property import check_no_server_errors

    check_no_server_errors(postgres_url, tmp_path, examples_per_operation=15)
