"""LLM verdicts off the hot path: a low-priority actor rewords stored verdicts after alerts went out.

    sink: SQL write ──► alerts flushed ──► verdicts.submit.remote(jobs)   (fire and forget)
                                               │ bounded queue; a job that does not fit is skipped
                                               ▼
    VerdictWorker thread (nice 19, 1 torch thread): up to verdict_batch_size jobs at a time
        stored map + frame -> E_prompt, E_img (only with verdict_image_tokens)
        -> one batched LLM generation with the detector's facts in each description,
           stopped at the end of the decision sentence -> parse -> agrees?
             yes: set_verdict(frame_id, llm sentence, "llm")
             no:  set_verdict(frame_id, template, "template", note="llm contradicted: ...")

A job carries the detector's facts, the anomaly map as the sink already encoded it for SQL (8-bit
PNG) and the frame as received (JPEG/PNG bytes). The global image vector for E_img is recomputed
here with the worker's own encoder: one encoder pass (~30 ms) is a few percent of one verdict
(~1 s of generation) and keeps the hot path's messages and contracts unchanged; the dialogue
(pipeline/services/dialogue.py) rebuilds E_img and E_prompt from the same stored bytes the same way.

Keeping up (issue 10): the queue keeps flagged frames first (a flagged job pushes out a queued
normal sample when full); jobs are answered in batches (one generate call, left-padded); unless
``verdict_image_tokens`` is set, E_img/E_prompt are left out (untrained they are noise; trained they
make every prompt unique, so nothing is reused and the actor falls behind on a CPU), and so is the
class name (it does not change the expected sentence):
the prompt then depends on the decision, positions and region count alone, so one answer serves
every later frame with the same facts (greedy decoding gives the same text). The stream's actor
answers the 10 commonest facts (no anomaly, one region at each of the 9 positions) in one batch
before the stream starts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.exceptions import PipelineError

__all__ = [
    "PROMPT_LEARNER_FILE",
    "PROMPT_LEARNER_SEED",
    "InspectionModel",
    "ModelSettings",
    "VerdictJob",
    "VerdictSettings",
    "VerdictWorker",
    "sample_normal",
    "verdict_jobs",
]

log = logging.getLogger(__name__)

PROMPT_LEARNER_FILE = "prompt_learner.safetensors"  # inside settings.checkpoint_dir
PROMPT_LEARNER_SEED = 0  # fixed seed of an untrained prompt learner (no checkpoint_dir)
_NICE = 19  # lowest priority: the verdict thread only gets the cores inference leaves idle
_REPORT_EVERY_S = 1.0
_NOTE_CHARS = 300
_REUSE_ENTRIES = 4096  # answers kept for text-only prompts (keyed by the detector's facts)


class ModelSettings(Protocol):
    """What :meth:`InspectionModel.from_settings` reads (``linesight.settings.Settings`` has it all)."""

    llm_path: Path | None
    encoder: str
    encoder_path: Path | None
    image_size_px: int
    checkpoint_dir: Path | None
    verdict_image_tokens: bool


class VerdictSettings(ModelSettings, Protocol):
    """What :class:`VerdictWorker` reads besides the model's settings."""

    llm_torch_threads: int
    database_url: str
    verdict_max_new_tokens: int
    verdict_batch_size: int
    verdict_queue_size: int


@dataclass(frozen=True)
class VerdictJob:
    """One stored frame waiting for an LLM verdict (picklable; ~tens of KB)."""

    frame_id: str
    product_class: str
    is_anomalous: bool
    positions: tuple[str, ...]
    region_count: int
    template: str  # the verdict stored by the sink (REFERENCE.md sentence)
    anomaly_map_png: bytes  # M as stored in SQL (8-bit grey PNG)
    image_bytes: bytes | None  # the frame as received; None = no E_img
    submitted_at: float = 0.0  # time.time() when the sink built it
    threshold: float | None = None  # the detector's threshold for the map: E_prompt reads M in its units


def sample_normal(frame_id: str, rate: float) -> bool:
    """Deterministic sample of normal frames: the same ``frame_id`` is always in or out.

    >>> sample_normal("f-1", 1.0), sample_normal("f-1", 0.0)
    (True, False)
    """
    if rate <= 0.0:
        return False
    return rate >= 1.0 or zlib.crc32(frame_id.encode()) % 10_000 < rate * 10_000


