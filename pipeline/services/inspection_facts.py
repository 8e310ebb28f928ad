"""What the system knows about a stored inspection, gathered for the dialogue (model/grounding.py).

- decision, score, threshold, positions, region count: the ``inspections`` row;
- region boxes and areas: :func:`model.positions.find_regions` over the stored mask PNG, scaled to the
  stored frame's pixels when the frame is kept (else the map's pixels);
- bank version and its shots: the ``banks`` table;
- the line's recent history: flagged share of the last ``history_window`` inspections of the same
  line and class up to this one, and the 24 h up to it vs the 24 h before;
- the class's last false alarm: the newest ``false_alarm`` feedback label of another frame.

>>> facts = stored_facts(repository, repository.get_inspection(7))  # doctest: +SKIP
>>> facts.regions[0].area_px  # doctest: +SKIP
2500
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import numpy as np

from model.grounding import InspectionFacts, LineHistory, PastInspection, RegionFact

__all__ = ["facts_from_score", "region_facts", "stored_facts"]

log = logging.getLogger(__name__)

DAY = timedelta(hours=24)


def region_facts(mask: np.ndarray, frame_size_hw: tuple[int, int] | None = None) -> tuple[RegionFact, ...]:
    """Regions of a (H, W) mask, largest first, with boxes and areas scaled to ``frame_size_hw`` pixels.

    >>> m = np.zeros((10, 10), np.uint8); m[0:5, 0:5] = 1
    >>> region_facts(m, (20, 20))[0]
    RegionFact(position='top left', x_px=0, y_px=0, w_px=10, h_px=10, area_px=100)
    """
    from model.positions import find_regions

    height, width = mask.shape
    frame_h, frame_w = frame_size_hw or (height, width)
    sy, sx = frame_h / height, frame_w / width
    return tuple(
        RegionFact(
            position=r.position, x_px=round(r.bbox[1] * sx), y_px=round(r.bbox[0] * sy),
            w_px=round(r.bbox[3] * sx), h_px=round(r.bbox[2] * sy), area_px=round(r.area_px * sx * sy),
        )
        for r in find_regions(mask)
    ) if mask.any() else ()


def _frame_size_hw(frame_image: bytes | None) -> tuple[int, int] | None:
    if not frame_image:
        return None
    import cv2

    decoded = cv2.imdecode(np.frombuffer(frame_image, np.uint8), cv2.IMREAD_UNCHANGED)
    return None if decoded is None else (int(decoded.shape[0]), int(decoded.shape[1]))


def _bank_shots(repository: Any, product_class: str, version: int) -> int | None:
    from storage.exceptions import NotFoundError

    try:
        return int(repository.get_bank(product_class, version).shots)
    except NotFoundError:  # a bank file scored outside the registry (--bank FILE, tests): shots unknown
        return None


def _history(repository: Any, row: Any, window: int) -> LineHistory:
    same = {"line_id": row.line_id, "product_class": row.product_class}
    recent = [r for r in repository.history(limit=window + 1, before_id=row.id + 1, **same)][:window]
    at = row.captured_at
    last_day = repository.count_inspections(since=at - DAY, until=at + timedelta(microseconds=1), **same)
    last_flagged = repository.count_inspections(
        since=at - DAY, until=at + timedelta(microseconds=1), anomalous=True, **same
    )
    before = repository.count_inspections(since=at - 2 * DAY, until=at - DAY, **same)
    before_flagged = repository.count_inspections(since=at - 2 * DAY, until=at - DAY, anomalous=True, **same)
    return LineHistory(
        window=len(recent), flagged=sum(r.is_anomalous for r in recent),
        last_day_total=last_day, last_day_flagged=last_flagged,
        day_before_total=before, day_before_flagged=before_flagged,
    )


def _last_false_alarm(repository: Any, row: Any) -> PastInspection | None:
    frame_ids = [f for f in repository.feedback_for_class(row.product_class, "false_alarm") if f != row.frame_id]
    for frame_id in reversed(frame_ids):  # newest label last
        past = repository.get_inspection_by_frame(frame_id)
        if past is not None:
            return PastInspection(past.id, past.frame_id, past.score, past.threshold, tuple(past.positions),
                                  past.captured_at)
    return None


def stored_facts(repository: Any, row: Any, *, history_window: int = 20) -> InspectionFacts:
    """:class:`InspectionFacts` of a stored inspection ``row`` (a :class:`storage.rows.InspectionRow`)."""
    masks = repository.get_masks(row.id)
    regions: tuple[RegionFact, ...] = ()
    frame_hw = None
    if masks is not None:
        frame_hw = _frame_size_hw(masks.frame_image) or (masks.height_px, masks.width_px)
        if row.is_anomalous:
            regions = region_facts(masks.mask(), frame_hw)
    return InspectionFacts(
        inspection_id=row.id, product_class=row.product_class, line_id=row.line_id,
        is_anomalous=row.is_anomalous, score=float(row.score), threshold=float(row.threshold),
        positions=tuple(row.positions), region_count=int(row.region_count), regions=regions,
        frame_width_px=frame_hw[1] if frame_hw else 0, frame_height_px=frame_hw[0] if frame_hw else 0,
        bank_version=int(row.bank_version), bank_shots=_bank_shots(repository, row.product_class, row.bank_version),
        history=_history(repository, row, history_window), last_false_alarm=_last_false_alarm(repository, row),
    )


def facts_from_score(result: Any, product_class: str, *, bank_version: int | None = None,
                     bank_shots: int | None = None) -> InspectionFacts:
    """:class:`InspectionFacts` of a frame scored now (a :class:`model.detector.FrameScore`), not stored."""
    frame_h, frame_w = result.frame_size if result.frame_size != (0, 0) else result.mask.shape
    if result.regions:
        regions = tuple(RegionFact(b.position, b.x, b.y, b.width, b.height, b.area_px) for b in result.regions)
    else:
        regions = region_facts(result.mask, (frame_h, frame_w)) if result.is_anomalous else ()
    return InspectionFacts(
        inspection_id=None, product_class=product_class, line_id=None, is_anomalous=bool(result.is_anomalous),
        score=float(result.score), threshold=float(result.threshold), positions=tuple(result.positions),
        region_count=int(result.region_count), regions=regions if result.is_anomalous else (),
        frame_width_px=int(frame_w), frame_height_px=int(frame_h), bank_version=bank_version, bank_shots=bank_shots,
    )
