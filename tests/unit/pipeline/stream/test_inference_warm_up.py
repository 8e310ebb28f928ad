"""InferenceWorker.warm_up: the active banks are loaded before frames come; a bad one is logged, not raised."""

from __future__ import annotations

import torch

from model.bank import MemoryBank
from model.calibration import choose_threshold
from pipeline.stream.inference import InferenceWorker
from pipeline.stream.messages import BankRef


def test_warm_up_loads_the_banks_and_skips_one_that_does_not_load(tmp_path, caplog):
    worker = InferenceWorker()
    bank = MemoryBank([torch.randn(20, c) for c in worker.detector.encoder.stage_channels], product_class="washer",
                      version=3, shots=1, encoder_name=worker.encoder_name, image_size_px=224,
                      calibration=choose_threshold([0.1], [0.5]))
    path = tmp_path / "washer-v3.safetensors"
    sha = bank.save(path)
    good = BankRef("washer", 3, str(path), sha)
    missing = BankRef("brick", 1, str(tmp_path / "nowhere.safetensors"))

    assert worker.warm_up([good, missing]) == 1
    assert worker.banks.keys() == ["washer@v3"]
    assert worker.banks.loads == 1
    assert "brick@v1 did not load" in caplog.text
    worker.banks.get(good)  # the first frame finds it loaded
    assert worker.banks.loads == 1
