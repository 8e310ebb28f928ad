"""model/engine/export.py: the ONNX cache is reused, rebuilt on new weights, written atomically."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from model.encoders.efficientnet import EfficientNetLiteEncoder
from model.engine import ExportError, accelerate, cache_key, export_onnx, export_split_onnx, weights_hash
from model.engine.export import KEEP_VERSIONS

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_encoder(stage_blocks=(1, 2, 3, 4)) -> EfficientNetLiteEncoder:
    return EfficientNetLiteEncoder(pretrained=False, image_size_px=64, stage_blocks=stage_blocks)


def test_export_is_cached_and_reused(tmp_path):
    encoder = small_encoder()
    first = export_onnx(encoder, tmp_path)
    stamp = first.stat().st_mtime_ns
    again = export_onnx(small_encoder(), tmp_path)  # a new instance, same weights
    assert again == first
    assert again.stat().st_mtime_ns == stamp
    assert first.parent.name == cache_key(encoder)
    assert [p.name for p in tmp_path.iterdir()] == [first.parent.name]  # no temporary folder left behind


def test_the_precision_split_exports_two_graphs_in_an_entry_of_its_own(tmp_path):
    encoder = small_encoder()
    head, body = export_split_onnx(encoder, tmp_path)
    assert (head.name, body.name) == ("head.onnx", "body.onnx")
    assert head.parent == body.parent
    assert head.parent.name == cache_key(encoder, "split") != cache_key(encoder)
    assert export_split_onnx(small_encoder(), tmp_path) == (head, body)  # cached
    for _ in range(KEEP_VERSIONS + 1):  # more versions of the whole graph than are kept
        with torch.no_grad():
            encoder.blocks[0].project.conv.bias.add_(0.5)
        export_onnx(encoder, tmp_path)
    assert len([p for p in tmp_path.iterdir() if "split" not in p.name]) == KEEP_VERSIONS
    assert head.is_file()  # one variant's versions never evict the other's
    assert body.is_file()


def test_key_names_encoder_size_stages_and_weights():
    key = cache_key(small_encoder())
    assert key.startswith("efficientnet-lite0-64px-b1-2-3-4c24-24-40-40-")
    assert key.endswith(weights_hash(small_encoder()))
    assert cache_key(small_encoder((1, 2, 3, 5))) != key  # another stage set
    assert cache_key(EfficientNetLiteEncoder(pretrained=False, image_size_px=96, stage_blocks=(1, 2, 3, 4))) != key


def test_changed_weights_rebuild_the_export(tmp_path):
    encoder = small_encoder()
    old = export_onnx(encoder, tmp_path)
    with torch.no_grad():
        encoder.blocks[0].project.conv.bias.add_(0.5)
    new = export_onnx(encoder, tmp_path)
    assert new != old
    assert new.is_file()
    fast = accelerate(encoder, engine="onnxruntime", precision="fp32", cache_dir=tmp_path)
    assert fast.model_file == new
    pixels = torch.randn(1, 3, 64, 64)
    assert torch.allclose(fast(pixels).patch_features[0], encoder(pixels).patch_features[0], atol=1e-4)


def test_only_the_newest_versions_are_kept(tmp_path):
    encoder = small_encoder()
    files = []
    for step in range(KEEP_VERSIONS + 1):
        with torch.no_grad():
            encoder.blocks[0].project.conv.bias.add_(0.1 * (step + 1))
        files.append(export_onnx(encoder, tmp_path))
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == sorted(f.parent.name for f in files[-KEEP_VERSIONS:])


def test_an_unwritable_cache_folder_is_an_export_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match="a-file"):
        export_onnx(small_encoder(), blocker / "cache")


def test_a_failed_export_names_the_encoder_and_leaves_no_entry(tmp_path):
    class Unexportable(EfficientNetLiteEncoder):
        def forward(self, pixels):
            raise RuntimeError("cannot trace this")

    encoder = Unexportable(pretrained=False, image_size_px=64, stage_blocks=(1, 2, 3, 4))
    with pytest.raises(ExportError, match=r"'efficientnet-lite0'.*cannot trace this"):
        export_onnx(encoder, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_entry_written_by_another_process_meanwhile_is_kept(tmp_path, monkeypatch):
    import model.engine.export as export_module

    encoder = small_encoder()
    model_file = export_onnx(encoder, tmp_path)
    entry, data = model_file.parent, model_file.read_bytes()
    shutil.rmtree(entry)
    real_export = export_module._export

    def export_then_lose_the_race(enc, module, example, path: Path, *names) -> None:
        real_export(enc, module, example, path, *names)
        entry.mkdir()  # another process renamed its complete entry into place first
        (entry / "model.onnx").write_bytes(data)

    monkeypatch.setattr(export_module, "_export", export_then_lose_the_race)
    assert export_onnx(encoder, tmp_path) == model_file
    assert [p.name for p in tmp_path.iterdir()] == [entry.name]  # our copy was discarded
