"""``make demo``: the whole product on embedded defaults, end to end, with ground truth.

Embedded Tansu broker, SQLite, local Ray, packaged EfficientNet-Lite0 weights. Builds a calibrated
bank per synthetic product class, streams frames from two lines through Kafka → Ray → SQL → alerts,
hot-swaps one class's bank mid-stream, sends corrupt frames (they must reach the dead-letter
topic), writes overlays of flagged frames, and scores the stored results against ground truth.
The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from linesight.errors import ConfigError
from linesight.settings import Settings, load_settings

__all__ = ["DemoConfig", "run_demo"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    out_dir: Path = Path("linesight-data")  # the data folder; a later run resets what the demo made (its marker)
    lines: int = 2  # production lines, one camera each
    frames_per_line: int = 320  # 2 x 320 = 640 frames
    fps_per_line: float = 12.0  # camera rate per line: 2 lines x 12 = 24 frames/s, within what 2 cores sustain
    defect_rate: float = 0.2  # share of frames with an injected defect (ground truth known)
    shots: int = 4  # normal images per class bank
    seed: int = 7
    timeout_s: float = 240.0  # give up waiting for the stream after this long
    llm_verdicts: bool | None = None  # LLM verdicts; None: on unless LINESIGHT_LLM_VERDICTS says


def demo_settings(config: DemoConfig) -> Settings:
    """Embedded defaults in the demo folder: no external broker, a fresh SQLite file, local Ray."""
    overrides: dict[str, Any] = {}
    if config.llm_verdicts is not None:  # LLM verdicts: on by default in the demo
        overrides["llm_verdicts"] = config.llm_verdicts
    elif "LINESIGHT_LLM_VERDICTS" not in os.environ:
        overrides["llm_verdicts"] = True
    return load_settings(
        kafka_bootstrap_servers=None,
        ray_address=None,
        database_url=f"sqlite:///{(config.out_dir / 'linesight.db').resolve()}",
        data_dir=config.out_dir.resolve(),
        write_overlays=True,
        **overrides,
    )


def run_demo(config: DemoConfig = DemoConfig()) -> dict[str, Any]:
    """Run the demo; returns the figures (also printed as the last line by the CLI)."""
    from connectors.tansu import broker_for
    from linesight.data_folder import prepare_demo_folder
    from pipeline.stream.job import Pipeline, init_ray
    from pipeline.stream.prepare import prepare

    _refuse_live_broker(config.out_dir)
    removed = prepare_demo_folder(config.out_dir)
    if removed:
        log.info("reset the demo folder %s: removed %s", config.out_dir, ", ".join(removed))
    settings = demo_settings(config)
    # the out folder's shared broker: `LINESIGHT_DATA_DIR=<out> linesight alerts` watches the demo's alerts
    with broker_for(settings) as bootstrap:
        prepare(settings, bootstrap)
        manager = _build_banks(settings, config)
        print("starting Ray and the pipeline actors ...", flush=True)
        init_ray(settings, log_to_driver=False)
        with Pipeline(settings, bootstrap) as pipeline:
            manifest, corrupt, timing = _stream(settings, config, bootstrap, pipeline, manager)
            final = pipeline.stop()
        dead_letters = _count_dead_letters(settings, bootstrap, expected=len(corrupt))
    return _report(settings, config, manifest, corrupt, dead_letters, final, timing)


def _refuse_live_broker(out_dir: Path) -> None:
    """The demo wipes its folder and needs empty topics: a live broker recorded there is someone else's."""
    from connectors.shared_broker import broker_status

    if not out_dir.exists():
        return
    status = broker_status(out_dir)
    if status.state in ("running", "hung") and status.record is not None:
        raise ConfigError(
            f"an embedded broker recorded in {out_dir} runs on {status.record.bootstrap_servers} (pid "
            f"{status.record.pid}); the demo wipes that folder and needs empty topics: stop it with "
            f"`LINESIGHT_DATA_DIR={out_dir} linesight broker stop` or choose another --out"
        )


def _build_banks(settings: Settings, config: DemoConfig):
    from pipeline.services.banks import BankManager
    from training.synthetic import PRODUCT_CLASSES, normal_images, rotations_ok

    manager = BankManager(settings)
    for product_class in tqdm(PRODUCT_CLASSES, desc="building banks", unit="class"):
        images = normal_images(product_class, config.shots, settings.image_size_px, seed=config.seed)
        manager.build(product_class, images, rotations=rotations_ok(product_class), seed=config.seed)
    return manager


def _frames(config: DemoConfig, line_index: int) -> Iterator[tuple[str, str, str, np.ndarray, dict[str, Any]]]:
    from training.synthetic import SyntheticLine

    line = SyntheticLine(defect_rate=config.defect_rate, seed=config.seed * 100 + line_index)
    for _ in range(config.frames_per_line):
        frame = line.next_frame()
        extra = {"is_defective": frame.is_defective, "defect_kind": frame.defect_kind}
        yield f"line-{line_index + 1}", f"cam-{line_index + 1}", frame.product_class, frame.image, extra


