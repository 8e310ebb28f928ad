"""LLM verdicts in the evaluation (``linesight eval --llm``): accuracy of the text, parsed as Yes/No.

Per class, the k reference images of the first draw build a bank; a balanced, deterministic subset
of the test images (half good, half defective, while there are enough) is scored by the few-shot
detector, and for each image the LLM gets E_img (the encoder's global vector) and E_prompt (the
prompt learner on the anomaly map, in units of the bank's threshold: model.prompt_learner.prompt_map,
as the stream gives it). Figures:

- ``accuracy``: the plain question of docs/method.md with the class description; the LLM decides, its
  answer is parsed as Yes/No (no decision counts as wrong) and compared with the ground truth.
- ``agreement``: the stream's verdict prompt, which carries the detector's facts; the share of
  answers that agree with the detector (decision, positions and count), i.e. the share of LLM
  verdicts the stream would store instead of the template sentence.
- ``positions``: of the plain answers that say "Yes" on frames the detector flagged (``located``), the
  share that name exactly the detector's positions (the map's regions); None when there are none.

The LLM runs once per image and figure (about 3 s each on 2 CPU cores), so the subset is small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from training.datasets import AnomalyDataset, Sample

__all__ = ["LLMScore", "balanced_subset", "evaluate_llm", "llm_report"]


@dataclass(frozen=True)
class LLMScore:
    """LLM figures of one class: fractions in [0, 1] over ``images`` test images."""

    product_class: str
    images: int
    accuracy: float  # parsed Yes/No == ground truth
    agreement: float  # verdict prompt's answer agrees with the detector
    undecided: float  # share of plain answers with no Yes/No decision
    located: int = 0  # plain answers "Yes" on frames the detector flagged
    placed: int = 0  # of those, answers naming exactly the detector's positions

    @property
    def positions(self) -> float | None:
        """placed / located, None when nothing was located."""
        return self.placed / self.located if self.located else None


def balanced_subset(samples: Sequence[Sample], count: int) -> list[int]:
    """Indices of up to ``count`` samples, alternating good and defective, in dataset order.

    >>> from pathlib import Path
    >>> s = [Sample(Path(f"{i}.png"), "c", int(i % 3 == 0), "x") for i in range(6)]  # labels 1,0,0,1,0,0
    >>> balanced_subset(s, 4)
    [1, 0, 2, 3]
    """
    good = [i for i, s in enumerate(samples) if not s.label]
    bad = [i for i, s in enumerate(samples) if s.label]
    chosen: list[int] = []
    while len(chosen) < count and (good or bad):
        for pool in (good, bad):
            if pool and len(chosen) < count:
                chosen.append(pool.pop(0))
    return chosen


def evaluate_llm(
    dataset: AnomalyDataset,
    encoder,  # model.encoders.base.ImageEncoder
    gpt,  # model.anomalygpt.AnomalyGPT
    *,
    shots: int = 1,
    images_per_class: int = 8,
    max_new_tokens: int = 48,
    rotations: bool | None = None,
    progress: bool = True,
) -> list[LLMScore]:
    """Run both LLM figures on every class of ``dataset`` (see the module docstring)."""
    import torch
    from tqdm import tqdm

    from model.anomalygpt import DetectorFacts, default_description
    from model.detector import Detector
    from model.fewshot import build_bank
    from model.prompt_learner import prompt_map
    from training.evaluate import draw_references
    from training.synthetic import PRODUCT_CLASSES, rotations_ok

    size = encoder.image_size_px
    detector = Detector(encoder)
    scores: list[LLMScore] = []
    for name, data in dataset.classes.items():
        refs = [data.train[i].load_image(size) for i in draw_references(data, shots, 0)]
        rotate = rotations if rotations is not None else (rotations_ok(name) if name in PRODUCT_CLASSES else True)
        bank = build_bank(encoder, refs, name, 1, rotations=rotate, seed=0)
        picked = [data.test[i] for i in balanced_subset(data.test, images_per_class)]
        images = [s.load_image(size) for s in picked]
        frames = detector.score_batch(images, bank)
        with torch.inference_mode():
            vectors = encoder(encoder.preprocess(images)).global_vector.float()
        right = agreed = undecided = located = placed = 0
        for sample, frame, vector in tqdm(list(zip(picked, frames, vectors, strict=True)), desc=f"LLM {name}",
                                          unit="image", disable=not progress, leave=False):
            anomaly_map = prompt_map(frame.anomaly_map, frame.threshold)
            answer = gpt.ask(anomaly_map, vector, default_description(name), max_new_tokens=max_new_tokens)
            undecided += answer.is_anomalous is None
            right += answer.is_anomalous is not None and answer.is_anomalous == bool(sample.label)
            if answer.is_anomalous and frame.is_anomalous:
                located += 1
                placed += set(answer.positions) == set(frame.positions)
            facts = DetectorFacts.from_score(frame, product_class=name)
            agreed += gpt.verdict(facts, anomaly_map, vector, max_new_tokens=max_new_tokens).agrees
        n = max(1, len(picked))
        scores.append(LLMScore(name, len(picked), right / n, agreed / n, undecided / n, located, placed))
    return scores


def llm_report(scores: Sequence[LLMScore], shots: int) -> dict:
    """The ``llm`` object of ``report.json``: per class and the macro mean over classes."""
    macro = {key: float(np.mean([getattr(s, key) for s in scores])) if scores else None
             for key in ("accuracy", "agreement", "undecided")}
    located, placed = sum(s.located for s in scores), sum(s.placed for s in scores)
    macro["positions"] = placed / located if located else None  # pooled: classes differ in how many they locate
    return {
        "shots": shots,
        "macro": {**macro, "images": int(sum(s.images for s in scores)), "located": located, "placed": placed},
        "classes": {s.product_class: {**{k: v for k, v in asdict(s).items() if k != "product_class"},
                                      "positions": s.positions} for s in scores},
    }
