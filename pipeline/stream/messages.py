"""Plain data passed between the pipeline's Ray actors (picklable, no live clients or ORM objects).

ingest ──FrameTask batch──► inference ──ScoredFrame batch──► sink ──WriteResult──► ingest (commit)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from model.names import bank_key

if TYPE_CHECKING:  # the detector pulls in torch; the ingest and sink processes need not
    from model.detector import FrameScore

__all__ = ["ZERO_SHOT_VERSION", "BankRef", "FrameTask", "RecordView", "ScoredFrame", "WriteResult", "record_digest"]


ZERO_SHOT_VERSION = 0  # bank_version stored for frames a zero-shot class had no bank for


@dataclass(frozen=True)
class BankRef:
    """Which bank file scores a class: the stream resolves it from SQL every `bank_poll_interval_s`.

    Version 0 (``ZERO_SHOT_VERSION``, no path) means no bank: the class is one of
    ``zero_shot_classes`` and is scored by the trained decoder alone, or, with ``cold_start``, it
    is in cold start and scored against its own recent frames (pipeline/services/coldstart_stream.py).
    ``sha256`` is the hash recorded at registration; the file is checked against it when loaded
    ("" = not checked).
    """

    product_class: str
    version: int
    path: str
    sha256: str = ""
    cold_start: bool = False

    @property
    def is_zero_shot(self) -> bool:
        """True for the no-bank reference of a zero-shot class."""
        return self.version == ZERO_SHOT_VERSION and not self.cold_start

    @property
    def is_cold_start(self) -> bool:
        """True for the no-bank reference of a class in cold start (mutual scoring)."""
        return self.version == ZERO_SHOT_VERSION and self.cold_start

    @property
    def score_source(self) -> str:
        """What scores the class's frames: "bank", "zero-shot" or "cold-start" (stored with each result)."""
        return "cold-start" if self.is_cold_start else "zero-shot" if self.is_zero_shot else "bank"

    @property
    def key(self) -> str:
        """Cache key ``class@vN`` (a new version is a new key: that is the hot swap)."""
        return bank_key(self.product_class, self.version)


@dataclass(frozen=True)
class FrameTask:
    """One decoded, validated frame on its way to inference."""

    frame_id: str
    line_id: str
    camera_id: str
    product_class: str
    captured_at: datetime
    received_at: datetime
    image: np.ndarray  # (H, W, 3) uint8 RGB
    image_bytes: bytes  # the encoded frame as received (stored for overlays and dialogue)
    bank: BankRef
    topic: str
    partition: int
    offset: int
    content_sha256: str = ""  # sha256 hex of image_bytes: a reused frame_id with other bytes is a conflict
    record_sha256: str = ""  # record_digest of the Kafka record as received (the dead-letter ledger's key)


@dataclass(frozen=True)
class ScoredFrame:
    """A frame with its detector result, ready to store."""

    task: FrameTask
    result: FrameScore  # score, threshold, decision, map, mask, positions, verdict
    scored_at: datetime


@dataclass
class WriteResult:
    """What the sink did with one batch."""

    stored: int = 0  # rows newly inserted
    redelivered: int = 0  # frames already stored (a replay after a crash); nothing written twice
    alerts_sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    bank_versions: dict[str, int] = field(default_factory=dict)  # "class@vN" -> frames scored with it
    conflicts: list[int] = field(default_factory=list)  # indices of frames whose frame_id is stored with other bytes


@dataclass(frozen=True)
class RecordView:
    """The fields of a Kafka record the dead-letter sink needs, rebuilt from a task (its frame, as received)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    record_sha256: str = ""  # of the record as received (its rebuilt headers may differ)

    @classmethod
    def of(cls, task: FrameTask) -> RecordView:
        headers = [
            ("frame_id", task.frame_id.encode()),
            ("line_id", task.line_id.encode()),
            ("camera_id", task.camera_id.encode()),
            ("product_class", task.product_class.encode()),
            ("captured_at", task.captured_at.isoformat().encode()),
        ]
        return cls(task.topic, task.partition, task.offset, task.line_id.encode(), task.image_bytes, headers,
                   task.record_sha256)


def record_digest(key: bytes | None, value_sha256: str, headers: Sequence[tuple[str, bytes | None]] | None) -> str:
    """sha256 hex of a Kafka record's key, value (given as its sha256 hex) and headers, in order.

    Tells a replay of a record (same digest at the same position) from another record at a reused
    position (a recreated topic). Every field is length-prefixed, so no two records share an input.

    >>> record_digest(b"k", hashlib.sha256(b"v").hexdigest(), [("h", b"1")])[:12]
    '7b1c01853cda'
    """
    digest = hashlib.sha256()

    def part(data: bytes | None) -> None:
        digest.update(b"-" if data is None else len(data).to_bytes(8, "big") + data)

    part(key)
    part(value_sha256.encode())
    for name, value in headers or ():
        part(str(name).encode("utf-8", "surrogateescape"))
        part(None if value is None else bytes(value))
    return digest.hexdigest()
