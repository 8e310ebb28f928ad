"""Bare encoder throughput per engine: ``.venv/bin/python -m linesight.bench_engine`` (a benchmark, not a test).

Every backend (eager torch with 1 and 2 threads, ONNX Runtime fp32, OpenVINO fp32 and, where the CPU
has bf16, OpenVINO bf16) is timed in ITS OWN subprocess, one after the other, alternating over
``rounds`` rounds; a backend's figure is its best round (the least disturbed by other work on the
machine). Two runtimes in one process spin against each other's thread pools, and eager torch with
2 threads collapses when the other core is busy, hence the separate processes and the best-of.

The table goes to stdout and the LAST line is one JSON object: CPU features, frames/s per image
size, backend and batch, each backend's worst patch cosine to torch fp32 on the probe images, the
engine ``auto`` picks here, ``torch_bare_fps``, ``engine_bare_fps`` and ``engine_to_torch_ratio``.
:func:`measure_backends` returns that object (for ``linesight/bench.py``). ``--accuracy`` measures
instead the few-shot image AUROC on the synthetic demo classes with each backend
(:func:`measure_accuracy`): does bf16 move detection?
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["backends_for_this_host", "main", "measure_accuracy", "measure_backends", "measure_bare_models"]

# (label, engine, precision, threads); threads=None: the ``threads`` argument of measure_backends
_TORCH = [("torch-1t fp32", "torch", "fp32", 1), ("torch-2t fp32", "torch", "fp32", 2)]


def backends_for_this_host(threads: int = 2) -> list[tuple[str, str, str, int]]:
    """The (label, engine, precision, threads) rows this machine can run: torch always, the rest if installed."""
    from model.engine import available_engines, detect_cpu_features

    rows = list(_TORCH)
    found = available_engines()
    if "onnxruntime" in found:
        rows.append((f"onnxruntime-{threads}t fp32", "onnxruntime", "fp32", threads))
    if "openvino" in found:
        rows.append((f"openvino-{threads}t fp32", "openvino", "fp32", threads))
        if detect_cpu_features().has_bf16:
            rows.append((f"openvino-{threads}t bf16", "openvino", "bf16", threads))
    return rows


def _frames_per_s(run, inputs, batches: Sequence[int], duration_s: float) -> dict[str, float]:
    """``{batch: frames/s}`` of ``run(inputs(batch))``: one warm-up call (first-call allocations, OpenVINO's
    shape specialisation), then calls for at least ``duration_s`` and two batches."""
    fps: dict[str, float] = {}
    for batch in batches:
        data = inputs(batch)
        run(data)  # warm-up
        done, start = 0, time.perf_counter()
        while done < 2 * batch or time.perf_counter() - start < duration_s:
            run(data)
            done += batch
        fps[str(batch)] = done / (time.perf_counter() - start)
    return fps


def _worker(args: argparse.Namespace) -> None:
    """Time one backend in this process and print one JSON line (runs in a subprocess)."""
    import torch

    from model.encoders import build_encoder
    from model.engine import accelerate, probe_pixels

    torch.set_num_threads(args.threads if args.engine == "torch" else 1)
    encoder = build_encoder(args.encoder, Path(args.encoder_path) if args.encoder_path else None, args.size)
    if args.engine == "torch":
        model = encoder
        worst = 1.0
    else:
        model = accelerate(encoder, engine=args.engine, precision=args.precision,
                           cache_dir=Path(args.cache_dir), threads=args.threads)
        probes = probe_pixels(encoder)
        with torch.no_grad():
            want, got = encoder(probes), model(probes)
        worst = min(float(torch.nn.functional.cosine_similarity(a, b, dim=1).min())
                    for a, b in zip(want.patch_features, got.patch_features, strict=True))
    def inputs(batch: int) -> torch.Tensor:
        return encoder.normalize(torch.rand(batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)))

    with torch.no_grad():
        fps = _frames_per_s(model, inputs, args.batches, args.duration_s)
    print(json.dumps({"fps": fps, "worst_patch_cosine": worst, "description": model.engine_description}), flush=True)


def _bare_worker(args: argparse.Namespace) -> None:
    """Time the bare model (encoder + bank + map, ``build_detector``) on one engine in this process (a subprocess)."""
    from model.factory import DetectorConfig, build_detector
    from model.fewshot import build_bank
    from training.synthetic import PRODUCT_CLASSES, SyntheticLine, normal_images, rotations_ok

    config = DetectorConfig(encoder=args.encoder, encoder_path=Path(args.encoder_path) if args.encoder_path else None,
                            image_size_px=args.size, engine=args.engine, precision=args.precision,
                            engine_cache_dir=Path(args.cache_dir), threads=args.threads)
    detector = build_detector(config)
    cls = PRODUCT_CLASSES[0]
    bank = build_bank(detector.encoder, normal_images(cls, 4, args.size), cls, 1, rotations=rotations_ok(cls))
    line = SyntheticLine(product_classes=(cls,), seed=3)
    images = [line.next_frame().image for _ in range(max(args.batches))]
    fps = _frames_per_s(lambda frames: detector.score_batch(frames, bank), lambda batch: images[:batch],
                        args.batches, args.duration_s)
    description = getattr(detector.encoder, "engine_description", "torch fp32")
    print(json.dumps({"fps": fps, "description": description}), flush=True)


def measure_bare_models(
    image_size_px: int = 224,
    batches: Sequence[int] = (1, 8, 16),
    rounds: int = 2,
    *,
    duration_s: float = 3.0,
    threads: int = 2,
    encoder: str = "efficientnet-lite0",
    cache_dir: Path | None = None,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Frames/s of the bare model (encoder + bank + map) per engine: torch (1 and ``threads`` threads) and the
    engine ``auto`` picks, each in its own subprocess, alternating over ``rounds``; best round per batch size.

    Returns ``{"fps": {label: {batch: fps}}, "auto": description, "torch_bare_fps", "engine_bare_fps",
    "engine_to_torch_ratio", "errors"}`` (the bare figures: best over batch sizes, torch also over threads).
    """
    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="engine-cache-") as folder:
            return measure_bare_models(image_size_px, batches, rounds, duration_s=duration_s, threads=threads,
                                       encoder=encoder, cache_dir=Path(folder), timeout_s=timeout_s)
    rows = [("torch-1t fp32", "torch", 1), (f"torch-{threads}t fp32", "torch", threads), (f"auto-{threads}t", "auto", threads)]
    common = ["--encoder", encoder, "--size", str(image_size_px), "--cache-dir", str(cache_dir),
              "--batches", ",".join(map(str, batches)), "--duration-s", str(duration_s)]
    fps: dict[str, dict[str, float]] = {label: {} for label, *_ in rows}
    errors: dict[str, str] = {}
    auto = ""
    for round_index in range(rounds):
        shift = round_index % len(rows)
        for label, engine, row_threads in rows[shift:] + rows[:shift]:  # alternate the order
            result = _run_child(["--bare-worker", "--engine", engine, "--precision", "auto", "--threads",
                                 str(row_threads), *common], timeout_s)
            if "error" in result:
                errors[label] = result["error"]
                continue
            if engine == "auto":
                auto = result["description"]
            for batch, value in result["fps"].items():
                fps[label][batch] = max(fps[label].get(batch, 0.0), round(value, 2))
    torch_best = max((v for label, per in fps.items() if label.startswith("torch") for v in per.values()), default=0.0)
    engine_best = max(fps[rows[-1][0]].values(), default=0.0)
    return {
        "image_size_px": image_size_px,
        "fps": fps,
        "auto": auto,
        "torch_bare_fps": torch_best,
        "engine_bare_fps": engine_best,
        "engine_to_torch_ratio": round(engine_best / torch_best, 2) if torch_best else None,
        "errors": errors,
    }


