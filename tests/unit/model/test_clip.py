"""model/encoders/clip.py through build_encoder: tiny random CLIP checkpoints saved to tmp folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.encoders import build_encoder, encoder_names
from model.encoders.clip import ClipVisionEncoder, evenly_spaced_blocks
from model.exceptions import EncoderNotFoundError, ModelError, ShapeError
from model.text_anchors import TextEmbedder, text_anchors
from tests.unit.model.test_llm import tiny_tokenizer

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def save_tiny_clip(folder: Path, layers: int = 4, with_tokenizer: bool = True, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPModel

    tokenizer = tiny_tokenizer(add_bos=True, add_eos=True)
    config = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": 64,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": layers,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=24,
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    if with_tokenizer:
        tokenizer.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"image_mean": MEAN, "image_std": STD}))
    return folder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def encoder(clip_dir) -> ClipVisionEncoder:
    return build_encoder("clip", clip_dir, image_size_px=32)


def test_clip_is_registered():
    assert {"clip", "dinov2"} <= set(encoder_names())


def test_shapes_and_stage_blocks(encoder):
    assert encoder.stage_blocks == (1, 2, 3, 4)
    assert encoder.stage_channels == (32, 32, 32, 32)
    assert encoder.global_dim == 24
    out = encoder(torch.randn(3, 3, 32, 32))
    assert [tuple(f.shape) for f in out.patch_features] == [(3, 32, 4, 4)] * 4
    assert tuple(out.global_vector.shape) == (3, 24)


def test_stages_are_the_chosen_hidden_states_without_cls(encoder):
    pixels = torch.randn(2, 3, 32, 32)
    out = encoder(pixels)
    reference = encoder.clip.vision_model(pixel_values=pixels, output_hidden_states=True)
    for stage, block in zip(out.patch_features, encoder.stage_blocks, strict=True):
        tokens = reference.hidden_states[block][:, 1:]  # (B, 16, C): CLS dropped
        assert torch.allclose(stage.flatten(2).transpose(1, 2), tokens, atol=1e-6)
    image_embeds = encoder.clip.visual_projection(reference.pooler_output)
    assert torch.allclose(out.global_vector, image_embeds, atol=1e-6)


def test_twelve_blocks_give_3_6_9_12():
    assert evenly_spaced_blocks(12) == (3, 6, 9, 12)
    assert evenly_spaced_blocks(32) == (8, 16, 24, 32)


def test_deterministic_and_frozen(clip_dir, encoder):
    pixels = torch.randn(2, 3, 32, 32)
    again = build_encoder("clip", clip_dir, image_size_px=32)
    first, second = encoder(pixels), again(pixels)
    for a, b in zip(first.patch_features, second.patch_features, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(first.global_vector, encoder(pixels).global_vector)
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder.training


def test_preprocess_uses_the_checkpoint_normalisation(encoder):
    images = np.full((1, 40, 40, 3), 255, dtype=np.uint8)  # resized to 32 px
    pixels = encoder.preprocess(images)
    assert tuple(pixels.shape) == (1, 3, 32, 32)
    expected = (1.0 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(pixels[0, :, 0, 0], expected)


def test_other_input_size_interpolates_positions(clip_dir):
    encoder = build_encoder("clip", clip_dir, image_size_px=48)
    out = encoder(torch.randn(1, 3, 48, 48))
    assert [tuple(f.shape) for f in out.patch_features] == [(1, 32, 6, 6)] * 4


def test_input_size_must_be_a_patch_multiple(clip_dir):
    with pytest.raises(ShapeError, match="image_size_px=30"):
        build_encoder("clip", clip_dir, image_size_px=30)


def test_wrong_pixels_shape(encoder):
    with pytest.raises(ShapeError, match=r"\(B, 3, 32, 32\)"):
        encoder(torch.randn(1, 3, 64, 64))


def test_text_tower_embeds_unit_vectors_and_gives_anchors(encoder):
    embedder = encoder.text_embedder
    assert isinstance(embedder, TextEmbedder)
    assert embedder.dim == 24
    vectors = embedder.embed(["a photo of a bottle.", "a photo of a damaged bottle."])
    assert tuple(vectors.shape) == (2, 24)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(vectors[0], vectors[1])
    anchors = text_anchors(embedder, "bottle")
    assert tuple(anchors.shape) == (2, 24)


def test_a_clip_backend_brings_its_own_text_space_to_the_zero_shot_head(encoder, tmp_path):
    from model.decoder import TextAlignedDecoder, save_decoder
    from model.detector import Detector
    from model.text_anchors import text_embedder_for
    from model.zero_shot import load_zero_shot_head

    assert text_embedder_for(encoder) is encoder.text_embedder
    save_decoder(TextAlignedDecoder(encoder.stage_channels, 24, image_size_px=encoder.image_size_px),
                 tmp_path / "decoder.safetensors")
    head = load_zero_shot_head(tmp_path, encoder)  # a folder: its decoder.safetensors
    assert torch.allclose(head.text_features("bottle"), text_anchors(encoder.text_embedder, "bottle"))
    (result,) = Detector(encoder, zero_shot=head).score_zero_shot([np.zeros((32, 32, 3), np.uint8)], ["bottle"])
    assert result.anomaly_map.shape == (32, 32)
    save_decoder(TextAlignedDecoder(encoder.stage_channels, 384, image_size_px=encoder.image_size_px),
                 tmp_path / "minilm.safetensors")
    with pytest.raises(ModelError, match="384-d text features"):
        load_zero_shot_head(tmp_path / "minilm.safetensors", encoder)


def test_no_tokenizer_means_no_text_tower(tmp_path):
    folder = save_tiny_clip(tmp_path, layers=2, with_tokenizer=False)
    encoder = build_encoder("clip", folder, image_size_px=32)
    assert encoder.text_embedder is None
    assert encoder.stage_blocks == (1, 1, 2, 2)


@pytest.mark.parametrize("case", ["none", "missing", "empty", "no-config"])
def test_missing_checkpoint_says_what_to_put_where(tmp_path, case):
    path = {"none": None, "missing": tmp_path / "nope", "empty": tmp_path, "no-config": tmp_path}[case]
    if case == "no-config":
        (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(
        EncoderNotFoundError, match=r"CLIP checkpoint \(config.json \+ model.safetensors\)"
    ) as info:
        build_encoder("clip", path)
    if path is not None:
        assert str(path) in str(info.value)
    assert "CLIPModel.save_pretrained" in str(info.value)


def test_a_dinov2_checkpoint_is_refused(tmp_path):
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(
        Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
    ).save_pretrained(tmp_path)
    with pytest.raises(EncoderNotFoundError, match="model_type 'dinov2'"):
        build_encoder("clip", tmp_path)
