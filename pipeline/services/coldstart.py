"""``bank auto``: a class with no bank gets one from its own first frames, no labelled image needed.

The first N frames of the class (read from the frames topic, or from a folder) are scored against
each other (:mod:`model.mutual`), the K that scored most normal are built into a new bank version
through :meth:`pipeline.services.banks.BankManager.build` (the same path as ``bank build``: calibration,
versioning, sha256, registration, activation = hot swap into the running stream), and the chosen
frames are reported with their scores so that an operator can veto them (rerun with
``--exclude``, or ``bank activate`` the previous version).

Reading the topic is a bounded, group-less consumer (``assign`` + ``seek`` to the beginning, no
commits): it never disturbs the stream's consumer group. Frames of other classes and bad records
are skipped (the stream dead-letters the bad ones itself).

>>> named = [NamedFrame(f"f{i}", image) for i, image in enumerate(normal_images("washer", 8))]  # doctest: +SKIP
>>> auto_build(BankManager(load_settings()), "washer", named, shots=2).chosen  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from linesight.errors import ConfigError

__all__ = ["AutoBank", "NamedFrame", "auto_build", "frames_from_folder", "read_class_frames"]

log = logging.getLogger(__name__)

_POLL_MS = 500


class NamedFrame(NamedTuple):
    """A frame and what an operator knows it by (its frame id, or its file name)."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB


@dataclass(frozen=True)
class AutoBank:
    """What ``bank auto`` did: the registered bank row and the references it chose."""

    row: Any  # storage.repository bank row (version, path, sha256, active, calibration)
    chosen: tuple[tuple[str, float], ...]  # (frame name, mutual score), most normal first
    scores: tuple[tuple[str, float], ...]  # every frame considered, in stream order
    threshold: float  # cold-start threshold of those scores (median + 3 MAD)
    excluded: tuple[str, ...]  # names vetoed by the operator and left out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (what the CLI prints)."""
        flagged = [name for name, score in self.scores if score > self.threshold]
        return {
            "product_class": self.row.product_class,
            "version": self.row.version,
            "active": self.row.active,
            "threshold": round(float(self.row.calibration.get("threshold", float("nan"))), 5),
            "frames": len(self.scores),
            "references": [{"frame": name, "mutual_score": round(score, 5)} for name, score in self.chosen],
            "cold_start_threshold": round(self.threshold, 5),
            "cold_start_flagged": flagged,
            "excluded": list(self.excluded),
        }


def frames_from_folder(folder: Path, limit: int | None = None) -> list[NamedFrame]:
    """The images of a folder (sorted by name, the first ``limit``) named by their file names."""
    from pipeline.services.banks import IMAGE_SUFFIXES, load_images

    names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    images = load_images(folder, limit=limit)
    return [NamedFrame(name, image) for name, image in zip(names, images, strict=False)]


