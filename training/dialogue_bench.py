"""Dialogue benchmark: fixed operator questions over stored inspections, answered by the grounded dialogue.

``python -m training.dialogue_bench [--out DIR] [--llm PATH] [--inspections N]``

Builds a SQLite database in ``--out`` (a temporary folder by default) the way the stream does: frames of
the synthetic line (brick and washer, half defective) really scored by the detector against 4-shot banks
registered in the ``banks`` table, stored with their map, mask and frame; half captured the day before,
half in the last hours; one earlier flagged frame per class labelled a false alarm. Then asks six
questions about each of the newest ``--inspections`` inspections (where / how big / how many / how sure /
what changed since yesterday / is this like the last false alarm; 8 x 6 = 48 by default) through
:class:`pipeline.services.dialogue.DialogueService` with the LLM (the packaged SmolLM2-135M unless ``--llm``),
and prints per intent:

- ``right facts``: share of shown answers that state the facts asked for (:func:`model.grounding.states_facts`);
- ``degenerate shown``: share of shown answers that repeat themselves, echo the prompt or contradict the
  facts (target 0);
- ``LLM raw right`` / ``LLM raw degenerate``: the same two checks on what the LLM generated;
- ``LLM shown``: share of answers where the LLM's own text was shown (else the facts answer);
- ``s/answer``: mean wall seconds per question (facts, prompt build, generation, storage).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["QUESTIONS", "BenchRow", "build_database", "run_bench", "main"]

CLASSES = ("brick", "washer")
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("where", "Where is the defect?"),
    ("how_big", "How big is it?"),
    ("how_many", "How many anomalies are there?"),
    ("how_sure", "How sure are you about this one?"),
    ("what_changed", "What changed on this line since yesterday?"),
    ("false_alarm", "Is this like the last false alarm?"),
)
_DEGENERATE = ("repeats itself", "echoes the prompt", "contradicts the facts")


@dataclass(frozen=True)
class BenchRow:
    """One question of the benchmark and how it was answered."""

    inspection_id: int
    flagged: bool
    intent: str
    question: str
    answer: str
    source: str  # "llm" | "facts"
    llm_text: str
    reason: str | None
    right_facts: bool
    degenerate_shown: bool
    llm_right: bool
    llm_degenerate: bool
    seconds: float


def _jpeg(image: Any) -> bytes:
    import cv2

    return cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


def build_database(repository: Any, encoder: Any, banks_dir: Path, *, frames: int = 32, seed: int = 0,
                   now: datetime | None = None) -> int:
    """Store ``frames`` scored synthetic frames (see the module doc); returns how many were stored."""
    from model.detector import Detector
    from model.fewshot import build_bank
    from storage.records import InspectionRecord, png_from_map, png_from_mask
    from training.synthetic import SyntheticLine, normal_images

    now = now or datetime.now(UTC)
    banks = {}
    for cls in CLASSES:
        bank = build_bank(encoder, normal_images(cls, 4, seed=seed + 1), cls, 1, rotations=False)
        path = banks_dir / f"{cls}-v1.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        repository.register_bank(cls, 1, str(path), bank.save(path), 4, encoder.name, {}, activate=True)
        banks[cls] = bank
    detector = Detector(encoder)
    line = SyntheticLine(product_classes=CLASSES, defect_rate=0.5, seed=seed)
    shot = [line.next_frame() for _ in range(frames)]
    results: dict[int, Any] = {}
    for cls in CLASSES:
        rows = [i for i, f in enumerate(shot) if f.product_class == cls]
        results.update(zip(rows, detector.score_batch([shot[i].image for i in rows], banks[cls]), strict=True))
    records = []
    for index, frame in enumerate(shot):
        result = results[index]
        yesterday = index < frames // 2
        at = now - (timedelta(hours=30) if yesterday else timedelta(hours=3)) + timedelta(minutes=5 * index)
        records.append(InspectionRecord(
            frame_id=f"bench-{seed}-{index}", line_id=f"line-{1 + index % 2}", camera_id=f"cam-{1 + index % 2}",
            product_class=frame.product_class, captured_at=at, received_at=at, scored_at=at + timedelta(milliseconds=80),
            score=result.score, threshold=result.threshold, is_anomalous=result.is_anomalous,
            positions=list(result.positions), region_count=result.region_count, verdict=result.verdict,
            bank_version=1, latency_ms=80.0, anomaly_map_png=png_from_map(result.anomaly_map),
            mask_png=png_from_mask(result.mask), frame_image=_jpeg(frame.image),
        ))
    repository.upsert_inspections(records)
    for cls in CLASSES:  # the oldest flagged frame of each class was a false alarm
        flagged = [r for r in records if r.product_class == cls and r.is_anomalous]
        if flagged:
            repository.set_feedback(flagged[0].frame_id, "false_alarm", note="dialogue bench", actor="bench")
    return len(records)


def _chosen(repository: Any, count: int) -> list[Any]:
    """The newest ``count`` inspections, flagged and normal alternating while both last."""
    rows = list(repository.iter_history())
    flagged = [r for r in rows if r.is_anomalous]
    normal = [r for r in rows if not r.is_anomalous]
    chosen: list[Any] = []
    while len(chosen) < count and (flagged or normal):
        for pool in (flagged, normal):
            if pool and len(chosen) < count:
                chosen.append(pool.pop(0))
    return chosen


def run_bench(service: Any, rows: list[Any]) -> list[BenchRow]:
    """Ask every question of :data:`QUESTIONS` about each row; checks as in the module doc."""
    from model.grounding import degenerate_reason, states_facts

    results = []
    for row in rows:
        for intent, question in QUESTIONS:
            started = time.perf_counter()
            reply = service.ask(row.id, question)
            seconds = time.perf_counter() - started
            facts = service.facts(row)
            shown_reason = degenerate_reason(reply.answer, question, facts) or ""  # (earlier answers: see reply)
            raw_reason = reply.reason or degenerate_reason(reply.llm_text, question, facts) or ""
            results.append(BenchRow(
                inspection_id=row.id, flagged=row.is_anomalous, intent=intent, question=question,
                answer=reply.answer, source=reply.source, llm_text=reply.llm_text, reason=reply.reason,
                right_facts=states_facts(reply.answer, facts, question),
                degenerate_shown=shown_reason.startswith(_DEGENERATE) or not reply.answer.strip(),
                llm_right=bool(reply.llm_text) and states_facts(reply.llm_text, facts, question)
                and not raw_reason.startswith(_DEGENERATE),
                llm_degenerate=not reply.llm_text.strip() or raw_reason.startswith(_DEGENERATE),
                seconds=seconds,
            ))
    return results


def _share(values: list[bool]) -> str:
    return f"{100.0 * sum(values) / len(values):.0f}%" if values else "-"


def table(results: list[BenchRow]) -> str:
    """Markdown table per intent and in all."""
    groups: dict[str, list[BenchRow]] = defaultdict(list)
    for r in results:
        groups[r.intent].append(r)
    groups["all"] = list(results)
    lines = [
        "| intent | questions | right facts | degenerate shown | LLM raw right | LLM raw degenerate | LLM shown | s/answer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in groups.items():
        mean_s = sum(r.seconds for r in rows) / len(rows)
        lines.append(
            f"| {name} | {len(rows)} | {_share([r.right_facts for r in rows])} | "
            f"{_share([r.degenerate_shown for r in rows])} | {_share([r.llm_right for r in rows])} | "
            f"{_share([r.llm_degenerate for r in rows])} | {_share([r.source == 'llm' for r in rows])} | {mean_s:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.dialogue_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the database and results.json")
    parser.add_argument("--llm", type=Path, default=None, help="a local causal LM folder (default: packaged SmolLM2)")
    parser.add_argument("--inspections", type=int, default=8, help="inspections asked about (6 questions each)")
    parser.add_argument("--frames", type=int, default=32, help="frames scored and stored")
    args = parser.parse_args(argv)
    if args.inspections < 7 or args.frames < args.inspections:
        parser.error(f"need --inspections >= 7 (>= 40 questions) and --frames >= it, got {args.inspections}, "
                     f"{args.frames}")

    import torch

    from linesight.settings import load_settings
    from pipeline.services.dialogue import DialogueService
    from pipeline.stream.verdicts import InspectionModel
    from storage.db import Database
    from storage.repository import Repository

    out = args.out or Path(tempfile.mkdtemp(prefix="dialogue-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    database = out / "bench.db"
    database.unlink(missing_ok=True)
    settings = load_settings(database_url=f"sqlite:///{database}", data_dir=out, llm_path=args.llm)
    started = time.perf_counter()
    model = InspectionModel.from_settings(settings)
    load_s = time.perf_counter() - started
    db = Database(settings.database_url)
    db.migrate()
    try:
        repository = Repository(db)
        stored = build_database(repository, model.encoder, out / "banks", frames=args.frames)
        service = DialogueService(settings, repository, model=model)
        results = run_bench(service, _chosen(repository, args.inspections))
    finally:
        db.dispose()
    report = table(results)
    print(f"# {len(results)} questions over {args.inspections} of {stored} stored inspections; "
          f"LLM {model.llm.name}; model load {load_s:.1f} s; torch threads {torch.get_num_threads()}")
    print(report)
    (out / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    print(f"# answers: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
