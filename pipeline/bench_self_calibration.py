"""How many stream frames self-calibration needs: the spread of the refined threshold per window size.

    .venv/bin/python -m pipeline.bench_self_calibration --pool 400 --classes washer grass

Per class: a 2-shot bank, then ``--pool`` normal frames and ``--pool // 10`` defective ones of the
synthetic line, JPEG-encoded as a camera sends them, scored once. Windows of N frames are drawn
from those scores (with replacement, ``--defect-share`` of them defective, as on a line) and the
unbounded refined threshold, median + 4 robust sigmas (model.calibration.stream_threshold before
its 30 % bound), is computed per window. Prints, per N, its relative spread (std / mean) and the
share of the pool's normal frames above it; the last line is one JSON object. Not a test.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

__all__ = ["main", "robust_tail"]

WINDOWS = (50, 100, 200, 500, 1000)


def robust_tail(scores: np.ndarray) -> np.ndarray:
    """median + 4 x 1.4826 MAD along the last axis (stream_threshold's rule without its bound)."""
    median = np.median(scores, axis=-1, keepdims=True)
    return (median + 4 * 1.4826 * np.median(np.abs(scores - median), axis=-1, keepdims=True))[..., 0]


def _scores(product_class: str, pool: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from connectors.schema import decode_image, encode_image
    from model.encoders import build_encoder
    from model.factory import build_detector
    from training.fewshot import build_bank
    from training.synthetic import SyntheticLine, normal_images, rotations_ok

    encoder = build_encoder("efficientnet-lite0")
    bank = build_bank(encoder, normal_images(product_class, 2, seed=1), product_class, 1,
                      rotations=rotations_ok(product_class))
    detector = build_detector(encoder=encoder)

    def score(rate: float, count: int, line_seed: int) -> np.ndarray:
        line = SyntheticLine((product_class,), defect_rate=rate, seed=line_seed)
        images = [decode_image(encode_image(line.next_frame().image)) for _ in range(count)]
        return np.array([r.score for i in range(0, count, 16) for r in detector.score_batch(images[i:i + 16], bank)])

    return score(0.0, pool, seed), score(1.0, max(pool // 10, 1), seed + 1)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", nargs="+", default=["washer", "grass"])
    parser.add_argument("--pool", type=int, default=400, help="normal frames scored per class")
    parser.add_argument("--defect-share", type=float, default=0.03, help="share of defective frames in a window")
    parser.add_argument("--draws", type=int, default=2000, help="windows drawn per size")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    out: dict = {}
    for product_class in args.classes:
        start = time.perf_counter()
        normal, defective = _scores(product_class, args.pool, seed=11)
        print(f"{product_class}: {args.pool} normal + {defective.size} defective frames scored in "
              f"{time.perf_counter() - start:.0f} s; normal median {np.median(normal):.4f}, max {normal.max():.4f}")
        print(f"  {'N':>5} {'threshold':>9} {'spread':>7} {'normal above':>12}")
        out[product_class] = {}
        for size in WINDOWS:
            bad = rng.random((args.draws, size)) < args.defect_share
            windows = np.where(bad, rng.choice(defective, (args.draws, size)), rng.choice(normal, (args.draws, size)))
            tails = robust_tail(windows)
            spread = float(tails.std() / tails.mean())
            above = float(np.mean(normal[None, :] > tails[:, None]))
            out[product_class][size] = {"threshold": round(float(tails.mean()), 4), "spread": round(spread, 4),
                                        "normal_above": round(above, 4)}
            print(f"  {size:>5} {tails.mean():>9.4f} {spread:>7.1%} {above:>12.2%}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
