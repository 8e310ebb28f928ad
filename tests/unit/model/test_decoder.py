"""model/decoder.py: the text-aligned decoder's maps, fusion modes and safetensors round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from model.decoder import (
    FUSION_MODES,
    TextAlignedDecoder,
    fuse,
    load_decoder,
    save_decoder,
)
from model.exceptions import ModelError, ShapeError
from model.prompt_learner import PromptLearner, save_prompt_learner

CHANNELS = (8, 12, 16, 20)
SIDES = (8, 4, 4, 2)


def features(batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, s, s, generator=generator) for c, s in zip(CHANNELS, SIDES, strict=True)]


def anchors(dim: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(2, dim, generator=torch.Generator().manual_seed(seed)), dim=-1
    )


@pytest.fixture
def decoder() -> TextAlignedDecoder:
    torch.manual_seed(0)
    return TextAlignedDecoder(CHANNELS, text_dim=6, image_size_px=32)


def test_output_shapes_and_range(decoder):
    with torch.no_grad():
        out = decoder(features(), anchors())
    assert [tuple(t.shape) for t in out.stage_logits] == [(2, 2, 32, 32)] * 4
    assert [tuple(t.shape) for t in out.stage_maps] == [(2, 32, 32)] * 4
    assert tuple(out.anomaly_map.shape) == (2, 32, 32)
    assert float(out.anomaly_map.min()) >= 0.0
    assert float(out.anomaly_map.max()) <= 1.0


def test_map_is_the_mean_of_the_abnormal_softmax_channels(decoder):
    out = decoder(features(), anchors())
    for logits, stage_map in zip(out.stage_logits, out.stage_maps, strict=True):
        assert torch.allclose(stage_map, logits.softmax(1)[:, 1])
    assert torch.allclose(out.anomaly_map, torch.stack(out.stage_maps).mean(0))


def test_stage_logits_follow_the_reference_formula(decoder):
    feats, text = features(), anchors()
    out = decoder(feats, text)
    projection = decoder.projections[1]
    tokens = torch.nn.functional.normalize(projection(feats[1].flatten(2).transpose(1, 2)), dim=-1)
    logits = (100.0 * tokens @ text.T).transpose(1, 2).reshape(2, 2, 4, 4)
    expected = torch.nn.functional.interpolate(logits, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(out.stage_logits[1], expected, atol=1e-4)


def test_patches_that_look_abnormal_light_up():
    decoder = TextAlignedDecoder((4,) * 4, text_dim=4, image_size_px=16)
    with torch.no_grad():
        for projection in decoder.projections:
            projection.weight.copy_(torch.eye(4))
            projection.bias.zero_()
    text = torch.eye(4)[:2]  # normal = e0, abnormal = e1
    grid = torch.zeros(1, 4, 4, 4)
    grid[0, 0] = 1.0  # every patch "normal"...
    grid[0, :, 0, 3] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # ...but the top right one
    anomaly_map = decoder([grid] * 4, text).anomaly_map[0].detach()
    assert float(anomaly_map[0:2, 14:16].min()) > 0.99
    assert float(anomaly_map[10:, :6].max()) < 0.01


def test_per_image_anchors_match_shared_ones(decoder):
    feats, text = features(batch=3), anchors()
    shared = decoder(feats, text).anomaly_map
    per_image = decoder(feats, text.unsqueeze(0).expand(3, -1, -1)).anomaly_map
    assert torch.allclose(shared, per_image, atol=1e-6)


def test_gradients_reach_the_projections(decoder):
    out = decoder(features(), anchors())
    out.anomaly_map.mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder.parameters())


def test_bad_inputs_are_named(decoder):
    with pytest.raises(ShapeError, match="expected 4 stages"):
        decoder(features()[:3], anchors())
    wrong = features()
    wrong[2] = torch.randn(2, 5, 4, 4)
    with pytest.raises(ShapeError, match=r"stage 2: expected \(B, 16, H, W\), got \(2, 5, 4, 4\)"):
        decoder(wrong, anchors())
    with pytest.raises(ShapeError, match=r"F_text \(2, 6\)"):
        decoder(features(), torch.randn(3, 6))


def test_save_load_round_trip(decoder, tmp_path):
    path = tmp_path / "decoder.safetensors"
    digest = save_decoder(decoder, path)
    assert len(digest) == 64
    loaded = load_decoder(path)
    assert loaded.config() == decoder.config()
    feats, text = features(), anchors()
    assert torch.equal(loaded(feats, text).anomaly_map, decoder(feats, text).anomaly_map)
    into = TextAlignedDecoder(CHANNELS, text_dim=6, image_size_px=32)
    assert load_decoder(path, into) is into
    assert torch.equal(into.projections[3].weight, decoder.projections[3].weight)


def test_loading_into_a_decoder_of_another_shape_names_the_tensor(decoder, tmp_path):
    path = tmp_path / "decoder.safetensors"
    save_decoder(decoder, path)
    other = TextAlignedDecoder((8, 12, 16, 24), text_dim=6, image_size_px=32)
    with pytest.raises(
        ModelError, match=r"'projections.3.weight' has shape \(6, 20\) but the model expects \(6, 24\)"
    ):
        load_decoder(path, other)
    with pytest.raises(ModelError, match="missing tensors"):
        load_decoder(path, TextAlignedDecoder(CHANNELS[:3], text_dim=6))


def test_other_files_are_refused(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_decoder(tmp_path / "absent.safetensors")
    learner_file = tmp_path / "learner.safetensors"
    save_prompt_learner(PromptLearner(16, 8, channels=(1, 1, 1, 1, 1)), learner_file)
    with pytest.raises(ModelError, match="holds 'linesight.prompt_learner' weights"):
        load_decoder(learner_file)
    bare = tmp_path / "bare.safetensors"
    save_file({"x": torch.zeros(1)}, str(bare))
    with pytest.raises(ModelError, match="holds None weights"):
        load_decoder(bare)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a tensor file")
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        load_decoder(junk)


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_fusion_modes(kind):
    zero = [[0.0, 0.8], [0.4, 0.2]]
    few = [[0.6, 0.2], [0.4, 1.0]]
    make = (lambda v: torch.tensor(v)) if kind == "torch" else (lambda v: np.array(v, dtype=np.float32))
    expected = {
        "mean": [[0.3, 0.5], [0.4, 0.6]],
        "max": [[0.6, 0.8], [0.4, 1.0]],
        "few_only": few,
        "zero_only": zero,
    }
    assert set(expected) == set(FUSION_MODES)
    for mode, values in expected.items():
        fused = fuse(make(zero), make(few), mode)
        assert type(fused) is type(make(zero))
        assert np.allclose(np.asarray(fused), values)


def test_fusion_rejects_unknown_modes_and_shape_mismatch():
    with pytest.raises(ModelError, match="unknown fusion mode 'sum'"):
        fuse(torch.zeros(2, 2), torch.zeros(2, 2), "sum")
    with pytest.raises(ShapeError, match=r"\(2, 2\) and few-shot \(3, 3\)"):
        fuse(torch.zeros(2, 2), torch.zeros(3, 3))
