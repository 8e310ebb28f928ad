"""The API's TestClient tests again, on PostgreSQL: filters, pagination, PNGs, banks, auth, JSON errors.

The test functions are the unit tests' (imported); only the database differs. Tables are
emptied before each test (identities restarted) in one PostgreSQL database per module.
"""

from __future__ import annotations

import pytest

from tests.unit.api.test_auth_errors import (  # noqa: F401 - collected here on PostgreSQL
    test_every_error_is_json_naming_the_bad_value,
    test_write_endpoints_refuse_a_missing_or_wrong_token,
)
from tests.unit.api.test_banks_inspect import (  # noqa: F401
    app,  # the app with the encoder-backed inspector
    test_bank_upload_is_validated_before_building,
    test_build_activate_and_inspect_through_the_api,
)
from tests.unit.api.test_inspections import (  # noqa: F401
    test_cursor_pagination_walks_every_row_once,
    test_filters_select_exactly_the_matching_rows,
    test_one_inspection_has_every_field_and_links,
    test_overlay_and_mask_are_pngs_of_the_stored_result,
    test_summary_counts_per_class,
    test_unknown_inspection_is_a_json_404_naming_the_id,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def database_url(postgres_url) -> str:
    """The module's PostgreSQL database, migrated and emptied."""
    import sqlalchemy as sa

    from storage.db import Database

    database = Database(postgres_url)
    database.migrate()
    with database.transaction(write=True) as connection:
        connection.execute(sa.text("TRUNCATE chat_turns, masks, inspections, banks RESTART IDENTITY CASCADE"))
    database.dispose()
    return postgres_url


def test_the_database_is_postgresql(repository):
    assert repository.database.dialect_name == "postgresql"
