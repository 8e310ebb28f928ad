"""The stream with LLM verdicts on: real Tansu, real ray.init, SQLite, a tiny LLM folder via settings.

The tiny Llama always answers "No, there is no anomaly in the image." (trained in
tests/unit/pipeline/stream/test_verdicts.py): normal frames get an "llm" verdict, flagged ones keep the
template with a rejection note. Alerts go out before any verdict is written.
"""

from __future__ import annotations

import pytest

from tests.integration.pipeline.test_stream import _prepare, _publish, _repository, _settings, _wait_rows
from tests.unit.pipeline.stream.test_verdicts import NO_ANSWER, answering_llm, save_llm

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def encoder():
    from model.encoders import build_encoder

    return build_encoder("efficientnet-lite0")


def test_flagged_rows_get_llm_verdicts_or_rejections_after_their_alerts(broker, ray_session, encoder, tmp_path):
    import ray

    from pipeline.stream.job import Pipeline, wait_for

    llm_folder = save_llm(answering_llm(), tmp_path / "tiny-llm")
    settings = _settings(
        f"sqlite:///{tmp_path / 'l.db'}", tmp_path, llm_verdicts=True, llm_path=llm_folder,
        verdict_sample_normal=1.0, verdict_queue_size=256, verdict_drain_s=30.0,
    )
    _prepare(settings, broker, encoder)
    manifest = _publish(settings, broker, 16, seed=3)
    repository = _repository(settings)

    def done() -> list:
        rows = list(repository.iter_history())
        return [r for r in rows if r.verdict_source == "llm" or r.verdict_note is not None]

    with Pipeline(settings, broker.bootstrap_servers) as pipeline:
        _wait_rows(repository, len(manifest))
        assert wait_for(lambda: len(done()) == len(manifest), 90), f"{len(done())} of {len(manifest)} verdicts"

        def reported() -> int:
            snapshot = ray.get(pipeline.monitor.snapshot.remote())
            return snapshot["verdicts_written"] + snapshot["verdicts_rejected"]

        assert wait_for(lambda: reported() == len(manifest), 10), f"the monitor saw {reported()} verdicts"
        stats = pipeline.stop()

    rows = list(repository.iter_history())
    flagged = [r for r in rows if r.is_anomalous]
    normal = [r for r in rows if not r.is_anomalous]
    assert flagged, "the synthetic line should give flagged frames"
    assert normal, "the synthetic line should give normal frames"
    for row in flagged:  # the tiny LLM says "No": a contradiction, the template stands
        assert (row.verdict_source, row.verdict_note) == ("template", f"llm contradicted: {NO_ANSWER!r}")
        assert row.verdict.startswith("Yes, there")
    for row in normal:
        assert (row.verdict_source, row.verdict) == ("llm", NO_ANSWER)
    verdicts = stats["verdicts"]
    assert (verdicts["verdicts_rejected"], verdicts["verdicts_written"]) == (len(flagged), len(normal))
    assert (verdicts["verdict_skipped"], verdicts["verdicts_failed"], verdicts["verdict_backlog"]) == (0, 0, 0)
    written_at = {entry["frame_id"]: entry["written_at"] for entry in verdicts["recent"]}
    assert set(written_at) == {r.frame_id for r in rows}
    for row in flagged:  # the alert was sent (and marked) before the verdict was written
        assert row.alert_sent_at is not None
        assert row.alert_sent_at <= written_at[row.frame_id]
