"""EfficientNet-Lite0 encoder: stage shapes, determinism, packaged weights, BN folding exactness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.encoders import build_encoder
from model.encoders.efficientnet import EfficientNetLiteEncoder
from model.exceptions import ShapeError


@pytest.fixture(scope="module")
def random_encoder() -> EfficientNetLiteEncoder:
    return EfficientNetLiteEncoder(pretrained=False)


def test_stage_shapes_and_global_vector(random_encoder: EfficientNetLiteEncoder) -> None:
    out = random_encoder(torch.rand(2, 3, 224, 224))
    assert [tuple(f.shape) for f in out.patch_features] == [
        (2, 40, 28, 28), (2, 80, 14, 14), (2, 112, 14, 14), (2, 192, 7, 7)
    ]  # fmt: skip
    assert random_encoder.stage_channels == (40, 80, 112, 192)
    assert tuple(out.global_vector.shape) == (2, random_encoder.global_dim)


def test_custom_stage_blocks_and_image_size() -> None:
    encoder = EfficientNetLiteEncoder(pretrained=False, image_size_px=128, stage_blocks=(2, 4, 7, 15))
    out = encoder(torch.rand(1, 3, 128, 128))
    assert [tuple(f.shape[1:]) for f in out.patch_features] == [(24, 32, 32), (40, 16, 16), (80, 8, 8), (320, 4, 4)]


def test_random_weights_are_deterministic(random_encoder: EfficientNetLiteEncoder) -> None:
    pixels = torch.rand(1, 3, 224, 224)
    other = EfficientNetLiteEncoder(pretrained=False)
    with torch.inference_mode():
        first, again, second = random_encoder(pixels), random_encoder(pixels), other(pixels)
    for a, b, c in zip(first.patch_features, again.patch_features, second.patch_features, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(a, c)


def test_preprocess_resizes_and_normalises(random_encoder: EfficientNetLiteEncoder) -> None:
    pixels = random_encoder.preprocess([np.full((100, 60, 3), 255, np.uint8)])
    assert tuple(pixels.shape) == (1, 3, 224, 224)
    expected = (1.0 - 0.485) / 0.229
    assert float(pixels[0, 0].mean()) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("blocks", [(1, 2, 3), (4, 3, 7, 10), (1, 2, 3, 16)])
def test_bad_stage_blocks_name_the_value(blocks: tuple[int, ...]) -> None:
    with pytest.raises(ShapeError, match=str(blocks[0])):
        EfficientNetLiteEncoder(pretrained=False, stage_blocks=blocks)


def test_wrong_input_size_is_a_shape_error(random_encoder: EfficientNetLiteEncoder) -> None:
    with pytest.raises(ShapeError, match=r"\(1, 3, 200, 200\)"):
        random_encoder(torch.rand(1, 3, 200, 200))


def test_packaged_weights_match_the_unfused_network() -> None:
    """The folded (BatchNorm-in-conv) copy computes what the original network computes."""
    from efficientnet_lite_pytorch import EfficientNet

    from model.encoders.efficientnet import _packaged_state_dict

    encoder = build_encoder("efficientnet-lite0")
    assert not any(p.requires_grad for p in encoder.parameters())
    network = EfficientNet.from_name("efficientnet-lite0", image_size=224)
    network.load_state_dict(_packaged_state_dict())
    network.eval()
    pixels = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        x = network._swish(network._bn0(network._conv_stem(pixels)))
        reference = []
        for block in network._blocks[: encoder.stage_blocks[-1] + 1]:
            x = block(x)
            reference.append(x)
        out = encoder(pixels)
    for stage, block_index in zip(out.patch_features, encoder.stage_blocks, strict=True):
        torch.testing.assert_close(stage, reference[block_index], atol=1e-3, rtol=1e-4)
