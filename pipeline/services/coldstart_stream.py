"""Cold start inside the running stream: a class with no bank inspects itself, then gets its bank by itself.

1. **Scoring** (in the inference actors, :meth:`pipeline.stream.inference.InferenceWorker.score`): a class
   registered for cold start (``LINESIGHT_COLDSTART_CLASSES``, ``linesight bank auto --class C
   --stream`` or ``POST /api/banks/{class}/cold-start``) and without an active bank reaches the
   inference actors as bank version 0 marked cold start; each actor scores its frames against a
   sliding window of the class's recent frames (:class:`model.mutual_window.MutualWindow`: the
   last ``window - 1`` frames' features, the last ``frames`` scores for the threshold, median + 3
   MADs, no decision before ``min_decision_frames``). Results are stored and alerted like any
   other, with ``score_source = 'cold-start'`` and the threshold's method.
2. **Promotion** (here, a thread of the driver, :class:`ColdStartPromoter`): once the stream has
   stored ``frames`` cold-start results of the class, its first ``frames`` frames are read back
   from the frames topic and handed to ``bank auto``'s code (:func:`pipeline.services.coldstart.auto_build`:
   mutual scoring of all of them against each other, the ``shots`` most normal built through
   :meth:`pipeline.services.banks.BankManager.build`: calibration, sha256, registration, activation = the
   hot swap). The chosen frame ids are logged and stored with the bank (``bank list``, ``GET
   /api/banks``) and the registry row. Frames an operator marked ``defect`` before the promotion
   are never chosen; after it, ``bank auto --class C --exclude FRAME`` or ``bank activate`` undo it.

Each inference actor keeps its own window (an actor sees the batches sent to it); a restarted
actor starts a new window from the next frames.

>>> ColdStartConfig(frames=8, shots=2).window  # doctest: +SKIP
16
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ColdStartConfig", "ColdStartPromoter"]

log = logging.getLogger(__name__)

COLD_START_SOURCE = "cold-start"  # inspections.score_source of frames scored by mutual scoring


@dataclass(frozen=True)
class ColdStartConfig:
    """Cold start's knobs (``LINESIGHT_COLDSTART_*``); built from the settings by :meth:`from_settings`."""

    classes: tuple[str, ...] = ()  # classes the settings register for cold start
    frames: int = 64  # N: promoted once the stream has scored this many frames of the class
    shots: int = 4  # K: the most normal of them become the bank's references
    window: int = 16  # W: a frame is compared with at most W - 1 other recent frames
    min_decision_frames: int = 8  # no decision before this many frames of the class were scored
    tile_px: int | str | None = "auto"  # how frames larger than the model input are cut (as new banks)
    check_interval_s: float = 2.0  # how often the driver looks for classes ready to promote
    read_timeout_s: float = 30.0  # reading the first frames back from the topic gives up after this
    rotations: bool = True  # the promoted bank adds 90/180/270 rotations of its references
    kafka: dict[str, Any] = field(default_factory=dict)  # frames_topic, max_frame_bytes, max_frame_pixels, security

    @classmethod
    def from_settings(cls, settings: Any) -> ColdStartConfig:
        """The cold-start part of a :class:`linesight.settings.Settings`."""
        return cls(
            classes=settings.coldstart_class_names, frames=settings.coldstart_frames, shots=settings.coldstart_shots,
            window=settings.coldstart_window, min_decision_frames=settings.coldstart_min_frames,
            tile_px=settings.tile_setting, check_interval_s=settings.coldstart_check_interval_s,
            kafka={"topic": settings.frames_topic, "max_frame_bytes": settings.max_frame_bytes,
                   "max_frame_pixels": settings.max_frame_pixels, "security": settings.kafka_security},
        )


FrameReader = Callable[[str, int, Collection[str]], list]  # (class, count, vetoed ids) -> [NamedFrame]


