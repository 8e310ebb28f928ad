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

``--realistic``: the same on the realistic benchmark's classes (training/realistic.py: exposures
of real photographs at ~1.2 MP with subtle defects; training/coldstart_realistic.py), at one defect
rate (10 %), frames tiled as the banks tile them (``--tile-px``, 224 frame px: the mutual scoring
compares tile (r, c) of a frame with tile (r, c) of the others); later frames are 10 good + 10
defective exposures, labelled shots k known-normal exposures.

``python -m training.coldstart_eval`` prints the table (markdown) and the cost per frame of the
mutual scoring; ``--json PATH`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import sys
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

__all__ = ["DEFECT_RATES", "LABELLED_SHOTS", "TEST_DEFECT_RATE", "evaluate_class", "evaluate_first", "labelled_shots",
           "later_frames", "main", "measure_cost"]

DEFECT_RATES = (0.05, 0.10)
REALISTIC_DEFECT_RATES = (0.10,)
REALISTIC_CLASSES = ("brick", "china", "coffee", "retina")  # the 4 of the README's realistic detection table
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


def labelled_shots(encoder, product_class: str, later: tuple[list, list[int]], seed: int, *, realistic: float = 0.0,
                   tile_px: int | None = None, detector: Detector | None = None) -> dict:
    """AUROC and accuracy on the later frames of banks from 1, 2 and 4 known-normal images (``realistic``:
    exposures of the realistic class at that many megapixels; else the synthetic line's normal images)."""
    from training.coldstart_realistic import normal_frames

    detector, row = detector or Detector(encoder), {}
    for k in LABELLED_SHOTS:
        normal = (normal_frames(product_class, k, seed=seed, megapixels=realistic) if realistic
                  else normal_images(product_class, k, seed=seed))
        bank = build_bank(encoder, normal, product_class, 1, rotations=not realistic and rotations_ok(product_class),
                          seed=seed, tile_px=tile_px)
        row[f"shots{k}_auroc"], row[f"shots{k}_accuracy"] = _bank_metrics(detector, bank, *later)
    return row


def evaluate_class(
    encoder, product_class: str, defect_rate: float, later: tuple[list, list[int]], *, frames: int, shots: int,
    seed: int, config: MutualConfig,
) -> dict:
    """Cold start over the first ``frames`` frames of the synthetic line, promotion, the promoted bank on ``later``."""
    line = SyntheticLine((product_class,), defect_rate=defect_rate, seed=seed)
    first = [line.next_frame() for _ in range(frames)]
    return evaluate_first(encoder, product_class, defect_rate, [f.image for f in first],
                          [int(f.is_defective) for f in first], later, shots=shots, seed=seed, config=config,
                          rotations=rotations_ok(product_class))


def evaluate_first(
    encoder, product_class: str, defect_rate: float, images: list, labels: list[int], later: tuple[list, list[int]],
    *, shots: int, seed: int, config: MutualConfig, rotations: bool, tile_px: int | None = None,
    detector: Detector | None = None,
) -> dict:
    """Cold start over ``images`` (the first frames, ``labels`` known only here), promotion of ``shots`` of them,
    the promoted bank on ``later``."""
    frames = len(images)
    started = time.perf_counter()
    cold = cold_start_scores(encoder, images, config, tile_px=tile_px)  # the encoder included
    cold_ms = (time.perf_counter() - started) * 1000.0 / frames
    chosen = [int(i) for i in np.argsort(cold.scores, kind="stable")[:shots]]  # = model.references.promote
    bank = build_bank(encoder, [images[i] for i in chosen], product_class, 1, rotations=rotations, seed=seed,
                      tile_px=tile_px)
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
    row["promoted_auroc"], row["promoted_accuracy"] = _bank_metrics(detector or Detector(encoder), bank, *later)
    return row


def measure_cost(encoder, frames: int, config: MutualConfig, seed: int = 0, *, realistic_class: str | None = None,
                 tile_px: int | None = None) -> dict:
    """ms per frame of the encoder and of the mutual step (window ``config.window``) over ``frames`` frames:
    224 px synthetic frames, or (``realistic_class``) ~1.2 MP frames cut into ``tile_px`` tiles (the mutual
    step then runs once per tile position)."""
    from model.tiling import TileGrid

    if realistic_class is None:
        line = SyntheticLine(("washer",), defect_rate=0.05, seed=seed)
        images = [line.next_frame().image for _ in range(frames)]
    else:
        from training.coldstart_realistic import normal_frames

        images = normal_frames(realistic_class, frames, seed=seed)
    grid = TileGrid.for_frame(images[0].shape[0], images[0].shape[1], tile_px)
    detector = Detector(encoder)
    detector.encode_tiles(images[:2])  # warm-up
    encode_s = mutual_s = 0.0
    for y, x, h, w in grid.boxes:  # one tile position at a time, as cold_start_scores does
        started = time.perf_counter()
        features = detector.encode_tiles([image[y : y + h, x : x + w] for image in images])
        encode_s += time.perf_counter() - started
        started = time.perf_counter()
        mutual_scores(features, encoder.image_size_px, config)
        mutual_s += time.perf_counter() - started
    return {"frames": frames, "frame_px": list(images[0].shape[:2]), "tiles_per_frame": grid.count,
            "window": config.window, "max_ref_patches": config.max_ref_patches,
            "encoder_ms_per_frame": round(encode_s * 1000.0 / frames, 1),
            "mutual_ms_per_frame": round(mutual_s * 1000.0 / frames, 1)}


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


def _realistic_class(encoder, product_class: str, rates, args, config: MutualConfig) -> list[dict]:
    """The rows of one realistic class: labelled shots once, then cold start per defect rate (tiled)."""
    from training.coldstart_realistic import CachedDetector, first_frames
    from training.coldstart_realistic import later_frames as realistic_later

    started = time.perf_counter()
    detector = CachedDetector(encoder)  # the later frames' tiles are encoded once for all banks
    later = realistic_later(product_class, seed=args.seed, megapixels=args.megapixels)
    shots = labelled_shots(encoder, product_class, later, args.seed, realistic=args.megapixels, tile_px=args.tile_px,
                           detector=detector)
    print(f"{product_class}: labelled shots in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    rows = []
    for rate in rates:
        started = time.perf_counter()
        images, labels = first_frames(product_class, args.frames, rate, seed=args.seed, megapixels=args.megapixels)
        row = {**evaluate_first(encoder, product_class, rate, images, labels, later, shots=args.shots, seed=args.seed,
                                config=config, rotations=False, tile_px=args.tile_px, detector=detector), **shots}
        row["frame_px"] = list(images[0].shape[:2])
        row["wall_s"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print the markdown table."""
    parser = argparse.ArgumentParser(prog="python -m training.coldstart_eval", description=__doc__.splitlines()[0])
    parser.add_argument("--classes", nargs="+", default=None,
                        help=f"default: {' '.join(PRODUCT_CLASSES)}; with --realistic {' '.join(REALISTIC_CLASSES)}")
    parser.add_argument("--realistic", action="store_true",
                        help="the realistic benchmark's classes (~1.2 MP exposures of real photographs, tiled)")
    parser.add_argument("--tile-px", type=int, default=224, help="--realistic: tile side in frame pixels")
    parser.add_argument("--megapixels", type=float, default=1.2, help="--realistic: frame size (the benchmark's 1.2)")
    parser.add_argument("--defect-rates", nargs="+", type=float, default=None,
                        help=f"share of defective first frames (default {DEFECT_RATES}; --realistic {REALISTIC_DEFECT_RATES})")
    parser.add_argument("--frames", type=int, default=64, help="first N frames of the class (cold start)")
    parser.add_argument("--shots", type=int, default=4, help="K frames promoted to the bank")
    parser.add_argument("--test", type=int, default=40, help="later frames scored by the banks")
    parser.add_argument("--window", type=int, default=MutualConfig.window, help="mutual-scoring window W")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--cost-only", action="store_true", help="only time the encoder and the mutual step")
    parser.add_argument("--cost-windows", nargs="+", type=int, default=[8, 16, 32], help="--cost-only: windows W timed")
    args = parser.parse_args(argv)
    known = REALISTIC_CLASSES if args.realistic else PRODUCT_CLASSES
    from training.realistic import CLASSES as ALL_REALISTIC

    args.classes = args.classes or list(known)
    bad = [c for c in args.classes if c not in (ALL_REALISTIC if args.realistic else PRODUCT_CLASSES)]
    if bad:
        parser.error(f"unknown class {bad[0]!r}; choose from {list(ALL_REALISTIC if args.realistic else PRODUCT_CLASSES)}")
    rates = args.defect_rates or (REALISTIC_DEFECT_RATES if args.realistic else DEFECT_RATES)
    torch.set_num_threads(args.threads)
    encoder = EfficientNetLiteEncoder()
    config = MutualConfig(window=args.window)
    if args.cost_only:
        for window in sorted(set(args.cost_windows)):
            print(json.dumps(measure_cost(encoder, args.frames, MutualConfig(window=window), args.seed,
                                          realistic_class=args.classes[0] if args.realistic else None,
                                          tile_px=args.tile_px if args.realistic else None)), flush=True)
        return 0
    rows = []
    for product_class in args.classes:
        if args.realistic:
            rows += _realistic_class(encoder, product_class, rates, args, config)
            continue
        later = later_frames(product_class, args.test, args.seed)
        shots = labelled_shots(encoder, product_class, later, args.seed)
        for rate in rates:
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
