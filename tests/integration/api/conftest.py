"""The unit API fixtures (settings, repository, app, client, auth, encoder), reused on real services."""

from tests.unit.api.conftest import app, auth, client, encoder, repository, settings  # noqa: F401
