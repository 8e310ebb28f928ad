"""connectors.webhook against a real local HTTP server: delivery, retries with backoff, counted failures."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from connectors.alerts import Alert
from connectors.exceptions import ConnectorError, DeliveryError
from connectors.webhook import WebhookSink


def _alert(frame_id: str = "line-1-7") -> Alert:
    now = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    return Alert(frame_id=frame_id, line_id="line-1", camera_id="cam-1", product_class="brick", captured_at=now,
                 scored_at=now, score=0.9, threshold=0.5, positions=["top left"], region_count=1,
                 verdict="Yes: an anomaly at the top left.", bank_version=2, inspection_id=42)


@pytest.fixture
def receiver():
    """A local endpoint answering the queued statuses in order (then 200); records what it received."""
    state = {"statuses": [], "received": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state["received"].append((dict(self.headers), json.loads(body)))
            status = state["statuses"].pop(0) if state["statuses"] else 200
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


def test_alert_json_and_headers_are_posted(receiver):
    sink = WebhookSink(receiver["url"], bearer_token="s3cret")
    sink.send(_alert())
    sink.flush()
    headers, body = receiver["received"][0]
    assert body["alert_id"] == body["frame_id"] == "line-1-7"
    assert body["inspection_id"] == 42
    assert headers["X-Linesight-Alert-Id"] == "line-1-7"
    assert headers["Authorization"] == "Bearer s3cret"
    assert sink.stats.delivered == 1


def test_transient_failures_are_retried_with_exponential_backoff(receiver):
    receiver["statuses"] = [503, 429, 500]
    delays = []
    sink = WebhookSink(receiver["url"], max_attempts=4, backoff_s=0.1, max_backoff_s=0.3, sleep=delays.append)
    sink.send(_alert())
    sink.flush()
    assert delays == [0.1, 0.2, 0.3]  # doubled, capped at max_backoff_s
    assert len(receiver["received"]) == 4
    assert (sink.stats.delivered, sink.stats.retries, sink.stats.failed) == (1, 3, 0)


def test_a_final_failure_is_counted_and_raised_at_flush_never_dropped(receiver):
    receiver["statuses"] = [500, 500]
    sink = WebhookSink(receiver["url"], max_attempts=2, backoff_s=0.0, sleep=lambda _s: None)
    sink.send(_alert("a-1"))
    sink.send(_alert("a-2"))  # 200: the server answers 200 once its queue is empty
    with pytest.raises(DeliveryError, match=r"1 alert\(s\) were not delivered .*'a-1': HTTP 500"):
        sink.flush()
    assert (sink.stats.delivered, sink.stats.failed) == (1, 1)
    sink.flush()  # reported once


def test_a_client_error_is_not_retried(receiver):
    receiver["statuses"] = [400]
    sink = WebhookSink(receiver["url"], sleep=lambda _s: None)
    sink.send(_alert())
    with pytest.raises(DeliveryError, match="HTTP 400"):
        sink.flush()
    assert len(receiver["received"]) == 1


def test_an_unreachable_endpoint_fails_after_the_attempts():
    from connectors.tansu import free_port

    sink = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", max_attempts=3, timeout_s=1.0, sleep=lambda _s: None)
    sink.send(_alert())
    assert sink.stats.retries == 2
    with pytest.raises(DeliveryError, match="Connection"):
        sink.flush()


@pytest.mark.parametrize("url", ["", "ftp://host/x", "hooks.example.com", "http://"])
def test_bad_urls_are_refused_naming_them(url):
    with pytest.raises(ConnectorError, match="webhook URL"):
        WebhookSink(url)


def test_the_forwarder_delivers_in_the_background_and_drains_on_close(receiver):
    from connectors.webhook import WebhookForwarder

    seen = []
    forwarder = WebhookForwarder(WebhookSink(receiver["url"]), max_pending=10, on_change=lambda s: seen.append(s.delivered))
    for i in range(5):
        assert forwarder.put(_alert(f"line-1-{i}"))
    forwarder.close()
    assert [body["frame_id"] for _, body in receiver["received"]] == [f"line-1-{i}" for i in range(5)]
    assert forwarder.stats.delivered == 5
    assert seen[-1] == 5


def test_a_full_forwarder_queue_drops_counts_and_never_blocks(receiver, caplog):
    from connectors.webhook import WebhookForwarder

    gate = threading.Event()
    sink = WebhookSink(receiver["url"], sleep=lambda s: None)
    sink._post = lambda body, headers: (gate.wait(10), (False, None))[1]  # a stuck endpoint until the gate opens
    forwarder = WebhookForwarder(sink, max_pending=2)
    results = [forwarder.put(_alert(f"line-1-{i}")) for i in range(6)]  # 1 in flight + 2 queued at most
    assert results.count(False) >= 3
    assert forwarder.stats.dropped == results.count(False)
    assert "NOT forwarded" in caplog.text
    gate.set()
    forwarder.close()
    assert forwarder.stats.delivered == results.count(True)
