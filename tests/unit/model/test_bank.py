"""MemoryBank: safetensors round trip, dynamic buffers, and every BankFileError case."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model.bank import METADATA_KEY, MemoryBank
from model.calibration import choose_threshold
from model.exceptions import BankFileError, ModelError


def _bank(rows: int = 12, version: int = 3) -> MemoryBank:
    generator = torch.Generator().manual_seed(rows)
    return MemoryBank(
        [torch.randn(rows, 4, generator=generator), torch.randn(rows // 2, 6, generator=generator)],
        product_class="washer",
        version=version,
        shots=2,
        encoder_name="tiny-encoder",
        image_size_px=64,
        calibration=choose_threshold([0.1, 0.2], [0.5, 0.7]),
    )


def _rewrite(path: Path, tensors: dict[str, torch.Tensor] | None = None, meta: dict | str | None = None) -> None:
    """Write a bank file with edited tensors and/or metadata (a tampered file)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    loaded = load_file(str(path))
    if tensors is not None:
        loaded = tensors
    if meta is not None:
        header = {METADATA_KEY: meta if isinstance(meta, str) else json.dumps(meta)}
    save_file(loaded, str(path), metadata=header)


def _meta(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return json.loads(handle.metadata()[METADATA_KEY])


def test_rows_are_normalised_and_round_trip(tmp_path: Path) -> None:
    bank = _bank()
    for features in bank.stage_features:
        torch.testing.assert_close(features.norm(dim=1), torch.ones(features.shape[0]))
    path = tmp_path / "washer.safetensors"
    digest = bank.save(path)
    assert len(digest) == 64
    assert digest == bank.save(tmp_path / "again.safetensors")
    loaded = MemoryBank.load(path, expected_encoder="tiny-encoder")
    assert (loaded.product_class, loaded.version, loaded.shots, loaded.image_size_px) == ("washer", 3, 2, 64)
    assert loaded.stage_channels == (4, 6)
    assert loaded.calibration == bank.calibration
    assert loaded.created_at == bank.created_at
    assert loaded.key == "washer@v3"
    for a, b in zip(bank.stage_features, loaded.stage_features, strict=True):
        assert torch.equal(a, b)
    assert not path.read_bytes().startswith(b"\x80")  # not a pickle


def test_buffers_take_their_size_from_the_state_dict() -> None:
    small, large = _bank(rows=6), _bank(rows=20)
    small.load_state_dict(large.state_dict())
    assert small.stage_features[0].shape == (20, 4)
    assert torch.equal(small.stage_features[1], large.stage_features[1])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BankFileError, match=r"nope\.safetensors.*no such file"):
        MemoryBank.load(tmp_path / "nope.safetensors")


def test_pickle_renamed_to_safetensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"stage_0": [1.0, 2.0]}))
    with pytest.raises(BankFileError, match=r"evil\.safetensors.*not a readable safetensors"):
        MemoryBank.load(path)


def test_torch_save_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "torch.safetensors"
    torch.save({"stage_0": torch.zeros(2, 2)}, path)
    with pytest.raises(BankFileError, match="not a readable safetensors"):
        MemoryBank.load(path)


def test_safetensors_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    save_file({"stage_0": torch.zeros(2, 4)}, str(path))
    with pytest.raises(BankFileError, match="no 'linesight' metadata"):
        MemoryBank.load(path)


def test_wrong_encoder(tmp_path: Path) -> None:
    path = tmp_path / "b.safetensors"
    _bank().save(path)
    with pytest.raises(BankFileError, match="'tiny-encoder'.*'efficientnet-lite0'"):
        MemoryBank.load(path, expected_encoder="efficientnet-lite0")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(stage_channels=[4, 7]), r"'stage_1' has shape \(6, 6\), metadata says \(N, 7\)"),
        (lambda m: m.update(stage_channels=[4, 6, 8]), "missing tensor 'stage_2'"),
        (lambda m: m.update(stage_channels=[4]), r"unexpected tensors \['stage_1'\]"),
        (lambda m: m.pop("calibration"), "missing 'calibration'"),
        (lambda m: m.update(version="3"), "'version' has the wrong type"),
        (lambda m: m.update(format_version=99), "format version 99"),
        (lambda m: m.update(shots=0), "shots=0"),
        (lambda m: m["calibration"].pop("threshold"), "threshold"),
        (lambda m: m["calibration"].update(threshold=None), "bad value"),
    ],
)
def test_tampered_metadata(tmp_path: Path, edit, message: str) -> None:
    path = tmp_path / "t.safetensors"
    _bank().save(path)
    meta = _meta(path)
    edit(meta)
    _rewrite(path, meta=meta)
    with pytest.raises(BankFileError, match=message):
        MemoryBank.load(path)


def test_metadata_not_json(tmp_path: Path) -> None:
    path = tmp_path / "j.safetensors"
    _bank().save(path)
    _rewrite(path, meta="{not json")
    with pytest.raises(BankFileError, match="not valid JSON"):
        MemoryBank.load(path)


