"""model/encoders/dinov2.py through build_encoder: tiny random DINOv2 checkpoints saved to tmp folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.encoders import build_encoder
from model.encoders.dinov2 import IMAGENET_MEAN, IMAGENET_STD, Dinov2Encoder
from model.exceptions import EncoderNotFoundError, ShapeError


def save_tiny_dinov2(folder: Path, layers: int = 4, seed: int = 0) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(seed)
    Dinov2Model(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory) -> Path:
    return save_tiny_dinov2(tmp_path_factory.mktemp("dinov2"))


@pytest.fixture(scope="module")
def encoder(dino_dir) -> Dinov2Encoder:
    return build_encoder("dinov2", dino_dir, image_size_px=64)


def test_shapes_and_stage_blocks(encoder):
    assert encoder.name == "dinov2"
    assert encoder.stage_blocks == (1, 2, 3, 4)
    assert encoder.stage_channels == (32,) * 4
    assert encoder.global_dim == 32
    assert encoder.text_embedder is None
    out = encoder(torch.randn(2, 3, 64, 64))
    assert [tuple(f.shape) for f in out.patch_features] == [(2, 32, 8, 8)] * 4
    assert tuple(out.global_vector.shape) == (2, 32)


def test_stages_are_hidden_states_without_cls_and_global_is_the_pooler(encoder):
    pixels = torch.randn(2, 3, 64, 64)
    out = encoder(pixels)
    reference = encoder.dinov2(pixel_values=pixels, output_hidden_states=True)
    for stage, block in zip(out.patch_features, encoder.stage_blocks, strict=True):
        assert torch.allclose(
            stage.flatten(2).transpose(1, 2), reference.hidden_states[block][:, 1:], atol=1e-6
        )
    assert torch.allclose(out.global_vector, reference.pooler_output, atol=1e-6)
    # the patch grid is row-major: token 1 + r * 8 + c is pixel block (r, c)
    assert torch.allclose(
        out.patch_features[0][:, :, 2, 5], reference.hidden_states[1][:, 1 + 2 * 8 + 5], atol=1e-6
    )


def test_two_blocks_repeat_stages(tmp_path):
    encoder = build_encoder("dinov2", save_tiny_dinov2(tmp_path, layers=2), image_size_px=32)
    assert encoder.stage_blocks == (1, 1, 2, 2)
    out = encoder(torch.randn(1, 3, 32, 32))
    assert torch.equal(out.patch_features[0], out.patch_features[1])


def test_deterministic_and_frozen(dino_dir, encoder):
    pixels = torch.randn(1, 3, 64, 64)
    again = build_encoder("dinov2", dino_dir, image_size_px=64)
    assert torch.equal(encoder(pixels).global_vector, again(pixels).global_vector)
    assert not any(p.requires_grad for p in encoder.parameters())


def test_imagenet_normalisation_without_preprocessor_config(encoder):
    pixels = encoder.preprocess([np.zeros((64, 64, 3), dtype=np.uint8)])
    expected = -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(pixels[0, :, 10, 10], expected)


def test_input_size_must_be_a_patch_multiple(dino_dir):
    with pytest.raises(ShapeError, match="patch size 8"):
        build_encoder("dinov2", dino_dir, image_size_px=60)


def test_missing_folder_says_what_to_put_where(tmp_path):
    with pytest.raises(EncoderNotFoundError, match=r"DINOv2 checkpoint \(config.json \+ model.safetensors\)"):
        build_encoder("dinov2", tmp_path / "absent")
    with pytest.raises(EncoderNotFoundError, match="Dinov2Model.save_pretrained"):
        build_encoder("dinov2", None)
