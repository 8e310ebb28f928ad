"""The inference stage: one batch of frames in, one batch of scored frames out.

The encoder runs once over the whole batch (classes mixed); each frame is then compared with its
class's bank version named in the task, so a hot swap takes effect at a batch boundary and every
result names the version that scored it. Frames of a class in cold start (no bank yet) are scored
against the class's recent frames held here (:class:`model.mutual_window.MutualWindow`, one per
class, dropped once the class has a bank). Run as a Ray actor by :mod:`pipeline.stream.job`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from model.factory import DetectorConfig
from pipeline.exceptions import BankUnavailableError
from pipeline.services.coldstart_stream import ColdStartConfig
from pipeline.stream.bank_cache import BankCache
from pipeline.stream.messages import BankRef, FrameTask, ScoredFrame

__all__ = ["InferenceWorker"]

log = logging.getLogger(__name__)


class InferenceWorker:
    """Holds the frozen encoder, the detector and the versioned bank cache of one process."""

    def __init__(
        self,
        config: DetectorConfig | None = None,
        bank_cache_size: int = 16,
        max_bank_rows: int | None = None,
        cold_start: ColdStartConfig | None = None,
    ) -> None:
        from model.bank import DEFAULT_MAX_BANK_ROWS, MemoryBank
        from model.factory import build_detector

        config = config or DetectorConfig(engine="torch")
        self.detector = build_detector(config)  # inside the actor: compiled engines do not pickle
        encoder = self.detector.encoder
        log.info("inference: %s at %d px on %s", encoder.name, encoder.image_size_px,
                 getattr(encoder, "engine_description", "torch fp32"))
        self.encoder_name = encoder.name
        max_rows = DEFAULT_MAX_BANK_ROWS if max_bank_rows is None else max_bank_rows
        self.banks: BankCache[MemoryBank] = BankCache(
            bank_cache_size,
            lambda ref: MemoryBank.load(  # the registered sha256, threshold range and row limit checked
                Path(ref.path), expected_encoder=self.encoder_name, expected_sha256=ref.sha256 or None,
                max_rows=max_rows,
            ),
        )
        self.cold_start = cold_start or ColdStartConfig()
        self.windows: dict[str, object] = {}  # class in cold start -> its MutualWindow

    def ready(self) -> bool:
        """Returns once the model is loaded (used to wait for actor start-up)."""
        return True

    def warm_up(self, banks: list[BankRef]) -> int:
        """Load ``banks`` into the cache and run the encoder once, before frames come; returns the banks loaded.

        The stream calls it on start and on a recreated actor, so the first frames do not pay for
        the bank files and the engine's first call. Best effort: a bank that does not load is
        logged here and reported by the first frame that needs it, as without the warm-up.
        """
        import numpy as np

        loaded = 0
        for ref in list(banks)[: self.banks.capacity]:  # more would only evict each other
            try:
                self.banks.get(ref)
                loaded += 1
            except Exception as exc:  # noqa: BLE001 - the frame that needs it reports it
                log.warning("warm-up: bank %s did not load: %s: %s", ref.key, type(exc).__name__, exc)
        size = self.detector.encoder.image_size_px
        self.detector.encode_tiles([np.full((size, size, 3), 128, dtype=np.uint8)])
        return loaded

    def score(self, tasks: list[FrameTask]) -> list[ScoredFrame]:
        """Score a batch; the encoder runs once over its banked frames (once more for zero-shot ones)."""
        if not tasks:
            return []
        results: list = [None] * len(tasks)
        banked = [i for i, task in enumerate(tasks) if task.bank.version != 0]
        zero = [i for i, task in enumerate(tasks) if task.bank.is_zero_shot]
        cold: dict[str, list[int]] = {}
        for i, task in enumerate(tasks):
            if task.bank.is_cold_start:
                cold.setdefault(task.product_class, []).append(i)
        for i in banked:  # the class has a bank now: its cold-start window is not needed any more
            self.windows.pop(tasks[i].product_class, None)
        if banked:
            banks = [self._bank(tasks[i].bank) for i in banked]
            for i, result in zip(banked, self.detector.score_batch_mixed([tasks[i].image for i in banked], banks),
                                 strict=True):
                results[i] = result
        if zero:  # classes with no bank yet (zero_shot_classes): the trained decoder alone
            scored = self.detector.score_zero_shot([tasks[i].image for i in zero], [tasks[i].product_class for i in zero])
            for i, result in zip(zero, scored, strict=True):
                results[i] = result
        for product_class, rows in cold.items():  # in time order within the batch: the window is causal
            window = self._window(product_class, tasks[rows[0]].image)
            scored = self.detector.score_cold_start([tasks[i].image for i in rows], window)
            for i, result in zip(rows, scored, strict=True):
                results[i] = result
        scored_at = datetime.now(UTC)
        return [
            ScoredFrame(task=task, result=result, scored_at=scored_at)
            for task, result in zip(tasks, results, strict=True)
        ]

    def _window(self, product_class: str, first_image):
        """The class's cold-start window, made on its first frame (tiled as a new bank would be)."""
        window = self.windows.get(product_class)
        if window is None:
            from model.fewshot import resolve_tile_px
            from model.mutual import MutualConfig
            from model.mutual_window import MutualWindow

            config = self.cold_start
            tile_px = resolve_tile_px(config.tile_px, [first_image], self.detector.encoder.image_size_px)
            window = MutualWindow(MutualConfig(window=config.window), tile_px=tile_px, score_history=config.frames,
                                  min_decision_frames=config.min_decision_frames)
            self.windows[product_class] = window
            log.info("cold start %s: scoring against its last %d frames (tiles: %s)", product_class,
                     config.window - 1, tile_px or "whole frame")
        return window

    def _bank(self, ref: BankRef):
        """The loaded bank of ``ref``; a file that cannot load is the infrastructure's fault, not the frame's."""
        try:
            return self.banks.get(ref)
        except Exception as exc:
            raise BankUnavailableError(f"bank {ref.key} at {ref.path!r} could not be loaded: "
                                       f"{type(exc).__name__}: {exc}") from exc