def verdict_jobs(frames: Sequence[Any], records: Sequence[Any], inserted: set[str], sample_rate: float) -> list[VerdictJob]:
    """Jobs for newly inserted frames: every flagged one and a sample of the normal ones.

    ``frames`` are :class:`pipeline.stream.messages.ScoredFrame`, ``records`` their
    :class:`storage.records.InspectionRecord` (the encoded map is reused, not re-encoded).
    """
    now = time.time()
    jobs = []
    for frame, record in zip(frames, records, strict=True):
        frame_id = frame.task.frame_id
        if frame_id not in inserted or not (frame.result.is_anomalous or sample_normal(frame_id, sample_rate)):
            continue
        jobs.append(
            VerdictJob(
                frame_id=frame_id,
                product_class=frame.task.product_class,
                is_anomalous=bool(frame.result.is_anomalous),
                positions=tuple(frame.result.positions),
                region_count=int(frame.result.region_count),
                template=frame.result.verdict,
                anomaly_map_png=bytes(record.anomaly_map_png),
                image_bytes=record.frame_image,
                submitted_at=now,
                threshold=float(frame.result.threshold),
            )
        )
    return jobs


class InspectionModel:
    """The LLM side of one stored inspection: frame -> global vector -> E_img; map -> E_prompt.

    >>> model = InspectionModel.from_settings(load_settings())  # doctest: +SKIP
    >>> model.gpt.verdict(facts, *model.inputs(image_bytes, map_png)).agrees  # doctest: +SKIP
    True
    """

    def __init__(self, gpt: Any, encoder: Any, *, verdict_image_tokens: bool = False) -> None:
        self.gpt = gpt  # model.anomalygpt.AnomalyGPT (LLM + prompt learner)
        self.encoder = encoder  # model.encoders ImageEncoder (frozen)
        self.verdict_image_tokens = verdict_image_tokens  # E_img/E_prompt in verdict prompts (not dialogue)

    @classmethod
    def from_settings(cls, settings: ModelSettings, *, llm: Any | None = None, encoder: Any | None = None) -> InspectionModel:
        """Load the LLM (``llm_path`` or the packaged SmolLM2), the encoder and the prompt learner.

        The prompt learner comes from ``checkpoint_dir/prompt_learner.safetensors``; without a
        checkpoint_dir it is freshly initialised with seed ``PROMPT_LEARNER_SEED`` (logged).
        ``verdict_image_tokens``: E_img/E_prompt in the verdict prompts (the learner is loaded either way).
        """
        from model.anomalygpt import AnomalyGPT
        from model.encoders import build_encoder
        from model.llm import load_llm

        if llm is None:
            llm = load_llm(settings.llm_path)
        if encoder is None:
            encoder = build_encoder(settings.encoder, settings.encoder_path, settings.image_size_px)
        learner = _prompt_learner(settings, llm.hidden_size, encoder.global_dim)
        image_tokens = settings.verdict_image_tokens
        log.info("verdict prompts %s E_img/E_prompt (LINESIGHT_VERDICT_IMAGE_TOKENS)", "carry" if image_tokens else "leave out")
        return cls(AnomalyGPT(llm, learner), encoder, verdict_image_tokens=image_tokens)

    @property
    def llm(self) -> Any:
        """The frozen :class:`model.llm.LanguageModel`."""
        return self.gpt.llm

    def global_vector(self, image_bytes: bytes | None) -> Any | None:
        """(C_global,) tensor of the encoded frame, or None when there is no decodable RGB frame."""
        import torch

        from connectors.schema import decode_image

        image = decode_image(image_bytes) if image_bytes else None
        if image is None or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            return None
        with torch.inference_mode():
            return self.encoder(self.encoder.preprocess([image])).global_vector[0].float().clone()

    def inputs(
        self, image_bytes: bytes | None, anomaly_map_png: bytes | None, threshold: float | None = None
    ) -> tuple[Any | None, Any | None]:
        """(anomaly map (S, S), global vector (C,)) tensors for :meth:`AnomalyGPT.verdict` / ``conversation``.

        The stored map is put in units of the detector's ``threshold`` (the stored inspection's), as the
        prompt learner was trained (:func:`model.prompt_learner.prompt_map`); None leaves it as stored.
        """
        from model.prompt_learner import prompt_map
        from storage.records import map_from_png

        anomaly_map = prompt_map(map_from_png(anomaly_map_png), threshold) if anomaly_map_png else None
        return anomaly_map, self.global_vector(image_bytes)

    def verdict_inputs(
        self, image_bytes: bytes | None, anomaly_map_png: bytes | None, threshold: float | None = None
    ) -> tuple[Any | None, Any | None]:
        """:meth:`inputs` for a verdict prompt: (None, None) when verdicts leave E_img/E_prompt out."""
        if not self.verdict_image_tokens:
            return None, None
        return self.inputs(image_bytes, anomaly_map_png, threshold)


