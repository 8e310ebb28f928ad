"""Automatic self-calibration of the running stream: each bank version refines its threshold once.

Most frames on a line are normal. Once a bank version has scored ``after_frames`` frames of its
class (the newest ``after_frames`` frames of the class all carry its version), the driver refines
the class's threshold from those scores with the same code as ``linesight bank calibrate``
(:meth:`pipeline.banks.BankManager.self_calibrate`: median + 4 robust sigmas, within 30 % of the
version's threshold) and activates the result as a new version; the stream swaps to it within
``bank_poll_interval_s``. It is reversible with ``bank activate C OLD``. The supervision loop only
pokes a round (:meth:`SelfCalibrator.poke`); it runs in its own thread, so recreating dead actors
never waits on SQL or on copying a bank file.

A version is refined once: not a version that is itself a stream calibration (method
``stream-robust``), not an operator's override (``operator-override``, ``bank sensitivity``), and
not a version another registered version already refined (``source_version`` in SQL), so an
operator who activates the old version again keeps it, across restarts too.

>>> # calibrator = SelfCalibrator(lambda: BankManager(settings), after_frames=500); calibrator.run_once()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from model.calibration import OVERRIDE_METHOD, STREAM_METHOD, STREAM_MIN_FRAMES
from model.names import bank_key

__all__ = ["SelfCalibrator", "self_calibrator_for"]

log = logging.getLogger(__name__)

_NOT_REFINED = (STREAM_METHOD, OVERRIDE_METHOD)


class SelfCalibrator:
    """Called from the driver's supervision loop; keeps which versions need no further look in memory."""

    def __init__(self, make_manager: Callable[[], Any], after_frames: int) -> None:
        if after_frames < STREAM_MIN_FRAMES:
            raise ValueError(f"self-calibration needs after_frames >= {STREAM_MIN_FRAMES}, got {after_frames}")
        self._make_manager = make_manager  # a BankManager, opened on the first round (SQL may be down at start)
        self.manager: Any | None = None
        self.after_frames = after_frames
        self.calibrated: list[str] = []  # "class@vN" keys this driver created, oldest first
        self._settled: set[str] = set()  # versions that are never refined (again): no SQL read for them
        self._warned: set[str] = set()  # versions whose transient failure was logged
        self._outage_logged = False
        self._round: threading.Thread | None = None

    def poke(self) -> None:
        """Start a round (:meth:`run_once`) in a background thread unless one is running.

        The supervision loop calls this: recreating dead actors never waits on SQL or a bank file.
        """
        if self._round is not None and self._round.is_alive():
            return
        self._round = threading.Thread(target=self.run_once, name="linesight-self-calibration", daemon=True)
        self._round.start()

    def run_once(self) -> list[str]:
        """Refine every active version that has scored enough frames; returns the new versions' keys.

        Never raises: a failure is logged; a version whose bank or calibration is broken is not tried
        again by this driver, one that met an unavailable database is tried next round.
        """
        created: list[str] = []
        try:
            if self.manager is None:
                self.manager = self._make_manager()
            active = self.manager.repository.active_banks()
        except Exception as exc:  # SQL down: the ingest loop reports it; try again next round, say it once
            if not self._outage_logged:
                self._outage_logged = True
                log.warning("self-calibration could not read the active banks (retried each round): %s", exc)
            return created
        self._outage_logged = False
        for product_class, row in active.items():
            key = bank_key(product_class, row.version)
            if key in self._settled:
                continue
            try:
                new = self._maybe_refine(product_class, row)
            except Exception as exc:
                if _permanent(exc):  # a broken bank file, a bad calibration: the same next round
                    self._settled.add(key)
                    log.warning("self-calibration of %s failed, not retried: %s: %s", key, type(exc).__name__, exc)
                elif key not in self._warned:  # SQL busy or down: retried every round, logged once
                    self._warned.add(key)
                    log.warning("self-calibration of %s failed, retried next round: %s: %s", key,
                                type(exc).__name__, exc)
                continue
            if new is not None:
                self._settled.add(key)
                created.append(bank_key(product_class, new.version))
        self.calibrated.extend(created)
        return created

    def _maybe_refine(self, product_class: str, row: Any) -> Any | None:
        key = bank_key(product_class, row.version)
        if row.calibration.get("method") in _NOT_REFINED:
            self._settled.add(key)
            return None
        if self.manager.calibrated_from(product_class, row.version) is not None:
            self._settled.add(key)  # refined before, then activated again by an operator: it stands
            return None
        recent = self.manager.repository.recent_scores(product_class, self.after_frames)
        if sum(1 for version, _ in recent if version == row.version) < self.after_frames:
            return None
        new = self.manager.self_calibrate(product_class, frames=self.after_frames, activate=True)
        log.info("self-calibrated %s after %d frames: threshold %.4f -> %.4f, active as %s", key,
                 self.after_frames, float(row.calibration["threshold"]), float(new.calibration["threshold"]),
                 bank_key(product_class, new.version))
        return new


def _permanent(exc: BaseException) -> bool:
    """True for an error that repeats (a broken bank file, a refused calibration), False for an outage."""
    from linesight.errors import LinesightError, UnavailableError

    return isinstance(exc, LinesightError) and not isinstance(exc, UnavailableError)


def self_calibrator_for(settings: Any) -> SelfCalibrator | None:
    """The stream's calibrator for ``settings`` (``self_calibrate_after_frames``; None when it is 0 = off)."""
    if not settings.self_calibrate_after_frames:
        return None
    from pipeline.banks import BankManager

    return SelfCalibrator(lambda: BankManager(settings), settings.self_calibrate_after_frames)
