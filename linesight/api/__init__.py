"""linesight's HTTP API and dashboard: :func:`linesight.api.app.create_app`, served by Ray Serve
(:mod:`linesight.api.deployment`) with ``linesight serve``. See docs/api.md."""
