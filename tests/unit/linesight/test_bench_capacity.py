"""linesight/bench_capacity.py: one worker's figures for a whole frame and a tiled one, the summary (no timing asserted)."""

from __future__ import annotations

import json

import pytest

from linesight.bench_capacity import main, measure, summarise

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(("frame", "tile", "tiles"), [("synthetic", "", 1), ("0.02", "auto", 9)])
def test_a_worker_prints_frames_per_second_and_the_per_frame_costs(frame, tile, tiles, tmp_path, capsys):
    main(["--worker", "--engine", "torch", "--frame", frame, "--size", "64", "--tile", tile, "--batch", "2",
          "--duration-s", "0.01", "--cache-dir", str(tmp_path)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["fps"] > 0
    assert result["fps_per_cpu_s"] > 0
    assert result["tiles_per_frame"] == tiles
    assert result["description"].startswith("torch")
    assert result["jpeg_bytes"] > 0
    assert result["task_bytes"] > result["frame_px"][0] * result["frame_px"][1] * 3  # the decoded frame travels
    assert result["scored_bytes"] > result["task_bytes"]  # ... and again with its map and mask
    assert result["ingest_decode_ms"] > 0
    assert result["sink_record_ms"] > 0


def test_unknown_cases_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="'1080p'"):
        measure(["1080p"], cache_dir=tmp_path)


def test_summary_keeps_the_best_round_and_pairs_ratios_within_a_round():
    runs = [{"round": 1, "case": "a", "engine": "torch", "fps": 2.0}, {"round": 1, "case": "a", "engine": "auto",
             "fps": 4.0}, {"round": 2, "case": "a", "engine": "torch", "fps": 3.0},
            {"round": 2, "case": "a", "engine": "auto", "error": "compile failed"}]
    assert summarise(runs, ("torch", "auto")) == {"best_fps": {"a": {"torch": 3.0, "auto": 4.0}},
                                                  "auto_to_torch_fps_ratio_per_round": {"a": [2.0]}}
