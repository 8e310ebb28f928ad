"""The inference stage: one batch of frames in, one batch of scored frames out.

The encoder runs once over the whole batch (classes mixed); each frame is then compared with its
class's bank version named in the task, so a hot swap takes effect at a batch boundary and every
result names the version that scored it. Run as a Ray actor by :mod:`pipeline.job`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from pipeline.bank_cache import BankCache
from pipeline.exceptions import PipelineError
from pipeline.messages import BankRef, FrameTask, ScoredFrame

__all__ = ["InferenceWorker"]

log = logging.getLogger(__name__)


class InferenceWorker:
    """Holds the frozen encoder, the detector and the versioned bank cache of one process."""

    def __init__(
        self,
        encoder_name: str = "efficientnet-lite0",
        encoder_path: str | None = None,
        image_size_px: int = 224,
        torch_threads: int = 2,
        bank_cache_size: int = 16,
        map_fusion: str = "few_only",
        checkpoint_dir: str | None = None,
    ) -> None:
        import torch

        from model.bank import MemoryBank
        from model.detector import Detector
        from model.encoders import build_encoder

        torch.set_num_threads(torch_threads)  # actors share the cores: don't oversubscribe
        encoder = build_encoder(encoder_name, Path(encoder_path) if encoder_path else None, image_size_px)
        zero_shot = None
        if map_fusion != "few_only":
            from model.zero_shot import load_zero_shot_head

            if checkpoint_dir is None:
                raise PipelineError(f"map_fusion {map_fusion!r} needs checkpoint_dir with a trained decoder")
            zero_shot = load_zero_shot_head(checkpoint_dir, encoder)
            log.info("inference fuses few-shot and zero-shot maps (%s) with %s", map_fusion, checkpoint_dir)
        self.detector = Detector(encoder, zero_shot=zero_shot, fusion=map_fusion)
        self.encoder_name = encoder.name
        self.banks: BankCache[MemoryBank] = BankCache(
            bank_cache_size, lambda ref: MemoryBank.load(Path(ref.path), expected_encoder=self.encoder_name)
        )
        self.frames_scored = 0
        self.batches_scored = 0

    def ready(self) -> bool:
        """Returns once the model is loaded (used to wait for actor start-up)."""
        return True

    def preload(self, refs: list[BankRef]) -> list[str]:
        """Load these bank versions now (e.g. at start-up) so the first frames don't wait."""
        return [self.banks.get(ref).product_class for ref in refs]

    def score(self, tasks: list[FrameTask]) -> list[ScoredFrame]:
        """Score a batch; the encoder runs once over all of it."""
        if not tasks:
            return []
        banks = [self.banks.get(task.bank) for task in tasks]
        results = self.detector.score_batch_mixed([task.image for task in tasks], banks)
        scored_at = datetime.now(UTC)
        self.frames_scored += len(tasks)
        self.batches_scored += 1
        return [
            ScoredFrame(
                task=task,
                score=result.score,
                threshold=result.threshold,
                is_anomalous=result.is_anomalous,
                anomaly_map=result.anomaly_map,
                mask=result.mask,
                positions=tuple(result.positions),
                region_count=result.region_count,
                verdict=result.verdict,
                scored_at=scored_at,
            )
            for task, result in zip(tasks, results, strict=True)
        ]

    def stats(self) -> dict[str, object]:
        """Counters for metrics and the demo summary."""
        return {
            "frames_scored": self.frames_scored,
            "batches_scored": self.batches_scored,
            "banks_cached": self.banks.keys(),
            "bank_loads": self.banks.loads,
            "bank_load_ms": dict(self.banks.load_latencies_ms),
        }