def _auto_choice(args: argparse.Namespace) -> None:
    """Print what ``accelerate(engine="auto")`` picks on this machine (runs in a subprocess)."""
    from model.encoders import build_encoder
    from model.engine import accelerate

    encoder = build_encoder(args.encoder, Path(args.encoder_path) if args.encoder_path else None, args.size)
    fast = accelerate(encoder, cache_dir=Path(args.cache_dir), threads=args.threads)
    print(json.dumps({"engine": fast.engine, "precision": fast.precision, "description": fast.engine_description}))


def _accuracy_worker(args: argparse.Namespace) -> None:
    """Few-shot image AUROC on the synthetic demo classes with one engine (runs in a subprocess)."""
    import torch

    from model.encoders import build_encoder
    from model.engine import accelerate
    from training.datasets import export_synthetic_dataset, load_dataset
    from training.evaluate import EvalConfig, evaluate

    torch.set_num_threads(1)
    encoder = build_encoder(args.encoder, Path(args.encoder_path) if args.encoder_path else None, args.size)
    if args.engine != "torch":
        encoder = accelerate(encoder, engine=args.engine, precision=args.precision, cache_dir=Path(args.cache_dir))
    with tempfile.TemporaryDirectory() as folder:
        root = export_synthetic_dataset(folder, None, n_train=8, n_test=24, seed=0, image_size_px=args.size)
        result = evaluate(load_dataset(root), encoder, EvalConfig(shots=(1, 4), seeds=2), progress=False)
    auroc = {f"k{k}": round(100 * result.macro("few_shot", k).mean.image_auroc, 2) for k in (1, 4)}
    print(json.dumps({"image_auroc": auroc, "description": encoder.engine_description}), flush=True)


