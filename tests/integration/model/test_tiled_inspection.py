"""An 80 px scratch on a 4096 px frame: found by a tiled bank, lost when the frame is squeezed to 224 px.

Real weights (the packaged EfficientNet-Lite0), a real photograph (scikit-image's brick wall) at
the camera's resolution, the product's own bank builder and detector. Slow (tens of seconds).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from model.detector import edge_band_px
from model.encoders.efficientnet import EfficientNetLiteEncoder
from model.factory import build_detector
from model.fewshot import build_bank
from training.realistic import exposure

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

WIDTH_PX, HEIGHT_PX = 4096, 448  # a line-scan style frame: 4096 px wide
SCRATCH_PX = 80


@pytest.fixture(scope="module")
def wall() -> np.ndarray:
    import skimage.data

    grey = skimage.data.brick()  # 512 x 512 photograph
    big = cv2.resize(grey, (WIDTH_PX, WIDTH_PX), interpolation=cv2.INTER_CUBIC)[:HEIGHT_PX]
    return np.ascontiguousarray(np.repeat(big[:, :, None], 3, axis=2))


def scratched(frame: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    out = frame.copy()
    x0, y0 = 2900, 200
    cv2.line(out, (x0, y0), (x0 + SCRATCH_PX, y0 + 12), (235, 235, 235), thickness=3, lineType=cv2.LINE_AA)
    return out, (x0 + SCRATCH_PX // 2, y0 + 6)


def test_an_80_px_scratch_on_a_4096_px_frame_is_found_only_with_tiles(wall):
    rng = np.random.default_rng(0)
    shots = [exposure(wall, rng) for _ in range(2)]
    normal = exposure(wall, rng)
    defective, (cx, cy) = scratched(exposure(wall, rng))
    encoder = EfficientNetLiteEncoder()
    detector = build_detector(encoder=encoder)

    tiled = build_bank(encoder, shots, "wall", 1, tile_px="auto")
    assert tiled.tile_px == encoder.image_size_px
    assert tiled.frame_size == (HEIGHT_PX, WIDTH_PX)
    ok, bad = detector.score_batch([normal, defective], tiled)
    assert not ok.is_anomalous, (ok.score, ok.threshold)
    assert bad.is_anomalous, (bad.score, bad.threshold)
    assert bad.frame_size == (HEIGHT_PX, WIDTH_PX)
    box = bad.regions[0]  # full-frame pixels
    assert box.x - 16 <= cx <= box.x + box.width + 16, (box, cx)
    assert box.y - 16 <= cy <= box.y + box.height + 16, (box, cy)
    assert box.width < 600  # a region around the scratch, not the whole frame
    band_rows, band_cols = edge_band_px(*bad.anomaly_map.shape)
    assert bad.anomaly_map[:, :band_cols].max() == 0.0  # the edge band, where content moves in and out, is not judged
    assert bad.anomaly_map[:band_rows].max() == 0.0

    squeezed = build_bank(encoder, shots, "wall", 1, tile_px=None)
    assert not detector.score_batch([defective], squeezed)[0].is_anomalous  # 80 px -> 4 px at 224: gone