class _JobQueue:
    """Bounded verdict jobs, flagged first: when full, a flagged job pushes out the newest normal sample."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._flagged: deque[VerdictJob] = deque()
        self._normal: deque[VerdictJob] = deque()
        self._ready = threading.Condition()

    def qsize(self) -> int:
        with self._ready:
            return len(self._flagged) + len(self._normal)

    def put(self, job: VerdictJob) -> tuple[bool, int]:
        """(accepted, how many queued jobs were pushed out to make room)."""
        with self._ready:
            pushed_out = 0
            if len(self._flagged) + len(self._normal) >= self.maxsize:
                if not job.is_anomalous or not self._normal:
                    return False, 0
                self._normal.pop()
                pushed_out = 1
            (self._flagged if job.is_anomalous else self._normal).append(job)
            self._ready.notify()
            return True, pushed_out

    def take(self, count: int, timeout_s: float = 0.0) -> list[VerdictJob]:
        """Up to ``count`` jobs, flagged first, oldest first; waits up to ``timeout_s`` for the first."""
        with self._ready:
            if timeout_s > 0 and not (self._flagged or self._normal):
                self._ready.wait(timeout_s)
            jobs = []
            while len(jobs) < count and (self._flagged or self._normal):
                jobs.append((self._flagged or self._normal).popleft())
            return jobs


def _prompt_learner(settings: ModelSettings, hidden_size: int, global_dim: int) -> Any:
    import torch

    from model.exceptions import ModelError
    from model.prompt_learner import PromptLearner, load_prompt_learner

    if settings.checkpoint_dir is None:
        with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
            torch.manual_seed(PROMPT_LEARNER_SEED)
            learner = PromptLearner(hidden_size, global_dim)
        log.warning(
            "no checkpoint_dir set: the prompt learner is freshly initialised (seed %d, untrained); "
            "E_img and E_prompt carry little meaning until a trained checkpoint is given", PROMPT_LEARNER_SEED,
        )
        return learner.eval()
    path = settings.checkpoint_dir / PROMPT_LEARNER_FILE
    if not path.is_file():
        raise PipelineError(f"checkpoint_dir {str(settings.checkpoint_dir)!r} has no {PROMPT_LEARNER_FILE}")
    try:
        learner = load_prompt_learner(path)
    except ModelError as exc:
        raise PipelineError(f"cannot load the prompt learner {str(path)!r}: {exc}") from None
    if learner.hidden_size != hidden_size or learner.global_dim != global_dim:
        raise PipelineError(
            f"prompt learner {str(path)!r} maps {learner.global_dim}-d image vectors to {learner.hidden_size}-d "
            f"tokens, but the encoder gives {global_dim}-d and the LLM takes {hidden_size}-d"
        )
    log.info("prompt learner loaded from %s", path)
    return learner.eval()


class VerdictWorker:
    """Bounded, low-priority LLM verdicts for stored frames (a Ray actor in the stream).

    ``submit`` never blocks: jobs beyond ``verdict_queue_size`` are counted as skipped and keep the
    template verdict. In the stream (``model`` None) it loads its own model and sets this process's
    torch threads to ``llm_torch_threads``; tests pass a ``model`` and ``repository``. ``monitor`` is
    a :class:`pipeline.stream.monitor.StreamMonitor` (object or actor handle) or the name of the monitor
    actor, looked up when first needed (a handle among the constructor arguments would stop Ray
    from restarting the actor safely).

    >>> worker = VerdictWorker(settings, model=model, repository=repo)  # doctest: +SKIP
    >>> worker.submit(jobs), worker.wait_idle(30), worker.stats()["verdicts_written"]  # doctest: +SKIP

    ``warm_up`` (None: only in the stream, where the model is loaded here) runs :meth:`warm_up`
    before the pipeline waits on :meth:`ready`, so it never competes with scoring.
    """

    def __init__(
        self,
        settings: VerdictSettings,
        monitor: Any | None = None,
        *,
        model: InspectionModel | None = None,
        repository: Any | None = None,
        start: bool = True,
        warm_up: bool | None = None,
    ) -> None:
        self._is_stream_actor = model is None
        if model is None:
            import torch

            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            torch.set_num_threads(settings.llm_torch_threads)  # its own process: never fight inference
            model = InspectionModel.from_settings(settings)
        if repository is None:
            from storage.db import Database
            from storage.repository import Repository

            repository = Repository(Database(settings.database_url))
        self.model = model
        self.repository = repository
        self.max_new_tokens = settings.verdict_max_new_tokens
        self.batch_size = settings.verdict_batch_size
        self._monitor = monitor
        self._queue = _JobQueue(settings.verdict_queue_size)
        self._reused: OrderedDict[Any, Any] = OrderedDict()  # DetectorFacts -> VerdictResult (text-only prompts)
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(
            ("verdicts_submitted", "verdict_skipped", "verdicts_written", "verdicts_rejected", "verdicts_failed",
             "verdicts_reused"), 0
        )
        self._busy = 0  # jobs taken from the queue and not finished
        self._accepting = True
        self._latencies_ms: deque[float] = deque(maxlen=2000)  # job start -> verdict stored
        self._waits_ms: deque[float] = deque(maxlen=2000)  # submitted -> verdict stored
        self._tokens = 0
        self._generate_s = 0.0
        self._recent: deque[dict[str, Any]] = deque(maxlen=256)  # frame_id, source, written_at
        self._reported_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.warm_up_s: float | None = None
        if warm_up if warm_up is not None else self._is_stream_actor:
            self.warm_up()
        if start:
            self.start()

    def warm_up(self) -> int:
        """Answer the commonest text-only facts now (no anomaly, one region at each position); returns how many.

        Does nothing when verdict prompts carry E_img/E_prompt (every frame is then its own prompt).
        """
        from model.anomalygpt import DetectorFacts
        from model.positions import POSITION_NAMES

        if self.model.verdict_image_tokens:
            return 0
        started = time.perf_counter()
        facts = [DetectorFacts(False), *(DetectorFacts(True, (name,), 1) for name in POSITION_NAMES)]
        todo = [f for f in facts if f not in self._reused]
        if todo:
            answers = self.model.gpt.verdict_batch(todo, [None] * len(todo), [None] * len(todo), self.max_new_tokens)
            generate_s = time.perf_counter() - started
            for one, answer in zip(todo, answers, strict=True):
                self._reused[one] = answer
            with self._lock:
                self._tokens += sum(len(self.model.llm.token_ids(a.text)) for a in answers if a.text)
                self._generate_s += generate_s
            self.warm_up_s = time.perf_counter() - started
            log.info("verdict warm-up: %d answers in %.1f s", len(todo), self.warm_up_s)
        return len(todo)

    # --- the sink's side ------------------------------------------------------------------------
    def ready(self) -> bool:
        """Returns once the model is loaded (the pipeline waits on it at start-up)."""
        return True

    def submit(self, jobs: Sequence[VerdictJob]) -> int:
        """Queue what fits and return at once; returns how many were accepted, the rest are skipped.

        Flagged frames come first: when the queue is full, a flagged job pushes out a queued normal
        sample (that one is counted as skipped).
        """
        accepted = pushed_out = 0
        for job in jobs if self._accepting else ():
            ok, out = self._queue.put(job)
            accepted += ok
            pushed_out += out
        with self._lock:
            self._counts["verdicts_submitted"] += accepted
            self._counts["verdict_skipped"] += len(jobs) - accepted + pushed_out
        return accepted

    # --- the background thread ------------------------------------------------------------------
    def start(self) -> None:
        """Start the background thread (done by the constructor unless ``start=False``)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="llm-verdicts", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            os.nice(_NICE)  # on Linux this lowers this thread (and threads it starts), not the actor's
        except OSError:
            pass
        while not self._stop.is_set():
            jobs = self._take(timeout_s=0.2)
            if jobs:
                self._handle(jobs)
            self._report()

    def run_pending(self) -> int:
        """Process the queued jobs in the calling thread (a worker built with ``start=False``); returns how many."""
        done = 0
        while jobs := self._take():
            self._handle(jobs)
            done += len(jobs)
        self._report(force=True)
        return done

    def _take(self, timeout_s: float = 0.0) -> list[VerdictJob]:
        """Up to ``batch_size`` jobs, marked in progress under the lock (so the backlog never reads 0 early)."""
        with self._lock:
            jobs = self._queue.take(self.batch_size)
            self._busy += len(jobs)
        if jobs or timeout_s <= 0:
            return jobs
        self._queue.take(0, timeout_s)  # wait for work without taking it
        with self._lock:
            jobs = self._queue.take(self.batch_size)
            self._busy += len(jobs)
        return jobs

    def _handle(self, jobs: list[VerdictJob]) -> None:
        try:
            self._process(jobs)
        except Exception as exc:  # a bad batch must not stop the verdicts; the templates stay
            log.warning("LLM verdicts for %s failed: %s: %s", [j.frame_id for j in jobs], type(exc).__name__, exc)
            with self._lock:
                self._counts["verdicts_failed"] += len(jobs)
        finally:
            with self._lock:
                self._busy -= len(jobs)

    def _process(self, jobs: list[VerdictJob]) -> None:
        """Answer a batch: reused answers first, the rest in one batched generation; store each."""
        from model.anomalygpt import DetectorFacts

        started = time.perf_counter()
        results: dict[int, Any] = {}
        todo: list[tuple[int, Any, Any, Any]] = []  # (index, facts, map, vector)
        for index, job in enumerate(jobs):
            facts = DetectorFacts(job.is_anomalous, job.positions, job.region_count, job.product_class)
            try:
                anomaly_map, global_vector = self.model.verdict_inputs(job.image_bytes, job.anomaly_map_png,
                                                                       job.threshold)
            except Exception as exc:  # one bad job must not stop the others; its template stays
                log.warning("LLM verdict for %s failed: %s: %s", job.frame_id, type(exc).__name__, exc)
                with self._lock:
                    self._counts["verdicts_failed"] += 1
                continue
            reusable = anomaly_map is None and global_vector is None  # the prompt is f(facts) alone
            if reusable:  # text-only prompts leave the class out: one answer per decision and positions
                facts = DetectorFacts(job.is_anomalous, job.positions, job.region_count)
            if reusable and facts in self._reused:
                results[index] = self._reused[facts]
                self._reused.move_to_end(facts)
                with self._lock:
                    self._counts["verdicts_reused"] += 1
                continue
            todo.append((index, facts, anomaly_map, global_vector))
        tokens, generate_s = 0, 0.0
        if todo:
            unique: dict[Any, int] = {}  # text-only prompts with the same facts are generated once
            batch = []
            for index, facts, anomaly_map, global_vector in todo:
                key = facts if anomaly_map is None and global_vector is None else ("frame", index)
                if key not in unique:
                    unique[key] = len(batch)
                    batch.append((facts, anomaly_map, global_vector))
            with self._lock:
                self._counts["verdicts_reused"] += len(todo) - len(batch)
            generate_started = time.perf_counter()
            answers = self.model.gpt.verdict_batch(
                [b[0] for b in batch], [b[1] for b in batch], [b[2] for b in batch], max_new_tokens=self.max_new_tokens
            )
            generate_s = time.perf_counter() - generate_started
            tokens = sum(len(self.model.llm.token_ids(a.text)) for a in answers if a.text)  # re-tokenised
            for index, facts, anomaly_map, global_vector in todo:
                key = facts if anomaly_map is None and global_vector is None else ("frame", index)
                results[index] = answers[unique[key]]
                if key is facts:
                    self._reused[facts] = results[index]
                    while len(self._reused) > _REUSE_ENTRIES:
                        self._reused.popitem(last=False)
        with self._lock:
            self._tokens += tokens
            self._generate_s += generate_s
        for index, result in sorted(results.items()):
            try:
                self._store(jobs[index], result, started)
            except Exception as exc:
                log.warning("LLM verdict for %s not stored: %s: %s", jobs[index].frame_id, type(exc).__name__, exc)
                with self._lock:
                    self._counts["verdicts_failed"] += 1

    def _store(self, job: VerdictJob, result: Any, started: float) -> None:
        if result.agrees:
            self.repository.set_verdict(job.frame_id, result.sentence, "llm")
            source, counter = "llm", "verdicts_written"
        else:
            note = f"llm contradicted: {result.text!r}"[:_NOTE_CHARS]
            self.repository.set_verdict(job.frame_id, job.template, "template", note=note)
            source, counter = "template", "verdicts_rejected"
        written_at = datetime.now(UTC)
        with self._lock:
            self._counts[counter] += 1
            self._latencies_ms.append((time.perf_counter() - started) * 1000.0)
            if job.submitted_at:
                self._waits_ms.append((time.time() - job.submitted_at) * 1000.0)
            self._recent.append({"frame_id": job.frame_id, "source": source, "written_at": written_at})

    # --- counters -------------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        """The monitor's verdict counters (``verdict_backlog`` = queued + in progress) plus extras."""
        with self._lock:
            out = dict(self._counts)
            out["verdict_backlog"] = self._queue.qsize() + self._busy
        return out

    def stats(self) -> dict[str, Any]:
        """Counters, verdict latency (p50/p95 ms), tokens/s of generation and the recent verdicts."""
        out: dict[str, Any] = self.counters()
        with self._lock:
            latencies, waits = list(self._latencies_ms), list(self._waits_ms)
            tokens, generate_s, recent = self._tokens, self._generate_s, list(self._recent)
        for name, values in (("verdict_ms", latencies), ("verdict_wait_ms", waits)):
            out[f"{name}_p50"] = round(float(np.percentile(values, 50)), 1) if values else None
            out[f"{name}_p95"] = round(float(np.percentile(values, 95)), 1) if values else None
        out["tokens_generated"] = tokens
        out["tokens_per_s"] = round(tokens / generate_s, 2) if generate_s > 0 else None
        out["warm_up_s"] = None if self.warm_up_s is None else round(self.warm_up_s, 2)
        out["recent"] = recent
        return out

    def _report(self, force: bool = False, running: bool = True) -> None:
        """Push counters to the stream monitor about once a second (fire and forget)."""
        if self._monitor is None or (not force and time.monotonic() - self._reported_at < _REPORT_EVERY_S):
            return
        self._reported_at = time.monotonic()
        try:
            if isinstance(self._monitor, str):  # the named monitor actor of this Ray cluster
                import ray

                from pipeline.stream.monitor import NAMESPACE

                self._monitor = ray.get_actor(self._monitor, namespace=NAMESPACE)
            report = self._monitor.report
            getattr(report, "remote", report)("verdicts", self.counters(), None, running)  # actor or plain object
        except Exception as exc:  # the monitor is optional: never fail a verdict for it
            log.debug("verdict counters not reported: %s", exc)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no job is queued or in progress; False when ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.counters()["verdict_backlog"] == 0:
                return True
            time.sleep(0.05)
        return self.counters()["verdict_backlog"] == 0

    def close(self, drain_timeout_s: float = 0.0) -> dict[str, Any]:
        """Stop accepting, wait up to ``drain_timeout_s`` for the backlog, skip the rest; final stats."""
        self._accepting = False
        if self._thread is not None:
            self.wait_idle(drain_timeout_s)
            self._stop.set()
            self._thread.join(timeout=max(5.0, drain_timeout_s))
        abandoned = len(self._queue.take(self._queue.maxsize + 1))
        with self._lock:
            self._counts["verdict_skipped"] += abandoned
        self._report(force=True, running=False)
        return self.stats()
