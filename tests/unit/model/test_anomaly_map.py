"""Few-shot anomaly map: zero for a bank image, high at a defect, exact chunked nearest neighbour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model import anomaly_map
from model.anomaly_map import (
    few_shot_anomaly_map,
    gaussian_blur,
    image_scores,
    nearest_similarity,
    patch_embeddings,
    resize_and_blur,
)
from model.defects import inject_defect
from model.encoders.efficientnet import EfficientNetLiteEncoder
from model.exceptions import ShapeError
from training.synthetic import normal_images


@pytest.fixture(scope="module")
def encoder() -> EfficientNetLiteEncoder:
    torch.set_num_threads(2)
    return EfficientNetLiteEncoder()


def _bank_of(features: list[torch.Tensor]) -> list[torch.Tensor]:
    return [e.reshape(-1, e.shape[-1]) for e in patch_embeddings(features)]


@torch.inference_mode()
def test_bank_image_scores_zero_and_defect_is_found(encoder: EfficientNetLiteEncoder) -> None:
    shots = normal_images("bracket", 2)
    defective, mask = inject_defect(shots[0], "hole", np.random.default_rng(4))
    features = encoder(encoder.preprocess(shots + [defective])).patch_features
    bank = _bank_of([f[:2] for f in features])
    maps = few_shot_anomaly_map(features, bank, 224)
    assert maps.shape == (3, 224, 224)
    assert maps.dtype == torch.float32
    assert float(maps.min()) >= 0.0
    assert float(maps.max()) <= 1.0
    scores = image_scores(maps)
    assert float(scores[0]) < 1e-4
    assert float(scores[1]) < 1e-4
    assert float(scores[2]) > 0.1
    defect_map = maps[2].numpy()
    peak = np.unravel_index(defect_map.argmax(), defect_map.shape)
    rows, cols = np.nonzero(mask)
    assert rows.min() - 16 <= peak[0] <= rows.max() + 16
    assert cols.min() - 16 <= peak[1] <= cols.max() + 16
    assert defect_map[mask > 0].mean() > 3 * defect_map[mask == 0].mean()


def test_chunked_nearest_similarity_matches_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = torch.Generator().manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(3, 50, 8, generator=generator), dim=-1)
    bank = torch.nn.functional.normalize(torch.randn(70, 8, generator=generator), dim=-1)
    expected = (queries @ bank.t()).amax(dim=-1)
    monkeypatch.setattr(anomaly_map, "_CHUNK_ELEMENTS", 70 * 7)  # 7 rows per chunk
    torch.testing.assert_close(nearest_similarity(queries, bank), expected)


def test_batch_rows_are_independent() -> None:
    generator = torch.Generator().manual_seed(1)
    features = [torch.randn(4, 6, 8, 8, generator=generator), torch.randn(4, 10, 4, 4, generator=generator)]
    bank = _bank_of([f[:1] for f in features])
    together = few_shot_anomaly_map(features, bank, 32)
    alone = few_shot_anomaly_map([f[2:3] for f in features], bank, 32)
    torch.testing.assert_close(together[2:3], alone)


def test_blur_keeps_constants_and_spreads_peaks() -> None:
    flat = torch.full((1, 20, 20), 0.3)
    torch.testing.assert_close(gaussian_blur(flat, 2.0), flat)
    peak = torch.zeros(1, 21, 21)
    peak[0, 10, 10] = 1.0
    blurred = gaussian_blur(peak, 2.0)
    assert float(blurred.max()) < 1.0
    assert float(blurred[0, 10, 10]) == float(blurred.max())
    assert float(blurred.sum()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(("grid", "size", "sigma"), [((28, 28), 224, 4.0), ((7, 9), 64, 1.5), ((14, 14), 448, 0.0)])
def test_resize_and_blur_equals_interpolate_then_conv(grid, size, sigma) -> None:
    """The two-matmul map equals the bilinear upsample followed by a separable reflect-padded Gaussian conv."""
    grids = torch.rand(3, *grid, generator=torch.Generator().manual_seed(0))
    want = torch.nn.functional.interpolate(grids.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False)
    if sigma > 0:
        radius = int(round(3.0 * sigma))
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
        kernel = kernel / kernel.sum()
        want = torch.nn.functional.pad(want, (radius, radius, 0, 0), mode="reflect")
        want = torch.nn.functional.conv2d(want, kernel.view(1, 1, 1, -1))
        want = torch.nn.functional.pad(want, (0, 0, radius, radius), mode="reflect")
        want = torch.nn.functional.conv2d(want, kernel.view(1, 1, -1, 1))
    torch.testing.assert_close(resize_and_blur(grids, size, sigma), want.squeeze(1), atol=1e-5, rtol=0)


def test_shape_errors_name_the_mismatch() -> None:
    features = [torch.randn(1, 6, 4, 4)]
    with pytest.raises(ShapeError, match="6 channels, the bank has 5"):
        few_shot_anomaly_map(features, [torch.randn(10, 5)], 16)
    with pytest.raises(ShapeError, match="1 stages but the bank has 2"):
        few_shot_anomaly_map(features, [torch.randn(10, 6)] * 2, 16)
