"""linesight/bench_engine.py: one measurement worker's output, the backend rows, the table (no timing asserted)."""

from __future__ import annotations

import json

import pytest

from linesight.bench_engine import _table, backends_for_this_host, main
from model.engine import available_engines, detect_cpu_features

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_rows_cover_torch_and_every_installed_engine():
    rows = backends_for_this_host(threads=2)
    engines = {(engine, precision) for _, engine, precision, _ in rows}
    assert {label for label, *_ in rows} >= {"torch-1t fp32", "torch-2t fp32"}
    for engine in available_engines() - {"torch"}:
        assert (engine, "fp32") in engines
    assert (("openvino", "bf16") in engines) == ("openvino" in available_engines() and detect_cpu_features().has_bf16)


@pytest.mark.parametrize("engine", sorted(available_engines()))
def test_a_worker_prints_frames_per_second_per_batch(engine, tmp_path, capsys):
    main(["--worker", "--engine", engine, "--precision", "fp32", "--threads", "1", "--size", "64",
          "--batches", "1,2", "--duration-s", "0.01", "--cache-dir", str(tmp_path)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["fps"]) == {"1", "2"}
    assert all(value > 0 for value in result["fps"].values())
    assert result["worst_patch_cosine"] >= 0.999
    assert result["description"].startswith(f"{engine} fp32")


def test_a_bare_worker_times_encoder_bank_and_map(tmp_path, capsys):
    main(["--bare-worker", "--engine", "torch", "--precision", "fp32", "--threads", "1", "--size", "64",
          "--batches", "1,2", "--duration-s", "0.01", "--cache-dir", str(tmp_path)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["fps"]) == {"1", "2"}
    assert all(value > 0 for value in result["fps"].values())
    assert result["description"].startswith("torch")


def test_table_lists_every_backend_and_the_auto_choice():
    result = {
        "image_size_px": 224, "cpu": "avx512_bf16, no amx",
        "fps": {"torch-1t fp32": {"1": 20.0, "8": 12.0}, "openvino-2t fp32": {"1": 30.0, "8": 40.0}},
        "worst_patch_cosine": {"openvino-2t fp32": 1.0},
        "auto": {"description": "openvino fp32 (cpu: avx512_bf16, no amx)"}, "engine_to_torch_ratio": 2.0,
    }
    table = _table(result)
    assert "torch-1t fp32" in table
    assert "openvino-2t fp32" in table
    assert "auto: openvino fp32" in table
    assert "40.0" in table
