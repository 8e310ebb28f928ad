"""Measure cold start on the synthetic line: mutual scoring, promotion, promoted bank vs labelled shots.

Per demo class and defect rate (0.05, 0.10), seeded:

- the first ``frames`` frames of a :class:`training.synthetic.SyntheticLine` at that defect rate
  are scored mutually (no label, no bank): image AUROC and the accuracy of the automatic
  cold-start decision (``score > median + 3 MAD``) on those frames;
- the ``shots`` most normal of them are promoted to a bank: how many of them are truly defective
  (target 0);
- later frames (``test`` frames of a fresh line of the class at ``TEST_DEFECT_RATE`` defects, so
  that the AUROC rests on enough defects) are scored by the promoted bank and by banks from 1, 2
  and 4 known-normal images (``normal_images``): image AUROC and accuracy of the bank's calibrated
  decision.

``python -m training.coldstart_eval`` prints the table (markdown) and the cost per frame of the
mutual scoring; ``--json PATH`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from model.detector import Detector
from model.encoders.efficientnet import EfficientNetLiteEncoder
from model.fewshot import build_bank
from model.mutual import MutualConfig, mutual_scores
from model.references import cold_start_scores
from training.metrics import accuracy, image_auroc
from training.synthetic import PRODUCT_CLASSES, SyntheticLine, normal_images, rotations_ok

__all__ = ["DEFECT_RATES", "LABELLED_SHOTS", "TEST_DEFECT_RATE", "evaluate_class", "labelled_shots", "later_frames", "main", "measure_cost"]

DEFECT_RATES = (0.05, 0.10)
LABELLED_SHOTS = (1, 2, 4)
TEST_DEFECT_RATE = 0.3  # later frames: enough defects for a stable AUROC


def _bank_metrics(detector: Detector, bank, images, labels) -> tuple[float, float]:
    results = detector.score_batch(images, bank)
    scores = [r.score for r in results]
    return image_auroc(labels, scores), accuracy(labels, [r.is_anomalous for r in results])


def later_frames(product_class: str, test: int, seed: int) -> tuple[list, list[int]]:
    """The later frames the banks are compared on (a fresh line at TEST_DEFECT_RATE) and their labels."""
    line = SyntheticLine((product_class,), defect_rate=TEST_DEFECT_RATE, seed=seed + 1000)
    frames = [line.next_frame() for _ in range(test)]
    return [f.image for f in frames], [int(f.is_defective) for f in frames]


def labelled_shots(encoder, product_class: str, later: tuple[list, list[int]], seed: int) -> dict:
    """AUROC and accuracy on the later frames of banks from 1, 2 and 4 known-normal images."""
    detector, row = Detector(encoder), {}
    for k in LABELLED_SHOTS:
        bank = build_bank(encoder, normal_images(product_class, k, seed=seed), product_class, 1,
                          rotations=rotations_ok(product_class), seed=seed)
        row[f"shots{k}_auroc"], row[f"shots{k}_accuracy"] = _bank_metrics(detector, bank, *later)
    return row


def evaluate_class(
    encoder, product_class: str, defect_rate: float, later: tuple[list, list[int]], *, frames: int, shots: int,
    seed: int, config: MutualConfig,
) -> dict:
    """Cold start over the first ``frames`` frames, promotion of ``shots`` of them, the promoted bank on ``later``."""
    line = SyntheticLine((product_class,), defect_rate=defect_rate, seed=seed)
    first = [line.next_frame() for _ in range(frames)]
    labels = [int(f.is_defective) for f in first]
    images = [f.image for f in first]
    started = time.perf_counter()
    cold = cold_start_scores(encoder, images, config)  # the encoder included
    cold_ms = (time.perf_counter() - started) * 1000.0 / frames
    chosen = [int(i) for i in np.argsort(cold.scores, kind="stable")[:shots]]  # = model.references.promote
    bank = build_bank(encoder, [images[i] for i in chosen], product_class, 1, rotations=rotations_ok(product_class),
                      seed=seed)
    row = {
        "class": product_class,
        "defect_rate": defect_rate,
        "frames": frames,
        "defective_frames": int(sum(labels)),
        "cold_auroc": image_auroc(labels, cold.scores) if 0 < sum(labels) < frames else float("nan"),
        "cold_accuracy": accuracy(labels, cold.decisions),
        "cold_ms_per_frame": cold_ms,
        "promoted_defective": int(sum(labels[i] for i in chosen)),
        "promoted": chosen,
        "test_frames": len(later[1]),
        "test_defective": int(sum(later[1])),
    }
    row["promoted_auroc"], row["promoted_accuracy"] = _bank_metrics(Detector(encoder), bank, *later)
    return row


def measure_cost(encoder, frames: int, config: MutualConfig, seed: int = 0) -> dict:
    """ms per frame of the encoder and of the mutual step (window ``config.window``) over ``frames`` frames."""
    line = SyntheticLine(("washer",), defect_rate=0.05, seed=seed)
    images = [line.next_frame().image for _ in range(frames)]
    detector = Detector(encoder)
    detector.encode_tiles(images[:2])  # warm-up
    started = time.perf_counter()
    features = detector.encode_tiles(images)
    encode_ms = (time.perf_counter() - started) * 1000.0 / frames
    started = time.perf_counter()
    mutual_scores(features, encoder.image_size_px, config)
    mutual_ms = (time.perf_counter() - started) * 1000.0 / frames
    return {"frames": frames, "window": config.window, "max_ref_patches": config.max_ref_patches,
            "encoder_ms_per_frame": round(encode_ms, 1), "mutual_ms_per_frame": round(mutual_ms, 1)}


def _table(rows: list[dict]) -> str:
    header = ("| class | defects | cold AUROC | cold acc | promoted: defective | promoted AUROC / acc | "
              "1 shot | 2 shots | 4 shots |")
    lines = [header, "|" + "---|" * 9]
    for r in rows:
        shots = " | ".join(f"{100 * r[f'shots{k}_auroc']:.1f} / {100 * r[f'shots{k}_accuracy']:.1f}"
                           for k in LABELLED_SHOTS)
        lines.append(
            f"| {r['class']} | {100 * r['defect_rate']:.0f} % ({r['defective_frames']}/{r['frames']}) | "
            f"{100 * r['cold_auroc']:.1f} | {100 * r['cold_accuracy']:.1f} | {r['promoted_defective']} of "
            f"{len(r['promoted'])} | {100 * r['promoted_auroc']:.1f} / {100 * r['promoted_accuracy']:.1f} | {shots} |"
        )
    for rate in sorted({r["defect_rate"] for r in rows}):
        subset = [r for r in rows if r["defect_rate"] == rate]
        mean = {key: float(np.nanmean([r[key] for r in subset])) for key in subset[0] if key.endswith(("auroc", "accuracy"))}
        shots = " | ".join(f"{100 * mean[f'shots{k}_auroc']:.1f} / {100 * mean[f'shots{k}_accuracy']:.1f}"
                           for k in LABELLED_SHOTS)
        lines.append(
            f"| **mean** | {100 * rate:.0f} % | {100 * mean['cold_auroc']:.1f} | {100 * mean['cold_accuracy']:.1f} | "
            f"{sum(r['promoted_defective'] for r in subset)} of {sum(len(r['promoted']) for r in subset)} | "
            f"{100 * mean['promoted_auroc']:.1f} / {100 * mean['promoted_accuracy']:.1f} | {shots} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print the markdown table."""
    parser = argparse.ArgumentParser(prog="python -m training.coldstart_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--classes", nargs="+", default=list(PRODUCT_CLASSES), choices=PRODUCT_CLASSES)
    parser.add_argument("--frames", type=int, default=64, help="first N frames of the class (cold start)")
    parser.add_argument("--shots", type=int, default=4, help="K frames promoted to the bank")
    parser.add_argument("--test", type=int, default=40, help="later frames scored by the banks")
    parser.add_argument("--window", type=int, default=MutualConfig.window, help="mutual-scoring window W")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--cost-only", action="store_true", help="only time the encoder and the mutual step")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    encoder = EfficientNetLiteEncoder()
    config = MutualConfig(window=args.window)
    if args.cost_only:
        for window in sorted({8, 16, 32, args.window}):
            print(json.dumps(measure_cost(encoder, args.frames, MutualConfig(window=window), args.seed)), flush=True)
        return 0
    rows = []
    for product_class in args.classes:
        later = later_frames(product_class, args.test, args.seed)
        shots = labelled_shots(encoder, product_class, later, args.seed)
        for rate in DEFECT_RATES:
            row = {**evaluate_class(encoder, product_class, rate, later, frames=args.frames, shots=args.shots,
                                    seed=args.seed, config=config), **shots}
            rows.append(row)
            print(json.dumps(row), flush=True)
    rows.sort(key=lambda r: (r["defect_rate"], args.classes.index(r["class"])))
    print()
    print(_table(rows))
    cost = np.mean([r["cold_ms_per_frame"] for r in rows])
    print(f"\nmutual scoring (encoder included), window {args.window}, {args.threads} threads: "
          f"{cost:.0f} ms per frame (mean over runs)")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