def _stream(settings, config, bootstrap, pipeline, manager):
    from connectors.camera import CameraPublisher
    from connectors.kafka import make_producer
    from storage.db import Database
    from storage.repository import Repository

    repository = Repository(Database(settings.database_url))
    manifests: list[list[Any]] = [[] for _ in range(config.lines)]
    errors: list[BaseException] = []

    def publish(index: int) -> None:
        producer = make_producer(bootstrap, max_request_size=settings.max_frame_bytes, security=settings.kafka_security)
        try:
            publisher = CameraPublisher(producer, settings.frames_topic)
            manifests[index] = publisher.publish(_frames(config, index), fps=config.fps_per_line, progress=False)
        except BaseException as exc:  # surfaced below: never a silent drop
            errors.append(exc)
        finally:
            producer.close()

    expected = config.lines * config.frames_per_line
    pipeline.wait_until_consuming()
    started = time.monotonic()
    threads = [threading.Thread(target=publish, args=(i,), daemon=True) for i in range(config.lines)]
    for thread in threads:
        thread.start()
    corrupt = _send_corrupt_frames(settings, bootstrap)
    swapped_at = None
    swap_class = None
    with tqdm(total=expected, desc="frames stored", unit="frame") as bar:
        deadline = started + config.timeout_s
        stored = 0
        while stored < expected and time.monotonic() < deadline:
            time.sleep(0.5)
            stored = repository.count_inspections()
            flagged = repository.count_inspections(anomalous=True)
            bar.update(stored - bar.n)
            bar.set_postfix(flagged=flagged, sent=sum(len(m) for m in manifests))
            if swapped_at is None and stored >= expected // 2:
                swap_class, swapped_at = _hot_swap(settings, config, manager), time.monotonic() - started
                bar.write(f"hot swap: activated a new bank version for {swap_class!r} while streaming")
            if errors:
                raise errors[0]
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise errors[0]
    elapsed_s = time.monotonic() - started
    manifest = [item for per_line in manifests for item in per_line]
    return manifest, corrupt, {"elapsed_s": elapsed_s, "swapped_at_s": swapped_at, "swap_class": swap_class}


def _hot_swap(settings: Settings, config: DemoConfig, manager) -> str:
    from training.synthetic import PRODUCT_CLASSES, normal_images, rotations_ok

    product_class = PRODUCT_CLASSES[0]
    images = normal_images(product_class, config.shots, settings.image_size_px, seed=config.seed + 1)
    manager.build(product_class, images, rotations=rotations_ok(product_class), seed=config.seed + 1, activate=True)
    return product_class


def _send_corrupt_frames(settings: Settings, bootstrap: str) -> list[str]:
    """One frame of every bad kind; each must end in the dead-letter topic with its reason."""
    from connectors.kafka import make_producer
    from connectors.schema import FrameHeaders, encode_image, frame_message

    rng = np.random.default_rng(0)
    good_image = encode_image(np.full((64, 64, 3), 128, np.uint8))
    now = datetime.now(UTC)

    def headers(**over: str) -> list[tuple[str, bytes]]:
        base = FrameHeaders(
            frame_id=f"corrupt-{uuid.uuid4().hex[:8]}", line_id="line-1", camera_id="cam-1",
            product_class="brick", captured_at=now,
        )
        _, _, kafka_headers = frame_message(base, good_image)
        out = dict(kafka_headers)
        for name, value in over.items():
            if value is None:
                out.pop(name, None)
            else:
                out[name] = value.encode()
        return list(out.items())

    noise = rng.integers(0, 256, (900, 900, 3), dtype=np.uint8)  # PNG of noise: ~2.4 MB > max_frame_bytes
    cases = {
        "not_an_image": (b"\x00\x01garbage, not a JPEG", headers()),
        "missing_header": (good_image, headers(frame_id=None)),
        "invalid_header": (good_image, headers(captured_at="yesterday-ish")),
        "unknown_class": (good_image, headers(product_class="no-such-class")),
        "oversize": (encode_image(noise, fmt="png"), headers()),
    }
    producer = make_producer(
        bootstrap, max_request_size=8 * settings.max_frame_bytes, security=settings.kafka_security
    )
    try:
        for value, kafka_headers in cases.values():
            producer.send(settings.frames_topic, key=b"line-1", value=value, headers=kafka_headers)
        producer.flush()
    finally:
        producer.close()
    return list(cases)


def _count_dead_letters(settings: Settings, bootstrap: str, expected: int) -> dict[str, int]:
    from connectors.kafka import make_consumer

    consumer = make_consumer(bootstrap, group_id=f"demo-dlq-{uuid.uuid4().hex[:6]}", security=settings.kafka_security)
    consumer.subscribe([settings.dead_letter_topic])
    reasons: dict[str, int] = {}
    deadline = time.monotonic() + 30
    try:
        while sum(reasons.values()) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    reason = dict(record.headers or []).get("dlq.reason", b"?").decode()
                    reasons[reason] = reasons.get(reason, 0) + 1
    finally:
        consumer.close()
    return reasons


