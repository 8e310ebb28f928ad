"""Where an anomaly is: connected regions of a mask and the 3x3 grid name of each region's centre.

docs/method.md: the position is the centre of the anomaly region (row/H, col/W) against thirds:
top left, top, top right, left, center, right, bottom left, bottom, bottom right.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from model.exceptions import ShapeError

__all__ = ["POSITION_NAMES", "Region", "position_name", "find_regions", "MIN_REGION_FRACTION"]

POSITION_NAMES: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
MIN_REGION_FRACTION = 0.002  # regions smaller than 0.2 % of the image (100 px at 224) are specks


class Region(NamedTuple):
    """One connected anomaly region."""

    area_px: int
    center_rc: tuple[float, float]  # (row, col) of the centroid, pixels
    bbox: tuple[int, int, int, int]  # (top, left, height, width), pixels
    position: str  # one of POSITION_NAMES


def position_name(row_fraction: float, col_fraction: float) -> str:
    """Grid name of a point given as fractions of height and width in [0, 1].

    >>> position_name(0.1, 0.9), position_name(0.5, 0.5), position_name(0.9, 0.5)
    ('top right', 'center', 'bottom')
    """
    row = min(2, max(0, int(row_fraction * 3)))
    col = min(2, max(0, int(col_fraction * 3)))
    return POSITION_NAMES[row * 3 + col]


def find_regions(mask: np.ndarray, *, min_fraction: float = MIN_REGION_FRACTION) -> list[Region]:
    """Connected regions (8-connectivity) of a binary (H, W) mask, largest first.

    Regions below ``min_fraction`` of the image area are dropped as specks, except that the largest
    region is always kept, so a non-empty mask always yields at least one region.

    >>> m = np.zeros((90, 90), np.uint8); m[5:25, 5:25] = 1; m[60:80, 40:50] = 1
    >>> [(r.area_px, r.position) for r in find_regions(m)]
    [(400, 'top left'), (200, 'bottom')]
    """
    import cv2  # local: keeps `import model` light

    if mask.ndim != 2:
        raise ShapeError(f"expected a mask of shape (H, W), got {tuple(mask.shape)}")
    binary = (mask > 0).astype(np.uint8)
    count, _, stats, centroids = cv2.connectedComponentsWithStats(binary, connectivity=8)
    height, width = binary.shape
    min_area = min_fraction * height * width
    regions = []
    for label in range(1, count):  # label 0 is the background
        left, top, box_w, box_h, area = (int(v) for v in stats[label])
        col, row = (float(v) for v in centroids[label])
        regions.append(
            Region(area, (row, col), (top, left, box_h, box_w), position_name(row / height, col / width))
        )
    regions.sort(key=lambda r: (-r.area_px, r.center_rc))
    return [r for i, r in enumerate(regions) if i == 0 or r.area_px >= min_area]
