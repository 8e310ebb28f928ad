"""Moved to :mod:`model.overlay` (the one renderer); re-exported here until every caller imports it from there."""

from model.overlay import encode_png, heat_rgba, render_overlay

__all__ = ["render_overlay", "heat_rgba", "encode_png"]
