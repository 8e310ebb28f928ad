"""Bank files are checked on load: registered sha256, threshold range, row limit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.bank import DEFAULT_MAX_BANK_ROWS, MemoryBank, file_sha256
from model.exceptions import BankFileError
from tests.unit.model.test_bank import _bank, _meta, _rewrite


def test_the_registered_sha256_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "v1.safetensors"
    recorded = _bank().save(path)
    assert MemoryBank.load(path, expected_sha256=recorded).key == "washer@v3"
    assert MemoryBank.load(path, expected_sha256=recorded.upper()).key == "washer@v3"
    _bank(rows=14).save(path)  # same name, other content: replaced behind the registry's back
    actual = file_sha256(path)
    with pytest.raises(BankFileError) as info:
        MemoryBank.load(path, expected_sha256=recorded)
    message = str(info.value)
    assert str(path) in message
    assert recorded in message
    assert actual in message


def test_a_flipped_byte_is_caught_by_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "v1.safetensors"
    recorded = _bank().save(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one bit of the last feature: still a valid safetensors file
    path.write_bytes(bytes(data))
    MemoryBank.load(path)  # without the hash it loads: the check is what catches it
    with pytest.raises(BankFileError, match="sha256 is"):
        MemoryBank.load(path, expected_sha256=recorded)


@pytest.mark.parametrize("threshold", [1e30, -1.0, 0.0, 1.5, float("inf"), float("nan")])
def test_thresholds_outside_0_1_are_refused_naming_the_value(tmp_path: Path, threshold: float) -> None:
    path = tmp_path / "v1.safetensors"
    _bank().save(path)
    meta = _meta(path)
    meta["calibration"]["threshold"] = threshold
    _rewrite(path, meta=meta)
    with pytest.raises(BankFileError) as info:
        MemoryBank.load(path)
    assert str(path) in str(info.value)
    assert repr(threshold) in str(info.value) or str(threshold) in str(info.value)


def test_threshold_of_one_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "v1.safetensors"
    _bank().save(path)
    meta = _meta(path)
    meta["calibration"]["threshold"] = 1.0
    _rewrite(path, meta=meta)
    assert MemoryBank.load(path).calibration.threshold == 1.0


def test_row_limit_is_checked_before_the_tensors_are_read(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "v1.safetensors"
    recorded = _bank(rows=40).save(path)
    assert MemoryBank.load(path, max_rows=40).stage_features[0].shape[0] == 40
    import safetensors.torch

    loads: list[int] = []
    real_load = safetensors.torch.load
    monkeypatch.setattr(safetensors.torch, "load", lambda data: loads.append(len(data)) or real_load(data))
    with pytest.raises(BankFileError) as info:
        MemoryBank.load(path, max_rows=39, expected_sha256=recorded)
    assert "'stage_0' has 40 rows; the limit is 39 (max_bank_rows)" in str(info.value)
    assert loads == []  # refused from the header alone
    MemoryBank.load(path, max_rows=40)
    assert loads == [path.stat().st_size]


def test_hostile_headers_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "h.safetensors"
    for data, message in (
        (b"\x05", "no header"),
        ((10**9).to_bytes(8, "little") + b"{}", "header length 1000000000"),
        ((3).to_bytes(8, "little") + b"[1]", "not a JSON object"),
        ((4).to_bytes(8, "little") + b"{no}", "not JSON"),
    ):
        path.write_bytes(data)
        with pytest.raises(BankFileError, match=message):
            MemoryBank.load(path)


def test_default_row_limit_admits_the_largest_real_build() -> None:
    # 16 shots x 4 rotations x 56x56 patches (EfficientNet-Lite0's first stage at 448 px)
    assert 16 * 4 * 56 * 56 <= DEFAULT_MAX_BANK_ROWS
    from linesight.settings import Settings

    assert Settings.model_fields["max_bank_rows"].default == DEFAULT_MAX_BANK_ROWS


def test_inference_worker_checks_the_bank_ref_hash_and_row_limit(tmp_path: Path) -> None:
    """The stream's loader (InferenceWorker's bank cache) checks the BankRef's sha256 and max_bank_rows."""
    from model.calibration import choose_threshold
    from pipeline.stream.inference import InferenceWorker
    from pipeline.stream.messages import BankRef

    worker = InferenceWorker(max_bank_rows=30)

    def save(rows: int, version: int) -> tuple[str, str]:
        bank = MemoryBank([torch.randn(rows, c) for c in (40, 80, 112, 192)], product_class="washer",
                          version=version, shots=1, encoder_name=worker.encoder_name, image_size_px=224,
                          calibration=choose_threshold([0.1], [0.5]))
        path = tmp_path / f"v{version}.safetensors"
        return str(path), bank.save(path)

    path1, sha1 = save(20, 1)
    assert worker.banks.get(BankRef("washer", 1, path1, sha1)).key == "washer@v1"
    path2, _ = save(20, 2)
    with pytest.raises(BankFileError, match=sha1):
        worker.banks.get(BankRef("washer", 2, path2, sha1))  # wrong recorded hash
    path3, sha3 = save(31, 3)
    with pytest.raises(BankFileError, match="31 rows; the limit is 30"):
        worker.banks.get(BankRef("washer", 3, path3, sha3))
    assert worker.banks.keys() == ["washer@v1"]
