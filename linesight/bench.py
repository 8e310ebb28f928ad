"""``make bench``: engines side by side, bare-model throughput versus the full pipeline's, latency and memory.

0. Encoder alone: torch and every engine backend, each in its own process, alternating
   (linesight/bench_engine.py ``measure_backends``); the CPU features detected.
1. Bare model (the engine issue's "bare" figure): encoder + memory bank + anomaly map, built by
   ``build_detector``, on torch (1 and 2 threads) and on the engine ``auto`` picks, each in its own
   process, alternating, frames/s at batch 1, 8, 16 (``measure_bare_models``): ``torch_bare_fps``,
   ``engine_bare_fps``; and the cost of tiled inspection of ~1.2 MP frames at 224 and 448 px.
2. Pipeline throughput: N frames are published first, then the stream (Kafka → Ray → SQL) drains
   them; frames/s from the first stored row to the last, and its ratio to ``engine_bare_fps``.
3. Pipeline latency: frames paced at 70 % of that rate; p50/p99 from capture to stored.
4. Peak memory: the largest sum of resident memory of this process and Ray's workers, sampled.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from linesight.settings import Settings, load_settings

__all__ = ["run_bench"]


class _MemorySampler:
    """Samples the summed RSS of this process tree and Ray's worker processes every 0.2 s."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)

    def _loop(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(0.2):
            total = 0
            seen = set()
            for process in [me, *me.children(recursive=True), *_ray_processes(psutil)]:
                if process.pid in seen:
                    continue
                seen.add(process.pid)
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_mb = max(self.peak_mb, total / 2**20)


def _ray_processes(psutil) -> list[Any]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(process.info.get("cmdline") or [])
        if "ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd or "default_worker.py" in cmd:
            found.append(process)
    return found


def tiled_cost(settings: Settings, sizes=(224, 448), megapixels: float = 1.2, frames: int = 4) -> dict[str, Any]:
    """Frames/s of tiled inspection of ~``megapixels`` frames (a real photograph) at each model input size."""
    from model.factory import DetectorConfig, build_detector
    from model.fewshot import build_bank
    from model.tiling import TileGrid
    from training.realistic import exposure, source_photo

    photo = source_photo("brick", megapixels)
    rng = np.random.default_rng(0)
    shots, test = [exposure(photo, rng) for _ in range(2)], [exposure(photo, rng) for _ in range(frames)]
    out: dict[str, Any] = {"frame_px": list(photo.shape[:2])}
    for size in sizes:
        config = DetectorConfig.from_settings(settings, image_size_px=size,
                                              threads=settings.inference_actors * settings.torch_threads)
        detector = build_detector(config)
        bank = build_bank(detector.encoder, shots, "bench", 1, tile_px="auto")
        detector.score_batch(test[:1], bank)  # warm-up
        start = time.perf_counter()
        detector.score_batch(test, bank)
        fps = frames / (time.perf_counter() - start)
        tiles = TileGrid.for_frame(*photo.shape[:2], bank.tile_px, bank.tile_overlap).count
        out[f"tiled_{size}_fps"] = round(fps, 3)
        out[f"tiled_{size}_tiles_per_frame"] = tiles
        out[f"tiled_{size}_pixel_residual"] = bank.references is not None
        print(f"tiled inspection of {photo.shape[1]}x{photo.shape[0]} frames at {size} px: {tiles} tiles, "
              f"{fps:.2f} frames/s (pixel residual {'on' if bank.references is not None else 'off'})", flush=True)
        references = bank.reference_set()
        if references is not None and "pixel_residual_ms_per_frame" not in out:  # its share of that time
            start = time.perf_counter()
            for frame in test:
                references.residual(frame)
            out["pixel_residual_ms_per_frame"] = round(1000 * (time.perf_counter() - start) / frames, 1)
            print(f"  of which the pixel residual: {out['pixel_residual_ms_per_frame']} ms per frame", flush=True)
    return out


def pipeline_run(settings: Settings, frames: int, rate_fps: float | None) -> dict[str, Any]:
    """Stream ``frames`` synthetic frames through a fresh pipeline; rate None = publish all first."""
    from connectors.camera import CameraPublisher
    from connectors.kafka import make_producer
    from connectors.tansu import EmbeddedBroker
    from pipeline.services.banks import BankManager
    from pipeline.stream.job import Pipeline, init_ray
    from pipeline.stream.prepare import prepare
    from storage.db import Database
    from storage.repository import Repository
    from training.synthetic import PRODUCT_CLASSES, SyntheticLine, normal_images, rotations_ok

    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        prepare(settings, bootstrap)
        manager = BankManager(settings)
        for cls in PRODUCT_CLASSES:
            manager.build(cls, normal_images(cls, 4, settings.image_size_px), rotations=rotations_ok(cls))
        repository = Repository(Database(settings.database_url))
        line = SyntheticLine(seed=11)
        source = [("line-1", "cam-1", f.product_class, f.image, {}) for f in (line.next_frame() for _ in range(frames))]

        def publish() -> None:
            producer = make_producer(bootstrap, max_request_size=settings.max_frame_bytes, security=settings.kafka_security)
            CameraPublisher(producer, settings.frames_topic).publish(iter(source), fps=rate_fps, progress=False)
            producer.close()

        init_ray(settings, log_to_driver=False)
        if rate_fps is None:
            publish()  # the backlog is there before the stream starts
        with Pipeline(settings, bootstrap) as pipeline:
            pipeline.wait_until_consuming()
            publisher = None
            if rate_fps is not None:
                publisher = threading.Thread(target=publish, daemon=True)
                publisher.start()
            first = last = None
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                count = repository.count_inspections()
                now = time.monotonic()
                if count and first is None:
                    first, first_count = now, count
                if count >= frames:
                    last = now
                    break
                time.sleep(0.05)
            if publisher is not None:
                publisher.join(30)
            stats = pipeline.stop()
        rows = list(repository.iter_history())
    latencies = np.array([row.latency_ms for row in rows])
    drained = frames - first_count
    return {
        "frames": frames,
        "stored": len(rows),
        "fps": round(drained / (last - first), 2) if last and first and last > first else None,
        "p50_latency_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_latency_ms": round(float(np.percentile(latencies, 99)), 1),
        "latency_split_ms": latency_split(rows),
        "redelivered": stats["redelivered"],
    }


def latency_split(rows: list[Any]) -> dict[str, dict[str, float]]:
    """p50 / p99 of where each stored frame's latency went, from its row's timestamps: ``to_ingest``
    (camera -> Kafka -> the ingest loop's dispatch), ``to_scored`` (batching, queueing and inference)
    and ``to_stored`` (the sink: masks, SQL, alerts).

    >>> from types import SimpleNamespace as Row
    >>> from datetime import datetime, timedelta
    >>> t = datetime(2026, 1, 1)
    >>> row = Row(captured_at=t, received_at=t + timedelta(milliseconds=10), scored_at=t + timedelta(milliseconds=40),
    ...           latency_ms=45.0)
    >>> latency_split([row])["to_scored"]
    {'p50': 30.0, 'p99': 30.0}
    """
    if not rows:
        return {}
    ingest = np.array([(r.received_at - r.captured_at).total_seconds() * 1000.0 for r in rows])
    scored = np.array([(r.scored_at - r.received_at).total_seconds() * 1000.0 for r in rows])
    stored = np.array([r.latency_ms for r in rows]) - ingest - scored
    return {name: {"p50": round(float(np.percentile(v, 50)), 1), "p99": round(float(np.percentile(v, 99)), 1)}
            for name, v in (("to_ingest", ingest), ("to_scored", scored), ("to_stored", stored))}


def run_bench(frames: int = 960, batch_size: int = 16) -> dict[str, Any]:
    """All measurements in one run; returns the figures (the CLI prints them as JSON last)."""
    workdir = Path(tempfile.mkdtemp(prefix="linesight-bench-"))
    try:
        def settings_for(name: str) -> Settings:
            return load_settings(
                kafka_bootstrap_servers=None, ray_address=None, data_dir=workdir / name,
                database_url=f"sqlite:///{workdir / name / 'bench.db'}", max_batch_size=batch_size,
            )

        from linesight.bench_engine import measure_backends, measure_bare_models
        from model.engine import detect_cpu_features

        encoders = measure_backends(224, (1, 8, 16), rounds=2)  # each backend in its own process, alternating
        print(f"encoder alone: torch best {encoders.get('torch_bare_fps')} frames/s, "
              f"{encoders['auto']['description']} {encoders.get('engine_bare_fps')} frames/s", flush=True)
        with _MemorySampler() as memory:
            bare = measure_bare_models(224, (1, 8, 16), rounds=2)
            for label, per in bare["fps"].items():
                print(f"bare model {label:<16}" + "".join(f" batch {b}: {v:6.1f}" for b, v in per.items())
                      + " frames/s", flush=True)
            tiled = tiled_cost(settings_for("tiled"))
            throughput = pipeline_run(settings_for("throughput"), frames, rate_fps=None)
            print(f"pipeline throughput: {throughput['fps']} frames/s", flush=True)
            paced_rate = round(0.7 * (throughput["fps"] or bare["engine_bare_fps"]), 1)
            paced = pipeline_run(settings_for("latency"), frames // 2, rate_fps=paced_rate)
            split = ", ".join(f"{name} {v['p50']} / {v['p99']}" for name, v in paced["latency_split_ms"].items())
            print(f"pipeline at {paced_rate} frames/s: p50 {paced['p50_latency_ms']} ms, "
                  f"p99 {paced['p99_latency_ms']} ms (p50 / p99 ms: {split})", flush=True)
        import ray

        ray.shutdown()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    features = detect_cpu_features()
    engine_fps = bare["engine_bare_fps"]
    encoder_fps = encoders.get("engine_bare_fps")
    return {
        "cpu_features": sorted(f for f in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")
                               if getattr(features, f, False)),
        "engine": encoders["auto"]["engine"],
        "precision": encoders["auto"]["precision"],
        "engine_description": encoders["auto"]["description"],
        "torch_bare_fps": bare["torch_bare_fps"],
        "engine_bare_fps": engine_fps,
        "engine_to_torch_ratio": bare["engine_to_torch_ratio"],
        "bare_fps_by_engine": bare["fps"],
        "encoder_fps_by_backend": encoders.get("fps"),
        "encoder_torch_fps": encoders.get("torch_bare_fps"),
        "encoder_engine_fps": encoder_fps,
        "encoder_engine_to_torch_ratio": encoders.get("engine_to_torch_ratio"),
        **tiled,
        "pipeline_batch_size": batch_size,
        "pipeline_fps": throughput["fps"],
        "pipeline_to_engine_ratio": round(throughput["fps"] / engine_fps, 3) if throughput["fps"] and engine_fps else None,
        "pipeline_to_encoder_ratio": round(throughput["fps"] / encoder_fps, 3)
        if throughput["fps"] and encoder_fps else None,
        "paced_rate_fps": paced_rate,
        "p50_latency_ms": paced["p50_latency_ms"],
        "p99_latency_ms": paced["p99_latency_ms"],
        "latency_split_ms": paced["latency_split_ms"],
        "peak_memory_mb": round(memory.peak_mb, 1),
        "frames": frames,
        "errors": {**encoders.get("errors", {}), **bare.get("errors", {})},
    }


def print_result(result: dict[str, Any]) -> None:
    """Last line: one JSON object."""
    print(json.dumps(result), flush=True)
