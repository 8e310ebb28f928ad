"""Bank management: build a calibrated bank from normal images, store it, register and activate it.

A bank version is immutable: a new build is a new version (``<banks_dir>/<class>/v<N>.safetensors``)
and activating it is the hot swap (the stream reads the active version from SQL).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from linesight.errors import ConfigError
from model.names import check_class_name

__all__ = ["IMAGE_SUFFIXES", "load_images", "BankManager"]

log = logging.getLogger(__name__)

from connectors.image_header import IMAGE_SUFFIXES  # noqa: E402 - one list of image suffixes


def load_images(folder: Path, *, limit: int | None = None) -> list[np.ndarray]:
    """uint8 RGB images of a folder (sorted by name); an unreadable file is an error naming it."""
    if not folder.is_dir():
        raise ConfigError(f"no such image folder: {str(folder)!r}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ConfigError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(folder)!r}")
    images = []
    for path in paths[:limit]:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ConfigError(f"cannot read image {str(path)!r} (not an image, or corrupt)")
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return images


class BankSettings(Protocol):
    """What :class:`BankManager` reads itself (``linesight.settings.Settings`` has it all); the detector's
    fields are read by :meth:`model.factory.DetectorConfig.from_settings`."""

    database_url: str
    max_bank_rows: int

    @property
    def banks_dir(self) -> Path: ...

    @property
    def tile_setting(self) -> int | str | None: ...

    @property
    def bank_stage_indices(self) -> tuple[int, ...] | None: ...


class BankManager:
    """Builds, lists and activates banks against one database and bank folder; holds one encoder."""

    def __init__(self, settings: BankSettings, repository: Any | None = None, encoder: Any | None = None) -> None:
        from storage.db import Database
        from storage.repository import Repository

        self.settings = settings
        if repository is None:
            database = Database(settings.database_url)
            database.migrate()
            repository = Repository(database)
        self.repository = repository
        self._encoder = encoder

    @property
    def encoder(self) -> Any:
        """The frozen encoder of the settings on the chosen engine (model.factory; built on first use)."""
        if self._encoder is None:
            from model.factory import DetectorConfig, build_scoring_encoder

            self._encoder = build_scoring_encoder(DetectorConfig.from_settings(self.settings))
        return self._encoder

    def detector(self, **overrides: Any) -> Any:
        """The settings' :class:`~model.detector.Detector` on this manager's encoder (``overrides``: DetectorConfig
        fields, e.g. ``zero_shot=True``)."""
        from model.factory import DetectorConfig, build_detector

        return build_detector(DetectorConfig.from_settings(self.settings, **overrides), encoder=self.encoder)

    def build(
        self,
        product_class: str,
        images: Sequence[np.ndarray],
        *,
        shots: int | None = None,
        rotations: bool = True,
        coreset_ratio: float | None = None,
        seed: int = 0,
        activate: bool = True,
        reference_frames: Sequence[str] | None = None,
    ) -> Any:
        """Build, save, register (and by default activate) a new version; returns the bank row.

        ``reference_frames``: what the images are known by (frame ids, file names), stored with the row."""
        from model.fewshot import build_bank

        check_class_name(product_class)
        if shots is not None and shots < 1:
            raise ConfigError(f"shots must be >= 1, got {shots}")
        chosen = list(images[:shots] if shots else images)
        if not chosen:
            raise ConfigError(f"no normal images given for class {product_class!r}")
        version = self.repository.next_bank_version(product_class)
        bank = build_bank(
            self.encoder, chosen, product_class, version, rotations=rotations, seed=seed,
            tile_px=self.settings.tile_setting, stages=self.settings.bank_stage_indices,
            **({"coreset_ratio": coreset_ratio} if coreset_ratio is not None else {}),  # None: the builder's default
        )
        row = self._register(bank, activate, reference_frames)
        log.info(
            "built bank %s@v%d from %d shots (threshold %.4f)%s",
            product_class, version, len(chosen), bank.calibration.threshold, ", active" if activate else "",
        )
        return row

    def _register(self, bank: Any, activate: bool, reference_frames: Sequence[str] | None = None) -> Any:
        """Save ``bank`` under the banks folder and register (and maybe activate) it; the bank row."""
        from storage.banks import bank_file_path

        path = bank_file_path(self.settings.banks_dir, bank.product_class, bank.version)  # never outside banks_dir
        path.parent.mkdir(parents=True, exist_ok=True)
        sha256 = bank.save(path)
        return self.repository.register_bank(
            product_class=bank.product_class,
            version=bank.version,
            path=str(path),
            sha256=sha256,
            shots=bank.shots,
            encoder=bank.encoder_name,  # the bank's own: recalibrating a bank builds no encoder
            calibration=bank.calibration.to_dict(),
            activate=activate,
            reference_frames=reference_frames,
        )

    def learn_from_feedback(self, product_class: str, *, activate: bool = True) -> Any | None:
        """Fold the frames an operator marked as false alarms into a new version of the class's active bank.

        Only frames not already in the active bank (its ``learned_frames``) count; returns the new
        bank row, or None when there is nothing new to learn. The stream swaps to it within a poll.
        """
        from model.fewshot import extend_bank

        check_class_name(product_class)
        active = self._active(product_class, "learn into")
        bank = self._load(active)
        known = set(bank.learned_frames)
        frames = [f for f in self.repository.labelled_frames(product_class, "false_alarm") if f.frame_id not in known]
        usable = [(f.frame_id, _decode(f.frame_image)) for f in frames if f.frame_image]
        usable = [(frame_id, image) for frame_id, image in usable if image is not None]
        if len(usable) < len(frames):
            log.warning("class %s: %d false-alarm frames have no stored image (LINESIGHT_STORE_FRAMES) and are skipped",
                        product_class, len(frames) - len(usable))
        if not usable:
            return None
        version = self.repository.next_bank_version(product_class)
        new = extend_bank(self.encoder, bank, [image for _, image in usable], [frame_id for frame_id, _ in usable],
                          version)
        row = self._register(new, activate)
        log.info("bank %s@v%d: v%d plus %d false alarms marked by operators%s", product_class, version, bank.version,
                 len(usable), ", active" if activate else "")
        return row

    def self_calibrate(self, product_class: str, *, frames: int = 500, activate: bool = True) -> Any:
        """A new version of the class's active bank with its threshold refined from the scores the stream
        gave the last ``frames`` frames it scored (model.calibration.stream_threshold); same rows.

        Its calibration names the version it refined (``source_version``): the stream's automatic
        self-calibration (pipeline/services/self_calibration.py) refines each version once. Reversible: the
        previous version stays registered (``bank activate C V``).
        """
        from model.calibration import STREAM_MIN_FRAMES, Calibration, stream_threshold

        check_class_name(product_class)
        active = self._active(product_class, "calibrate")
        scores = [score for version, score in self.repository.recent_scores(product_class, frames)
                  if version == active.version]
        if len(scores) < STREAM_MIN_FRAMES:
            raise ConfigError(
                f"class {product_class!r}: only {len(scores)} frames scored by v{active.version} so far; "
                f"self-calibration needs {STREAM_MIN_FRAMES}"
            )
        calibration = replace(stream_threshold(scores, Calibration.from_dict(active.calibration)),
                              source_version=active.version)
        row = self._recalibrate(active, calibration, activate)
        log.info("bank %s@v%d: v%d's threshold refined from %d stream scores: %.4f -> %.4f%s", product_class,
                 row.version, active.version, len(scores), float(active.calibration["threshold"]),
                 calibration.threshold, ", active" if activate else "")
        return row

    def set_sensitivity(self, product_class: str, threshold: float | None, *, activate: bool = True) -> Any:
        """An operator's threshold for the class (``None`` clears it), as a new version of the active bank.

        The override (method ``operator-override``) stands until cleared: self-calibration leaves it
        alone and ``bank learn`` keeps it. Clearing restores the automatic calibration the override
        replaced. ConfigError names a threshold outside (0, 1] or a clear with no override active.
        """
        from model.calibration import OVERRIDE_METHOD, Calibration

        check_class_name(product_class)
        active = self._active(product_class, "set a sensitivity on")
        current = Calibration.from_dict(active.calibration)
        if threshold is None:
            if current.method != OVERRIDE_METHOD or current.source_version is None:
                raise ConfigError(f"class {product_class!r} has no sensitivity override to clear (active "
                                  f"v{active.version} is calibrated by {current.method!r})")
            calibration = Calibration.from_dict(self.repository.get_bank(product_class, current.source_version)
                                                .calibration)
        else:
            if not (math.isfinite(threshold) and 0.0 < threshold <= 1.0):
                raise ConfigError(f"sensitivity threshold must be in (0, 1] (anomaly scores are in [0, 1]), "
                                  f"got {threshold!r}")
            source = current.source_version if current.method == OVERRIDE_METHOD else active.version
            calibration = replace(current, threshold=float(threshold), method=OVERRIDE_METHOD, source_version=source)
        return self._recalibrate(active, calibration, activate)

    def with_calibration(self, product_class: str, calibration: Any, *, activate: bool = True) -> Any:
        """A new version of the class's active bank with the same rows and ``calibration``; the bank row."""
        return self._recalibrate(self._active(product_class, "recalibrate"), calibration, activate)

    def _recalibrate(self, active: Any, calibration: Any, activate: bool) -> Any:
        bank = self._load(active)
        bank.calibration = calibration
        bank.version = self.repository.next_bank_version(active.product_class)
        return self._register(bank, activate, getattr(active, "reference_frames", None))  # same rows, same references

    def calibrated_from(self, product_class: str, version: int) -> Any | None:
        """The newest version whose stream calibration refined ``version`` (None if none did)."""
        from model.calibration import STREAM_METHOD

        refined = [row for row in self.repository.list_banks(product_class)
                   if row.calibration.get("method") == STREAM_METHOD and row.calibration.get("source_version") == version]
        return refined[-1] if refined else None

    def _active(self, product_class: str, action: str) -> Any:
        active = self.repository.active_banks().get(product_class)
        if active is None:
            raise ConfigError(f"class {product_class!r} has no active bank to {action}; build one first")
        return active

    def _load(self, row: Any) -> Any:
        from model.bank import MemoryBank

        return MemoryBank.load(Path(row.path), expected_encoder=row.encoder, expected_sha256=row.sha256,
                               max_rows=self.settings.max_bank_rows)

    def activate(self, product_class: str, version: int) -> Any:
        """Make ``version`` the active bank of the class (the running stream swaps within a poll interval)."""
        from model.bank import MemoryBank

        row = self.repository.get_bank(product_class, version)
        MemoryBank.load(  # refuse to activate a broken, changed or oversized file
            Path(row.path), expected_encoder=row.encoder, expected_sha256=row.sha256,
            max_rows=self.settings.max_bank_rows,
        )
        self.repository.activate_bank(product_class, version)
        log.info("activated bank %s@v%d", product_class, version)
        return self.repository.get_bank(product_class, version)

    def list(self, product_class: str | None = None) -> list[Any]:
        """All bank versions (optionally of one class)."""
        return self.repository.list_banks(product_class)


def _decode(data: bytes) -> np.ndarray | None:
    """uint8 RGB of stored frame bytes, or None when they do not decode."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else np.ascontiguousarray(bgr[:, :, ::-1])