def test_nan_features(tmp_path: Path) -> None:
    path = tmp_path / "n.safetensors"
    bank = _bank()
    bank.save(path)
    tensors = load_file(str(path))
    tensors["stage_0"][3, 1] = float("nan")
    _rewrite(path, tensors=tensors)
    with pytest.raises(BankFileError, match="'stage_0' contains NaN"):
        MemoryBank.load(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    _bank().save(path)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(BankFileError, match="cut.safetensors"):
        MemoryBank.load(path)


def _tiled_bank() -> MemoryBank:
    rows = torch.randn(18, 4, generator=torch.Generator().manual_seed(1))
    return MemoryBank(
        [rows], product_class="wall", version=1, shots=1, encoder_name="tiny-encoder", image_size_px=64,
        calibration=choose_threshold([0.1, 0.2], [0.5, 0.7]), stages=(2,), tile_px=64, tile_overlap=0.125,
        frame_size=(64, 160), tile_ids=[torch.arange(3, dtype=torch.int32).repeat_interleave(6)],
    )


def test_a_tiled_bank_round_trips_with_its_tiling(tmp_path: Path):
    bank = _tiled_bank()
    bank.save(tmp_path / "wall.safetensors")
    loaded = MemoryBank.load(tmp_path / "wall.safetensors")
    assert (loaded.stages, loaded.tile_px, loaded.tile_overlap, loaded.frame_size) == ((2,), 64, 0.125, (64, 160))
    assert torch.equal(loaded.tile_ids[0], bank.tile_ids[0])
    assert loaded.patch_bank().grid == (1, 3)


def test_a_tiled_bank_without_its_tile_ids_is_refused(tmp_path: Path):
    path = tmp_path / "wall.safetensors"
    _tiled_bank().save(path)
    _rewrite(path, tensors={"stage_0": load_file(str(path))["stage_0"]})
    with pytest.raises(BankFileError, match="tiles_0"):
        MemoryBank.load(path)


def test_a_format_1_bank_still_loads_with_all_stages_untiled(tmp_path: Path):
    path = tmp_path / "old.safetensors"
    _bank().save(path)
    meta = _meta(path)
    meta["format_version"] = 1
    for key in ("stages", "tile_px", "tile_overlap", "frame_size"):
        meta.pop(key)
    _rewrite(path, meta=meta)
    loaded = MemoryBank.load(path)
    assert loaded.stages == (0, 1)
    assert loaded.tile_px is None
    assert loaded.tile_ids is None


def _residual_bank(references: torch.Tensor | None = None) -> MemoryBank:
    bank = _tiled_bank()
    pixels = torch.randint(0, 256, (2, 64, 160), dtype=torch.uint8) if references is None else references
    return MemoryBank(
        list(bank.stage_features), product_class="wall", version=1, shots=2, encoder_name="tiny-encoder",
        image_size_px=64, calibration=bank.calibration, stages=(2,), tile_px=64, tile_overlap=0.125,
        frame_size=(64, 160), tile_ids=list(bank.tile_ids), references=pixels, residual_weight=0.01,
        reference_warps=torch.eye(2, 3).repeat(pixels.shape[0], 1, 1),
    )


def test_a_bank_with_pixel_references_round_trips_them(tmp_path: Path):
    bank = _residual_bank()
    bank.save(tmp_path / "wall.safetensors")
    loaded = MemoryBank.load(tmp_path / "wall.safetensors")
    assert torch.equal(loaded.references, bank.references)
    assert torch.equal(loaded.reference_warps, bank.reference_warps)
    assert loaded.residual_weight == 0.01
    assert loaded.reference_set().frame_size == (64, 160)
    assert _meta(tmp_path / "wall.safetensors")["format_version"] == 3


def test_references_that_do_not_fit_the_frame_are_refused():
    with pytest.raises(ModelError, match=r"references must be \(k, H, W\) uint8.*\(64, 160\)"):
        _residual_bank(torch.zeros(2, 64, 100, dtype=torch.uint8))
    with pytest.raises(ModelError, match="go together"):
        MemoryBank([torch.randn(4, 4)], product_class="wall", version=1, shots=1, encoder_name="tiny", image_size_px=64,
                   calibration=choose_threshold([0.1], [0.5]), residual_weight=0.5)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda meta, tensors: meta.pop("residual_weight"), "go together"),
    (lambda meta, tensors: meta.update(residual_weight="heavy"), "'residual_weight' must be a number, got 'heavy'"),
    (lambda meta, tensors: meta.update(residual_weight=-1.0), "residual_weight must be a positive number, got -1.0"),
    (lambda meta, tensors: tensors.update(references=torch.zeros(2, 10, 10, dtype=torch.uint8)), "references must be"),
    (lambda meta, tensors: tensors.pop("reference_warps"), "go together"),
    (lambda meta, tensors: tensors.update(reference_warps=torch.full((2, 2, 3), float("nan"))), r"\(2, 2, 3\) finite"),
])
def test_tampered_pixel_references_are_refused_naming_the_value(tmp_path: Path, edit, message: str):
    path = tmp_path / "wall.safetensors"
    _residual_bank().save(path)
    meta, tensors = _meta(path), load_file(str(path))
    edit(meta, tensors)
    _rewrite(path, tensors=tensors, meta=meta)
    with pytest.raises(BankFileError, match=message):
        MemoryBank.load(path)
