"""Registered reference residual: frames register to their references and only what differs is left."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from model.exceptions import ShapeError
from model.registration import ReferenceSet, estimate_warp, to_gray


def _scene(seed: int = 0, size: tuple[int, int] = (360, 480)) -> np.ndarray:
    """A textured uint8 RGB part, smooth enough to register at a quarter of its size."""
    rng = np.random.default_rng(seed)
    grey = cv2.GaussianBlur(rng.uniform(0, 255, size).astype(np.float32), (0, 0), 4) * 4 - 380
    return np.repeat(np.clip(grey, 0, 255)[:, :, None], 3, axis=2).astype(np.uint8)


def _moved(image: np.ndarray, dx: float, dy: float, angle_deg: float = 0.0, gain: float = 1.0) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle_deg, 1.0)
    matrix[:, 2] += (dx, dy)
    out = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.clip(out.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def test_the_warp_recovers_a_shift_and_a_small_rotation():
    scene = _scene()
    moved = _moved(scene, 9.0, -6.0, 0.4)
    small = [cv2.resize(to_gray(i), None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA) for i in (scene, moved)]
    warp = estimate_warp(*small)
    assert warp is not None
    centre = np.array([240.0, 180.0, 1.0])  # moved's centre came from the scene's centre shifted back
    assert np.allclose(warp @ centre, centre[:2] - (9.0, -6.0), atol=1.0)


def test_a_moved_brighter_copy_leaves_little_and_a_faint_scratch_stands_out():
    scene = _scene()
    references = ReferenceSet.from_shots([scene, _moved(scene, -5, 3, -0.3)])
    frame = _moved(scene, 7, -4, 0.3, gain=1.05)
    clean = references.residual(frame)
    assert clean is not None
    inside = (slice(40, -40), slice(40, -40))
    scratched = frame.copy()
    scratched[180:182, 100:300] = (scratched[180:182, 100:300] * 0.85).astype(np.uint8)  # 15 % darker, 2 px
    found = references.residual(scratched)
    assert float(found[170:192, 100:300].max()) > 3 * float(clean[inside].max())


def test_a_different_part_does_not_register():
    references = ReferenceSet.from_shots([_scene(0)])
    assert references.residual(_scene(7)) is None
    with pytest.raises(ShapeError, match="shot 1 does not register"):
        ReferenceSet.from_shots([_scene(0), _scene(7)])


def test_frames_of_another_size_are_refused_naming_both_sizes():
    references = ReferenceSet.from_shots([_scene()])
    with pytest.raises(ShapeError, match="480x300 px, the references 480x360"):
        references.residual(_scene(size=(300, 480)))
    with pytest.raises(ShapeError, match=r"uint8 RGB.*float32"):
        references.residual(np.zeros((360, 480, 3), np.float32))


def test_extended_references_explain_the_frame_they_learned():
    scene = _scene()
    references = ReferenceSet.from_shots([scene])
    odd = scene.copy()
    odd[100:140, 200:240] = 255  # a mark the operator says is normal
    before = references.residual(_moved(odd, 3, 2))
    after = references.extended([odd]).residual(_moved(odd, 3, 2))
    assert references.extended([odd]).shots.shape[0] == 2
    with pytest.raises(ShapeError, match="frame 'f-9' does not register"):
        references.extended([_scene(7)], ["frame 'f-9'"])
    assert float(after[95:145, 195:245].max()) < 0.2 * float(before[95:145, 195:245].max())
