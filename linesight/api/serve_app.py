"""The API as a Ray Serve application builder, for ``serve run`` / ``serve deploy`` / KubeRay's RayService.

``linesight serve`` deploys the same application from a driver process; this module is the declarative
path: Serve imports ``linesight.api.serve_app:build_app``, calls it with the ``args`` of the Serve config
(or the ``key=value`` pairs of ``serve run``) and deploys what it returns. Settings come from the
``LINESIGHT_*`` environment of the Ray nodes; ``args`` may override any setting by its field name.
The application never runs the inspection stream (that is ``linesight run``, one driver per cluster):
``/healthz`` reports the stream when one runs on the same Ray cluster.

    serve run linesight.api.serve_app:build_app api_token=s3cret
    serve deploy deploy/kubernetes/serve-config.yaml

An API token is required here (``LINESIGHT_API_TOKEN`` or ``api_token=``): a generated one would be
printed in a replica's log where no operator reads it.

>>> app = build_app({"api_token": "s3cret", "database_url": "sqlite://"})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from linesight.errors import ConfigError

__all__ = ["build_app", "settings_from_args"]


def settings_from_args(args: Mapping[str, Any] | None):
    """Settings from the environment plus ``args`` (field names; unknown names are a ConfigError naming them)."""
    from linesight.settings import Settings, load_settings

    overrides = dict(args or {})
    unknown = sorted(set(overrides) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(
            f"unknown setting(s) in the Serve application args: {unknown}; use field names of linesight/settings.py"
        )
    return load_settings(**overrides)


def build_app(args: Mapping[str, Any] | None = None) -> Any:
    """Serve application builder: the API ingress bound to the Inspector deployment (no stream).

    Raises :class:`ConfigError` when no API token is configured or an arg is not a setting.
    """
    from linesight.api.auth import resolve_api_token
    from linesight.api.deployment import build_application

    settings = settings_from_args(args)
    token, generated = resolve_api_token(settings.api_token)
    if generated:
        raise ConfigError(
            "the Serve application needs an API token for its write endpoints: set LINESIGHT_API_TOKEN on the Ray "
            "nodes (a Kubernetes Secret) or pass api_token in the application args"
        )
    return build_application(
        settings, token=token, bootstrap_servers=settings.kafka_bootstrap_servers, expect_stream=False
    )
