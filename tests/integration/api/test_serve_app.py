"""The Serve application builder (``serve run linesight.api.serve_app:build_app``) on a real Ray Serve."""

from __future__ import annotations

import pytest
import requests

pytestmark = pytest.mark.integration


def test_builder_app_serves_health_and_guards_writes(ray_session, tmp_path):
    from ray import serve

    from connectors.tansu import free_port
    from linesight.api.serve_app import build_app
    from storage.db import Database

    url = f"sqlite:///{tmp_path / 'builder.db'}"
    database = Database(url)
    database.migrate()
    database.dispose()
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        # the args of a Serve config's application: setting field names, as strings
        serve.run(build_app({"api_token": "builder-token", "database_url": url, "data_dir": str(tmp_path),
                             "torch_threads": "1"}), name="linesight-builder", route_prefix="/")
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
        assert health.json()["parts"]["database"]["status"] == "ok"
        assert health.json()["parts"]["broker"]["status"] == "skipped"  # no Kafka configured, no stream in this app
        denied = requests.post(f"http://127.0.0.1:{port}/api/banks/brick/1/activate", timeout=30)
        assert denied.status_code == 401
    finally:
        serve.shutdown()
