"""The alert message: fields, links, JSON round trip, the terminal line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from connectors.alerts import Alert, alert_links, alert_to_json_line, format_alert
from connectors.exceptions import ConnectorError

T0 = datetime(2024, 5, 1, 8, 15, 0, tzinfo=UTC)


@dataclass
class Row:
    """What a stored inspection exposes."""

    id: int
    frame_id: str = "line-1-ab12-0000042"
    line_id: str = "line-1"
    camera_id: str = "cam-1"
    product_class: str = "washer"
    captured_at: datetime = T0
    scored_at: datetime = T0
    score: float = 0.734
    threshold: float = 0.52
    positions: tuple[str, ...] = ("top left", "center")
    region_count: int = 2
    verdict: str = "Yes: there are 2 anomalies, at the top left and center."
    bank_version: int = 3


def test_from_inspection_fills_ids_and_links():
    alert = Alert.from_inspection(Row(id=17), api_base_url="https://qa.example.com/")
    assert alert.alert_id == alert.frame_id == "line-1-ab12-0000042"
    assert alert.schema_version == 1
    assert alert.inspection_id == 17
    assert alert.positions == ["top left", "center"]
    assert alert.links == {
        "inspection": "https://qa.example.com/api/inspections/17",
        "overlay": "https://qa.example.com/api/inspections/17/overlay.png",
    }


def test_no_base_url_means_no_links():
    assert Alert.from_inspection(Row(id=1)).links == {}
    assert alert_links(None, 5) == {}


def test_json_round_trip_is_lossless():
    alert = Alert.from_inspection(Row(id=9), api_base_url="http://api:8000")
    assert Alert.from_json_bytes(alert.to_json_bytes()) == alert
    assert Alert.model_validate_json(alert_to_json_line(alert)) == alert


def test_not_an_alert_is_a_connector_error():
    with pytest.raises(ConnectorError, match="not a linesight alert"):
        Alert.from_json_bytes(b'{"frame_id": "x"}')


def test_format_alert_is_one_readable_line():
    line = format_alert(Alert.from_inspection(Row(id=4), api_base_url="http://api"))
    assert "\n" not in line
    for part in ("line-1/cam-1", "washer@v3", "0.734 > 0.520", "top left, center", "2 regions",
                 "line-1-ab12-0000042", "http://api/api/inspections/4"):
        assert part in line