def measure_accuracy(image_size_px: int = 224, *, threads: int = 2, encoder: str = "efficientnet-lite0",
                     cache_dir: Path | None = None, timeout_s: float = 1800.0) -> dict[str, Any]:
    """Few-shot image AUROC (k=1 and 4, 2 draws, synthetic demo classes) per backend, one subprocess each."""
    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="engine-cache-") as folder:
            return measure_accuracy(image_size_px, threads=threads, encoder=encoder, cache_dir=Path(folder),
                                    timeout_s=timeout_s)
    cache = Path(cache_dir)
    results = {}
    for label, engine, precision, _ in backends_for_this_host(threads):
        if label.startswith("torch-2t"):
            continue  # same numbers as 1 thread
        results[label] = _run_child(["--accuracy-worker", "--engine", engine, "--precision", precision, "--encoder",
                                     encoder, "--size", str(image_size_px), "--cache-dir", str(cache)], timeout_s)
    return results


def _run_child(argv: list[str], timeout_s: float, module: str = "linesight.bench_engine") -> dict[str, Any]:
    """Run ``python -m module argv`` in its own process (one backend per process); its last JSON line."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")  # idle OpenMP threads must not spin
    done = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True,
                          text=True, timeout=timeout_s, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def measure_backends(
    image_size_px: int = 224,
    batches: Sequence[int] = (1, 8, 16),
    rounds: int = 3,
    *,
    duration_s: float = 3.0,
    threads: int = 2,
    encoder: str = "efficientnet-lite0",
    encoder_path: Path | None = None,
    cache_dir: Path | None = None,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Frames/s of every backend at ``image_size_px`` for each batch size: best of ``rounds`` alternating rounds.

    Returns ``{"image_size_px", "fps": {label: {batch: fps}}, "worst_patch_cosine": {label: c},
    "auto": {"engine", "precision", "description"}, "torch_bare_fps", "engine_bare_fps",
    "engine_to_torch_ratio", "errors"}``; the bare figures are the best over batch sizes (torch: and
    over 1 and 2 threads).
    """
    from model.engine import detect_cpu_features

    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="engine-cache-") as folder:
            return measure_backends(image_size_px, batches, rounds, duration_s=duration_s, threads=threads,
                                    encoder=encoder, encoder_path=encoder_path, cache_dir=Path(folder),
                                    timeout_s=timeout_s)
    cache = Path(cache_dir)
    common = ["--encoder", encoder, "--size", str(image_size_px), "--cache-dir", str(cache)]
    if encoder_path:
        common += ["--encoder-path", str(encoder_path)]
    auto = _run_child(["--auto-choice", "--threads", str(threads), *common], timeout_s)  # also exports once
    rows = backends_for_this_host(threads)
    fps: dict[str, dict[str, float]] = {label: {} for label, *_ in rows}
    cosine: dict[str, float] = {}
    errors: dict[str, str] = {}
    for round_index in range(rounds):
        shift = round_index % len(rows)
        for label, engine, precision, row_threads in rows[shift:] + rows[:shift]:  # alternate the order
            result = _run_child(["--worker", "--engine", engine, "--precision", precision, "--threads",
                                 str(row_threads), "--batches", ",".join(map(str, batches)),
                                 "--duration-s", str(duration_s), *common], timeout_s)
            if "error" in result:
                errors[label] = result["error"]
                continue
            cosine[label] = result["worst_patch_cosine"]
            for batch, value in result["fps"].items():
                fps[label][batch] = max(fps[label].get(batch, 0.0), round(value, 2))
    torch_best = max((v for label, per in fps.items() if label.startswith("torch") for v in per.values()), default=0.0)
    auto_label = next((label for label, engine, precision, _ in rows
                       if (engine, precision) == (auto.get("engine"), auto.get("precision")) and engine != "torch"), None)
    engine_best = max(fps.get(auto_label, {}).values(), default=torch_best) if auto_label else torch_best
    return {
        "image_size_px": image_size_px,
        "cpu": detect_cpu_features().describe(),
        "fps": fps,
        "worst_patch_cosine": cosine,
        "auto": auto,
        "torch_bare_fps": torch_best,
        "engine_bare_fps": engine_best,
        "engine_to_torch_ratio": round(engine_best / torch_best, 2) if torch_best else None,
        "errors": errors,
    }


