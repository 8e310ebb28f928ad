"""The inference stage: one batch of frames in, one batch of scored frames out.

The encoder runs once over the whole batch (classes mixed); each frame is then compared with its
class's bank version named in the task, so a hot swap takes effect at a batch boundary and every
result names the version that scored it. Run as a Ray actor by :mod:`pipeline.stream.job`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from model.factory import DetectorConfig
from pipeline.exceptions import BankUnavailableError
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

    def ready(self) -> bool:
        """Returns once the model is loaded (used to wait for actor start-up)."""
        return True

    def score(self, tasks: list[FrameTask]) -> list[ScoredFrame]:
        """Score a batch; the encoder runs once over its banked frames (once more for zero-shot ones)."""
        if not tasks:
            return []
        results: list = [None] * len(tasks)
        banked = [i for i, task in enumerate(tasks) if not task.bank.is_zero_shot]
        zero = [i for i, task in enumerate(tasks) if task.bank.is_zero_shot]
        if banked:
            banks = [self._bank(tasks[i].bank) for i in banked]
            for i, result in zip(banked, self.detector.score_batch_mixed([tasks[i].image for i in banked], banks),
                                 strict=True):
                results[i] = result
        if zero:  # classes with no bank yet (zero_shot_classes): the trained decoder alone
            scored = self.detector.score_zero_shot([tasks[i].image for i in zero], [tasks[i].product_class for i in zero])
            for i, result in zip(zero, scored, strict=True):
                results[i] = result
        scored_at = datetime.now(UTC)
        return [
            ScoredFrame(task=task, result=result, scored_at=scored_at)
            for task, result in zip(tasks, results, strict=True)
        ]

    def _bank(self, ref: BankRef):
        """The loaded bank of ``ref``; a file that cannot load is the infrastructure's fault, not the frame's."""
        try:
            return self.banks.get(ref)
        except Exception as exc:
            raise BankUnavailableError(f"bank {ref.key} at {ref.path!r} could not be loaded: "
                                       f"{type(exc).__name__}: {exc}") from exc
