"""Per-core inspection throughput for the capacity model: ``.venv/bin/python -m linesight.bench_capacity``.

One inspection = encoder + memory bank + anomaly map (``Detector.score_batch``, as an inference actor
runs it), for each inspection size / tiling in :data:`CASES`, on eager torch and on the engine that
``engine="auto"`` picks on this host, with ONE thread each: one core, i.e. one inference actor with
``LINESIGHT_TORCH_THREADS=1`` and ``LINESIGHT_INFERENCE_CPUS=1``. Two figures: frames per wall-clock second
(what the process got on this machine) and frames per CPU-second the process used (``time.process_time``:
what one core delivers, far less sensitive to other work on a shared machine). Every (case, engine) runs in its own
subprocess; the engines alternate their order from round to round. Each round prints its figures with
the load average, and the engine/torch ratio of that round (both measured minutes apart at most); the
LAST line is one JSON object: CPU features, every round, the best round per (case, engine).
A benchmark, not a test: on a shared machine the figures are lower bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["CASES", "main", "measure", "summarise"]

# name -> (frame: "synthetic" (a square synthetic-line frame of the model's size) or megapixels of a
# real photograph, model input side in px, tile_px of the bank: None = whole frame, "auto" = tiles of S px)
CASES: dict[str, tuple[str | float, int, str | None]] = {
    "224px-whole": ("synthetic", 224, None),
    "448px-whole": ("synthetic", 448, None),
    "1.2MP-224px-tiles": (1.2, 224, "auto"),
    "1.2MP-448px-tiles": (1.2, 448, "auto"),
}
_CLASS = "brick"


def _frames_and_bank(encoder: Any, frame: str | float, size: int, tile: str | None, count: int):
    """``count`` test frames and a 1-version bank for the case (4 normal shots; a tiled bank: 1 shot, its cost
    is in the tiles, not the shots)."""
    import numpy as np

    from model.fewshot import build_bank

    if frame == "synthetic":
        from training.synthetic import SyntheticLine, normal_images, rotations_ok

        line = SyntheticLine(product_classes=(_CLASS,), image_size_px=size, seed=3)
        frames = [line.next_frame().image for _ in range(count)]
        bank = build_bank(encoder, normal_images(_CLASS, 4, size), _CLASS, 1, rotations=rotations_ok(_CLASS))
        return frames, bank
    from training.realistic import exposure, source_photo

    photo = source_photo(_CLASS, float(frame))
    rng = np.random.default_rng(0)
    shots = [exposure(photo, rng)]
    return [exposure(photo, rng) for _ in range(count)], build_bank(encoder, shots, _CLASS, 1, tile_px=tile)


def _worker(args: argparse.Namespace) -> None:
    """Time one (case, engine) in this process; print one JSON line (runs in a subprocess)."""
    import torch

    from model.factory import DetectorConfig, build_detector
    from model.tiling import TileGrid

    torch.set_num_threads(args.threads)
    frame: str | float = args.frame if args.frame == "synthetic" else float(args.frame)
    config = DetectorConfig(engine=args.engine, image_size_px=args.size, threads=args.threads,
                            engine_cache_dir=Path(args.cache_dir))
    detector = build_detector(config)
    frames, bank = _frames_and_bank(detector.encoder, frame, args.size, args.tile or None, args.batch)
    detector.score_batch(frames, bank)  # warm-up (allocations, the engine's shape specialisation)
    done, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while done < 2 * len(frames) or time.perf_counter() - start < args.duration_s:
        detector.score_batch(frames, bank)
        done += len(frames)
    fps, cpu_fps = done / (time.perf_counter() - start), done / (time.process_time() - cpu_start)
    tiles = TileGrid.for_frame(*frames[0].shape[:2], bank.tile_px, bank.tile_overlap).count
    print(json.dumps({"fps": round(fps, 3), "fps_per_cpu_s": round(cpu_fps, 3), "tiles_per_frame": tiles,
                      "frame_px": list(frames[0].shape[:2]),
                      "description": getattr(detector.encoder, "engine_description", "torch fp32"),
                      **_per_frame_costs(frames[0], detector.score_batch(frames[:1], bank)[0])}), flush=True)


def _per_frame_costs(image: Any, result: Any, repeats: int = 10) -> dict[str, Any]:
    """Per frame, outside the model: the ingest loop's JPEG decode, the sink's row (map and mask PNGs), and the
    bytes Ray moves through the object store (ingest -> inference: the task; inference -> sink: the scored frame)."""
    import pickle
    from datetime import UTC, datetime

    from connectors.schema import decode_image, encode_image
    from pipeline.stream.messages import BankRef, FrameTask, ScoredFrame
    from pipeline.stream.sink import to_record

    jpeg = encode_image(image)  # what CameraPublisher sends (JPEG, quality 90)
    now = datetime.now(UTC)
    start = time.perf_counter()
    for _ in range(repeats):
        decoded = decode_image(jpeg)
    decode_ms = (time.perf_counter() - start) * 1000 / repeats
    task = FrameTask("f-1", "line-1", "cam-1", _CLASS, now, now, decoded, jpeg, BankRef(_CLASS, 1, ""), "frames", 0, 0)
    scored = ScoredFrame(task, result, now)
    to_record(scored, now)  # warm-up (imports, the PNG encoder)
    start = time.perf_counter()
    for _ in range(repeats):
        to_record(scored, now)
    record_ms = (time.perf_counter() - start) * 1000 / repeats
    return {"jpeg_bytes": len(jpeg), "ingest_decode_ms": round(decode_ms, 2), "sink_record_ms": round(record_ms, 2),
            "task_bytes": len(pickle.dumps(task, protocol=5)), "scored_bytes": len(pickle.dumps(scored, protocol=5))}


def _child(argv: list[str], timeout_s: float) -> dict[str, Any]:
    from linesight.bench_engine import _run_child

    return _run_child(argv, timeout_s, module="linesight.bench_capacity")


def measure(cases: Sequence[str] = tuple(CASES), engines: Sequence[str] = ("torch", "auto"), rounds: int = 2, *,
            duration_s: float = 4.0, threads: int = 1, cache_dir: Path | None = None,
            timeout_s: float = 900.0) -> dict[str, Any]:
    """Frames/s per (case, engine) and round; see the module docstring. Prints each figure as it comes."""
    from model.engine import detect_cpu_features

    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="capacity-engine-cache-") as folder:
            return measure(cases, engines, rounds, duration_s=duration_s, threads=threads, cache_dir=Path(folder),
                           timeout_s=timeout_s)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise ValueError(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    runs: list[dict[str, Any]] = []
    for round_index in range(rounds):
        for case in cases:
            frame, size, tile = CASES[case]
            order = list(engines) if round_index % 2 == 0 else list(reversed(engines))
            for engine in order:
                load_before = os.getloadavg()[0]
                result = _child(["--worker", "--engine", engine, "--frame", str(frame), "--size", str(size),
                                 "--tile", tile or "", "--batch", "2" if tile else "8", "--threads", str(threads),
                                 "--duration-s", str(duration_s), "--cache-dir", str(cache_dir)], timeout_s)
                run = {"round": round_index + 1, "case": case, "engine": engine, "load_1min": load_before, **result}
                runs.append(run)
                print(f"round {run['round']} | {case} | {engine}: {result.get('fps', result.get('error'))} frames/s, "
                      f"{result.get('fps_per_cpu_s')} per CPU-second ({result.get('tiles_per_frame', '?')} tiles/frame; "
                      f"{result.get('description', '')}; load {load_before:.1f})", flush=True)
    return {"cpu": detect_cpu_features().describe(), "threads": threads, "runs": runs,
            **summarise(runs, engines, "fps"), **summarise(runs, engines, "fps_per_cpu_s")}


def summarise(runs: list[dict[str, Any]], engines: Sequence[str], key: str = "fps") -> dict[str, Any]:
    """The best ``key`` per (case, engine) over the rounds, and per round the ratio last engine / first engine.

    >>> runs = [{"round": 1, "case": "a", "engine": "torch", "fps": 2.0}, {"round": 1, "case": "a", "engine": "auto",
    ...         "fps": 3.0}, {"round": 2, "case": "a", "engine": "torch", "fps": 2.5}]
    >>> summarise(runs, ("torch", "auto"))
    {'best_fps': {'a': {'torch': 2.5, 'auto': 3.0}}, 'auto_to_torch_fps_ratio_per_round': {'a': [1.5]}}
    """
    best: dict[str, dict[str, float]] = {}
    for run in runs:
        if run.get(key):
            per_case = best.setdefault(run["case"], {})
            per_case[run["engine"]] = max(per_case.get(run["engine"], 0.0), run[key])
    first, last = engines[0], engines[-1]
    ratios: dict[str, list[float]] = {}
    for run in runs:
        if run["engine"] == last != first and run.get(key):
            pair = next((r for r in runs if (r["round"], r["case"], r["engine"]) == (run["round"], run["case"], first)
                         and r.get(key)), None)
            if pair:
                ratios.setdefault(run["case"], []).append(round(run[key] / pair[key], 2))
    return {f"best_{key}": best, f"{last}_to_{first}_{key}_ratio_per_round": ratios}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: the benchmark, or (``--worker``) one measurement subprocess."""
    parser = argparse.ArgumentParser(prog="python -m linesight.bench_capacity", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--engines", default="torch,auto", help="engines to compare (first = the reference)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration-s", type=float, default=4.0, help="timed seconds per case, engine and round")
    parser.add_argument("--threads", type=int, default=1, help="threads per measurement (1 = per core)")
    parser.add_argument("--cache-dir", default=None, help="engine export cache (default: a temporary folder)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="torch", help=argparse.SUPPRESS)
    parser.add_argument("--frame", default="synthetic", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=224, help=argparse.SUPPRESS)
    parser.add_argument("--tile", default="", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0
    result = measure([c.strip() for c in args.cases.split(",") if c.strip()],
                     [e.strip() for e in args.engines.split(",") if e.strip()], args.rounds,
                     duration_s=args.duration_s, threads=args.threads,
                     cache_dir=Path(args.cache_dir) if args.cache_dir else None)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
