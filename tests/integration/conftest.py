"""Real services for integration tests: the Tansu broker, PostgreSQL, SQLite files and a local Ray.

- ``broker``: one embedded Tansu broker for the session (``.bootstrap_servers``).
- ``postgres_url``: a fresh PostgreSQL database per test module, dropped afterwards. The server is
  the one on this machine (127.0.0.1:5432, trust auth); ``LINESIGHT_TEST_POSTGRES`` overrides it.
  If no server answers, the tests that need it fail (they are not skipped silently).
- ``sqlite_url``: a fresh SQLite file per test.
- ``ray_session``: ``ray.init(num_cpus=2)`` once per session (:func:`start_local_ray`; a test that needs
  another Ray, such as the multi-node test, shuts it down and starts it again with that function).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

ADMIN_POSTGRES_URL = os.environ.get(
    "LINESIGHT_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def broker() -> Iterator[object]:
    from connectors.tansu import EmbeddedBroker

    with EmbeddedBroker() as running:
        yield running


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    import sqlalchemy as sa

    name = f"linesight_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(ADMIN_POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = ADMIN_POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'linesight.db'}"


def start_local_ray() -> None:
    """The integration tests' local Ray: 2 CPUs, no dashboard, actor logs kept out of the test output."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    start_local_ray()
    try:
        yield None
    finally:
        ray.shutdown()
