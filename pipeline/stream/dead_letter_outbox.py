"""Dead letters of finished batches, written once: ledger check → send → flush → record → (the loop commits).

The ingest loop decides that a frame is dead-lettered (:class:`DeadLetter`); before it commits the
frame's offset it calls :meth:`DeadLetterOutbox.settle`, which takes each dead letter through

1. **the ledger check** (:class:`~pipeline.stream.ports.DeadLetterLedger`, SQL): a record already in it was
   dead-lettered before a crash or a replay of the group and is *not* sent again (``dead_letters_replayed``);
2. **send** and **flush** of the others to the dead-letter topic (``dead_lettered`` counts each once);
3. **record** of those written in the ledger.

Each step that fails raises ``InfrastructureFault`` (``dead_letter_ledger`` for SQL, ``dead_letter`` for the
topic); the next call goes on where it stopped: a dead letter the topic confirmed (``succeeded()``) is
never sent again, one it did not confirm is. What remains: a crash after the flush and before the
ledger row commits re-sends those dead letters on replay (one SQL ``INSERT`` wide).

>>> # outbox = DeadLetterOutbox(sink, ledger, counters); outbox.settle(letters)  # then commit offsets
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pipeline.exceptions import InfrastructureFault
from pipeline.stream.counters import StreamCounters
from pipeline.stream.ports import DeadLetterLedger, DeadLetters, LedgerKey

__all__ = ["DeadLetter", "DeadLetterOutbox"]

log = logging.getLogger(__name__)

# states: new → (in the ledger: done) | to_send → sent → written → done
_NEW, _TO_SEND, _SENT, _WRITTEN, _DONE = "new", "to_send", "sent", "written", "done"


@dataclass(eq=False)
class DeadLetter:
    """One frame judged bad, on its way to the dead-letter topic and the ledger."""

    record: Any  # topic, partition, offset, key, value, headers
    reason: str
    detail: str
    key: LedgerKey  # (topic, partition, offset, record_sha256)
    state: str = _NEW
    delivery: Any = None  # the sink's handle for the last send

    @property
    def done(self) -> bool:
        """Written and recorded, or found in the ledger: its offset may be committed."""
        return self.state == _DONE


class DeadLetterOutbox:
    """Writes dead letters once (see the module docstring); ``ledger=None`` skips the ledger steps."""

    def __init__(self, sink: DeadLetters, ledger: DeadLetterLedger | None, counters: StreamCounters,
                 name: str = "ingest") -> None:
        self.sink = sink
        self.ledger = ledger
        self.counters = counters
        self.name = name

    def settle(self, letters: list[DeadLetter]) -> None:
        """Take every letter to ``done``, or raise ``InfrastructureFault`` (call again later to go on)."""
        self._check_ledger([d for d in letters if d.state == _NEW])
        self._send([d for d in letters if d.state == _TO_SEND])
        self._flush([d for d in letters if d.state == _SENT])
        self._record([d for d in letters if d.state == _WRITTEN])

    def _check_ledger(self, new: list[DeadLetter]) -> None:
        if not new:
            return
        found: set[LedgerKey] = set()
        if self.ledger is not None:
            try:
                found = self.ledger.recorded([d.key for d in new])
            except Exception as exc:
                raise InfrastructureFault("dead_letter_ledger", f"ledger lookup: {type(exc).__name__}: {exc}") from exc
        for letter in new:
            if letter.key in found:
                letter.state = _DONE
                self.counters.dead_letters_replayed += 1
                log.info("%s: %s[%d]@%d was dead-lettered before (%s): not sent again", self.name, *letter.key[:3],
                         letter.reason)
            else:
                letter.state = _TO_SEND

    def _send(self, pending: list[DeadLetter]) -> None:
        for letter in pending:
            try:
                letter.delivery = self.sink.send(letter.record, letter.reason, letter.detail)
            except Exception as exc:
                raise InfrastructureFault("dead_letter", f"{type(exc).__name__}: {exc}") from exc
            letter.state = _SENT

    def _flush(self, sent: list[DeadLetter]) -> None:
        if not sent:
            return
        error: Exception | None = None
        try:
            self.sink.flush()
        except Exception as exc:
            error = exc
        lost = 0
        for letter in sent:  # confirmed ones are written; the others are sent again
            if _confirmed(letter.delivery, flushed=error is None):
                self._written(letter)
            else:
                letter.state = _TO_SEND
                lost += 1
        if error is not None:
            raise InfrastructureFault("dead_letter", f"{type(error).__name__}: {error}") from error
        if lost:  # sent through a producer that was replaced meanwhile
            raise InfrastructureFault("dead_letter", f"{lost} dead letter(s) were not confirmed; sending them again")

    def _written(self, letter: DeadLetter) -> None:
        letter.state = _WRITTEN
        self.counters.count_dead_letter(letter.reason)

    def _record(self, written: list[DeadLetter]) -> None:
        if not written:
            return
        if self.ledger is not None:
            try:
                self.ledger.record([(d.key, d.reason, d.detail) for d in written])
            except Exception as exc:  # written, not recorded: recorded later, never sent again
                raise InfrastructureFault("dead_letter_ledger", f"ledger write: {type(exc).__name__}: {exc}") from exc
        for letter in written:
            letter.state = _DONE


def _confirmed(delivery: Any, *, flushed: bool) -> bool:
    """Written for sure: the producer's future succeeded (a sink without handles: the flush succeeded)."""
    if delivery is None:
        return flushed
    try:
        return bool(delivery.succeeded())
    except Exception:
        return False