def _table(result: dict[str, Any]) -> str:
    batches = sorted({int(b) for per in result["fps"].values() for b in per})
    lines = [f"encoder frames/s at {result['image_size_px']} px (best of rounds; cpu: {result['cpu']})",
             f"{'backend':<24}" + "".join(f"{'batch ' + str(b):>10}" for b in batches) + f"{'worst cos':>11}"]
    for label, per in result["fps"].items():
        cos = result["worst_patch_cosine"].get(label)
        lines.append(f"{label:<24}" + "".join(f"{per.get(str(b), float('nan')):>10.1f}" for b in batches)
                     + (f"{cos:>11.4f}" if cos is not None else f"{'-':>11}"))
    lines.append(f"auto: {result['auto'].get('description', result['auto'])}")
    lines.append(f"engine/torch (best vs best): {result['engine_to_torch_ratio']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: the benchmark, or (with ``--worker``/``--auto-choice``) one measurement subprocess."""
    parser = argparse.ArgumentParser(prog="python -m linesight.bench_engine", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="224,448", help="image sizes in px, comma-separated")
    parser.add_argument("--batches", default="1,8,16", help="batch sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=3.0, help="timed seconds per batch size and run")
    parser.add_argument("--threads", type=int, default=2, help="threads of the ONNX engines")
    parser.add_argument("--encoder", default="efficientnet-lite0")
    parser.add_argument("--encoder-path", default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--accuracy", action="store_true",
                        help="instead of speed: few-shot image AUROC on the synthetic demo classes per backend")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--accuracy-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--auto-choice", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="torch", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=224, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in str(args.batches).split(",") if b]
    if args.worker:
        _worker(args)
        return 0
    if args.auto_choice:
        _auto_choice(args)
        return 0
    if args.bare_worker:
        _bare_worker(args)
        return 0
    if args.accuracy_worker:
        _accuracy_worker(args)
        return 0
    if args.accuracy:
        accuracy = measure_accuracy(int(args.sizes.split(",")[0]), threads=args.threads, encoder=args.encoder,
                                    cache_dir=Path(args.cache_dir) if args.cache_dir else None)
        for label, row in accuracy.items():
            print(f"{label:<24} image AUROC {row.get('image_auroc', row)}", flush=True)
        print(json.dumps({"image_auroc": accuracy}), flush=True)
        return 0
    from model.engine import detect_cpu_features

    features = detect_cpu_features()
    cache = Path(args.cache_dir) if args.cache_dir else None  # None: a temporary folder per size
    per_size = {}
    for size in (int(s) for s in args.sizes.split(",") if s):
        result = measure_backends(size, args.batches, args.rounds, duration_s=args.duration_s, threads=args.threads,
                                  encoder=args.encoder, encoder_path=args.encoder_path, cache_dir=cache)
        print(_table(result), flush=True)
        per_size[str(size)] = result
    first = next(iter(per_size.values()))
    summary = {
        "cpu_features": features.flags(),
        "cpu": features.describe(),
        "cpu_model": features.model,
        "encoder": args.encoder,
        "engine": first["auto"].get("engine"),
        "precision": first["auto"].get("precision"),
        "engine_description": first["auto"].get("description"),
        "torch_bare_fps": first["torch_bare_fps"],
        "engine_bare_fps": first["engine_bare_fps"],
        "engine_to_torch_ratio": first["engine_to_torch_ratio"],
        "by_size": per_size,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