def _report(settings, config, manifest, corrupt, dead_letters, final, timing) -> dict[str, Any]:
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    from storage.db import Database
    from storage.repository import Repository

    repository = Repository(Database(settings.database_url))
    rows = {row.frame_id: row for row in repository.iter_history()}
    truth = {item.frame_id: item for item in manifest}
    matched = [(truth[fid], row) for fid, row in rows.items() if fid in truth]
    labels = np.array([bool(item.extra.get("is_defective")) for item, _ in matched])
    scores = np.array([row.score for _, row in matched])
    flags = np.array([row.is_anomalous for _, row in matched])
    latencies = np.array([row.latency_ms for row in rows.values()])
    per_class: dict[str, dict[str, Any]] = {}
    for item, row in matched:
        entry = per_class.setdefault(row.product_class, {"labels": [], "scores": [], "flags": [], "versions": set()})
        entry["labels"].append(bool(item.extra.get("is_defective")))
        entry["scores"].append(row.score)
        entry["flags"].append(row.is_anomalous)
        entry["versions"].add(row.bank_version)

    def auroc(y, s) -> float:
        return float(roc_auc_score(y, s)) if 0 < sum(y) < len(y) else float("nan")

    print()
    print(f"{'class':<12} {'frames':>6} {'defects':>7} {'flagged':>7} {'AUROC':>6} {'prec':>5} {'recall':>6}  banks")
    for name, e in sorted(per_class.items()):
        y, f = np.array(e["labels"]), np.array(e["flags"])
        print(f"{name:<12} {len(y):>6} {int(y.sum()):>7} {int(f.sum()):>7} {auroc(y, e['scores']):>6.3f} "
              f"{precision_score(y, f, zero_division=0):>5.2f} {recall_score(y, f, zero_division=0):>6.2f}  "
              f"{', '.join(f'v{v}' for v in sorted(e['versions']))}")
    print(f"dead letters by reason: {dead_letters}")
    if timing["swap_class"]:
        print(f"hot swap of {timing['swap_class']!r} at {timing['swapped_at_s']:.1f} s; frames per bank version: "
              f"{final['bank_versions']}")
    print(f"overlays of flagged frames: {settings.overlays_dir}")
    stored = len(rows)
    summary = {
        "frames_sent": len(manifest) + len(corrupt),
        "frames_stored": stored,
        "duplicates": stored - len(set(rows)),
        "redelivered": final["redelivered"],
        "dead_lettered": sum(dead_letters.values()),
        "flagged": int(flags.sum()),
        "image_auroc": round(auroc(labels, scores), 4),
        "precision": round(float(precision_score(labels, flags, zero_division=0)), 4),
        "recall": round(float(recall_score(labels, flags, zero_division=0)), 4),
        "fps": round(stored / timing["elapsed_s"], 2),
        "p50_latency_ms": round(float(np.percentile(latencies, 50)), 1) if len(latencies) else None,
        "p99_latency_ms": round(float(np.percentile(latencies, 99)), 1) if len(latencies) else None,
        "lost": len(set(truth) - set(rows)),
        "bank_swaps": 1 if timing["swap_class"] else 0,
        "database": settings.database_url,
        **_verdict_figures(settings, final.get("verdicts")),
    }
    return summary


def _verdict_figures(settings: Settings, stats: dict[str, Any] | None) -> dict[str, Any]:
    """LLM verdict counters: how many the LLM wrote, how many agreed with the detector."""
    if not settings.llm_verdicts or stats is None:
        return {"llm_verdicts": 0, "llm_agreed": 0}
    produced = stats["verdicts_written"] + stats["verdicts_rejected"]
    print(f"LLM verdicts: {produced} written, {stats['verdicts_written']} agreed with the detector, "
          f"{stats['verdict_skipped']} skipped (queue full); p50 {stats['verdict_ms_p50']} ms per verdict, "
          f"{stats['tokens_per_s']} tokens/s")
    return {
        "llm_verdicts": produced,  # answers checked against the detector
        "llm_agreed": stats["verdicts_written"],  # stored as verdict_source "llm"
        "llm_agreement": round(stats["verdicts_written"] / produced, 4) if produced else None,
        "llm_skipped": stats["verdict_skipped"],  # kept the template: the bounded queue was full
        "llm_failed": stats["verdicts_failed"],
        "llm_verdict_p50_ms": stats["verdict_ms_p50"],
        "llm_tokens_per_s": stats["tokens_per_s"],
    }


def print_summary(summary: dict[str, Any]) -> None:
    """The demo's last line: one JSON object."""
    print(json.dumps(summary), flush=True)