class ColdStartPromoter:
    """Promotes each cold-start class's most normal first frames to its first bank (a driver thread).

    ``check_once`` does one round and is what tests call; :meth:`start` runs it every
    ``check_interval_s`` until :meth:`stop`.
    """

    def __init__(self, config: ColdStartConfig, repository: Any, manager: Any, read_frames: FrameReader) -> None:
        self.config = config
        self.repository = repository
        self.manager = manager  # pipeline.services.banks.BankManager (its encoder is built on the first promotion)
        self.read_frames = read_frames
        self.promoted: list[Any] = []  # AutoBank results, in order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_stream(cls, settings: Any, bootstrap_servers: str) -> ColdStartPromoter:
        """The promoter of a running stream: SQL and banks from ``settings``, frames read back from Kafka."""
        from pipeline.services.banks import BankManager
        from pipeline.services.coldstart import read_class_frames

        config = ColdStartConfig.from_settings(settings)
        manager = BankManager(settings)
        kafka = config.kafka

        def read(product_class: str, count: int, vetoed: Collection[str]) -> list:
            return read_class_frames(
                bootstrap_servers, kafka["topic"], product_class, count, timeout_s=config.read_timeout_s,
                max_frame_bytes=kafka["max_frame_bytes"], max_frame_pixels=kafka["max_frame_pixels"],
                security=kafka["security"], exclude=vetoed,
            )

        return cls(config, manager.repository, manager, read)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> ColdStartPromoter:
        """Register the settings' classes, then check every ``check_interval_s`` in a daemon thread."""
        self.register_configured()
        self._thread = threading.Thread(target=self._run, name="linesight-coldstart", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop checking (a promotion under way finishes first, up to ``timeout_s``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        database = getattr(self.repository, "database", None)
        if database is not None and hasattr(database, "dispose"):
            database.dispose()  # the promoter's own connection pool

    def _run(self) -> None:
        while not self._stop.wait(self.config.check_interval_s):
            try:
                self.check_once()
            except Exception as exc:  # SQL down, ...: never let the thread die; next round retries
                log.warning("cold start: check failed: %s: %s", type(exc).__name__, exc)

    # --- one round ---------------------------------------------------------------------------
    def register_configured(self) -> None:
        """Register each class of the settings that has no active bank yet (idempotent)."""
        active = self.repository.active_banks()
        for product_class in self.config.classes:
            if product_class not in active:
                self.repository.register_cold_start(product_class, frames=self.config.frames,
                                                    shots=self.config.shots, registered_by="setting")

    def check_once(self) -> list[Any]:
        """Promote every class in cold start whose first ``frames`` frames the stream has scored; returns
        the :class:`pipeline.services.coldstart.AutoBank` results of this round."""
        done = []
        for entry in self.repository.cold_starts(state="scoring"):
            if self._stop.is_set():
                break
            result = self._maybe_promote(entry)
            if result is not None:
                done.append(result)
        self.promoted.extend(done)
        return done

    def _maybe_promote(self, entry: Any) -> Any | None:
        from pipeline.services.coldstart import auto_build

        product_class = entry.product_class
        active = self.repository.active_banks().get(product_class)
        if active is not None:  # an operator built a bank meanwhile: it takes over, nothing to promote
            self.repository.settle_cold_start(product_class, "promoted", promoted_version=active.version,
                                              detail=f"bank v{active.version} was activated before the promotion")
            return None
        scored = self.repository.count_scored(product_class, COLD_START_SOURCE)
        if scored < entry.frames:
            return None
        vetoed = set(self.repository.feedback_for_class(product_class, "defect"))
        try:
            frames = self.read_frames(product_class, entry.frames, vetoed)
            result = auto_build(self.manager, product_class, frames, shots=entry.shots, rotations=self.config.rotations,
                                activate=True, exclude=vetoed, window=self.config.window)
        except Exception as exc:  # e.g. the topic holds fewer valid frames than counted: retried next round
            detail = f"promotion failed: {type(exc).__name__}: {exc}"
            log.warning("cold start %s: %s", product_class, detail)
            self.repository.settle_cold_start(product_class, "scoring", detail=detail)
            return None
        references = [name for name, _ in result.chosen]
        self.repository.settle_cold_start(
            product_class, "promoted", promoted_version=result.row.version,
            detail=f"references {references} of the first {len(frames)} frames"
                   + (f"; vetoed {sorted(vetoed)}" if vetoed else ""),
        )
        log.info("cold start %s: the %d most normal of its first %d frames became bank v%d (active): %s "
                 "(veto: linesight bank auto --class %s --exclude FRAME, or bank activate)", product_class,
                 len(references), len(frames), result.row.version, references, product_class)
        return result
