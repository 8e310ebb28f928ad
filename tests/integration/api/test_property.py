"""Property-based: schemathesis generates valid and invalid requests from the app's own OpenAPI spec; none may answer 500.

Hypothesis drives each operation's schemathesis strategy directly (schemathesis' pytest plugin
does not support pytest 9's fixtures). Requests carry the token, so generated input reaches past
auth, against a seeded SQLite database; examples per operation are bounded (about a minute on a busy
2-core host: an integration test, so the unit tests stay fast).
"""

from __future__ import annotations

import itertools

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.unit.api.helpers import TOKEN, seed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 30  # per operation and mode (valid / invalid input)


def _app(database_url, folder):
    from linesight.api.app import create_app
    from linesight.settings import load_settings
    from storage.db import Database
    from storage.repository import Repository
    from tests.unit.api.test_chat import _GroundedDialogue

    app_settings = load_settings(database_url=database_url, data_dir=folder,
                                 max_frame_bytes=64 * 1024)
    database = Database(app_settings.database_url)
    database.migrate()
    repository = Repository(database)
    seed(repository, 12)
    repository.register_bank("brick", 1, str(folder / "missing.safetensors"), "0" * 64, 2, "efficientnet-lite0",
                             {"threshold": 0.5}, activate=True)
    return create_app(app_settings, token=TOKEN, repository=repository, dialogue=_GroundedDialogue(repository),
                      stream_snapshot=lambda: None)


def test_no_generated_request_answers_500(tmp_path):
    check_no_server_errors(f"sqlite:///{tmp_path / 'p.db'}", tmp_path)


def check_no_server_errors(database_url: str, folder, examples_per_operation: int = EXAMPLES_PER_OPERATION) -> None:
    """Valid and invalid generated requests for every operation; fails on any 5xx or non-JSON error."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", _app(database_url, folder))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    tried: dict[str, int] = {}

    for operation, mode in itertools.product(operations, GenerationMode):
        label = f"{operation.method.upper()} {operation.path}"
        try:
            _checker(operation, mode, label, tried, examples_per_operation)()
        except Unsatisfiable:  # no parameter to break: invalid input cannot be made for this operation
            assert mode is GenerationMode.NEGATIVE, label
    assert all(count >= 1 for count in tried.values())
    assert len(tried) == len(operations)


def _checker(operation, mode, label: str, tried: dict[str, int], examples: int):
    @given(case=operation.as_strategy(mode))
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
        response = case.call()
        case.validate_response(response, checks=(not_a_server_error,))
        if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
            assert "error" in response.json(), (label, response.text)
        tried[label] = tried.get(label, 0) + 1

    return check