def read_class_frames(
    bootstrap_servers: str, topic: str, product_class: str, count: int, *, timeout_s: float = 30.0,
    max_frame_bytes: int = 1 << 20, max_frame_pixels: int | None = None, security: dict[str, Any] | None = None,
    exclude: Collection[str] = (),
) -> list[NamedFrame]:
    """The first ``count`` valid frames of ``product_class`` on ``topic`` (all partitions, from the beginning),
    named by frame id; fewer when the topic holds fewer within ``timeout_s``. Frames in ``exclude`` are skipped."""
    from kafka import KafkaConsumer, TopicPartition

    from connectors.exceptions import ConnectorError
    from connectors.schema import DEFAULT_MAX_FRAME_PIXELS, Frame, parse_record

    if count < 1:
        raise ConfigError(f"count must be >= 1 frames, got {count}")
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", request_timeout_ms=max(5000, int(timeout_s * 1000)),
            max_partition_fetch_bytes=max(max_frame_bytes * 2, 1 << 20), fetch_max_bytes=max(max_frame_bytes * 4, 1 << 22),
            **(security or {}),
        )
    except Exception as exc:  # kafka-python raises many types for an unreachable broker
        raise ConnectorError(f"cannot read frames from Kafka at {bootstrap_servers!r}: {exc}") from None
    frames: list[NamedFrame] = []
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + timeout_s
        partitions: list[Any] = []
        while not partitions and time.monotonic() < deadline:
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not partitions:
                time.sleep(0.2)
        if not partitions:
            raise ConnectorError(f"topic {topic!r} does not exist at {bootstrap_servers!r} (no frames published yet?)")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        empty_polls = 0
        while len(frames) < count and time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=_POLL_MS)
            empty_polls = 0 if batches else empty_polls + 1
            records = sorted((r for rs in batches.values() for r in rs), key=lambda r: (r.timestamp, r.partition, r.offset))
            for record in records:
                parsed = parse_record(
                    record, max_frame_bytes=max_frame_bytes, max_frame_pixels=max_frame_pixels or DEFAULT_MAX_FRAME_PIXELS,
                    max_capture_age_s=float("inf"),  # the first frames of a class may be old
                )
                if not isinstance(parsed, Frame) or parsed.headers.product_class != product_class:
                    continue
                name = parsed.headers.frame_id
                if name in seen or name in exclude:  # a replayed frame counts once; a vetoed one not at all
                    continue
                seen.add(name)
                frames.append(NamedFrame(name, parsed.image))
                if len(frames) == count:
                    break
    except ConnectorError:
        raise
    except Exception as exc:
        raise ConnectorError(f"cannot read frames of {product_class!r} from {topic!r} at {bootstrap_servers!r}: {exc}") from None
    finally:
        consumer.close()
    log.info("read %d frame(s) of class %r from %s", len(frames), product_class, topic)
    return frames


def _tile_px(manager: Any, frames: Sequence[NamedFrame]) -> int | None:
    """How the references are chosen: frames tiled as a new bank of the settings would tile them."""
    from model.fewshot import resolve_tile_px

    settings = getattr(manager, "settings", None)
    if settings is None or not frames:
        return None
    return resolve_tile_px(settings.tile_setting, [frames[0].image], manager.encoder.image_size_px)


def auto_build(
    manager: Any, product_class: str, frames: Sequence[NamedFrame], *, shots: int = 4, rotations: bool = True,
    activate: bool = True, exclude: Collection[str] = (), window: int | None = None, seed: int = 0,
) -> AutoBank:
    """Score ``frames`` mutually, build a bank from the ``shots`` most normal through ``manager.build``.

    ``exclude`` names frames the operator vetoed: they are neither scored nor chosen.
    """
    from model.exceptions import BankBuildError
    from model.mutual import MutualConfig
    from model.names import check_class_name
    from model.references import choose_references

    check_class_name(product_class)
    kept = [f for f in frames if f.name not in set(exclude)]
    excluded = tuple(f.name for f in frames if f.name in set(exclude))
    config = MutualConfig() if window is None else MutualConfig(window=window)
    try:
        chosen, scored = choose_references(manager.encoder, [f.image for f in kept], shots, config=config,
                                           product_class=product_class, tile_px=_tile_px(manager, kept))
    except BankBuildError as exc:
        raise ConfigError(str(exc)) from None
    row = manager.build(product_class, [kept[i].image for i in chosen], rotations=rotations, seed=seed,
                        activate=activate, reference_frames=[kept[i].name for i in chosen])
    log.info("bank auto %s@v%d from frames %s", product_class, row.version, [kept[i].name for i in chosen])
    return AutoBank(
        row=row,
        chosen=tuple((kept[i].name, float(scored.scores[i])) for i in chosen),
        scores=tuple((f.name, float(s)) for f, s in zip(kept, scored.scores, strict=True)),
        threshold=float(scored.threshold),
        excluded=excluded,
    )
