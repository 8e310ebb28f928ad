"""Cameras: publish frames from a folder, a video or any frame source (e.g. the synthetic line of training.synthetic), paced at an fps per line.

A frame source yields :data:`CameraFrame` tuples ``(line_id, camera_id, product_class, image_rgb, extra)``;
``extra`` carries what the source knows (``is_defective``, ``defect_kind``, ``path``) and comes back in
the manifest so a demo can score results against ground truth.

>>> from connectors.kafka import make_producer  # doctest: +SKIP
>>> publisher = CameraPublisher(make_producer(servers, max_request_size=1 << 20), "linesight.frames")  # doctest: +SKIP
>>> manifest = publisher.publish(folder_frames(Path('shots'), 'line-1', 'cam-1', 'washer'), fps=20)  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from kafka.errors import KafkaError, MessageSizeTooLargeError
from pydantic import ValidationError
from tqdm import tqdm

from connectors.exceptions import CameraError, DeliveryError, FrameError
from connectors.image_header import IMAGE_SUFFIXES
from connectors.schema import FrameHeaders, encode_image, frame_message

__all__ = [
    "IMAGE_SUFFIXES",
    "CameraFrame",
    "CameraPublisher",
    "PublishedFrame",
    "folder_frames",
    "interleave",
    "iter_folder",
    "iter_video",
    "video_frames",
]

log = logging.getLogger(__name__)

CameraFrame = tuple[str, str, str, np.ndarray, dict[str, Any]]  # line_id, camera_id, class, RGB image, extra


# --- sources ---------------------------------------------------------------------------------------
def iter_folder(
    path: str | Path, *, on_unreadable: Callable[[Path, str], None] | None = None
) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield ``(file, uint8 RGB image)`` for the image files of a folder (``IMAGE_SUFFIXES``), sorted by name.

    A file OpenCV cannot read is reported (``on_unreadable(file, reason)``, default: a warning
    naming the file) and skipped. A missing folder or one without image files raises CameraError.

    >>> next(iter_folder("frames/"))[1].shape  # doctest: +SKIP
    (480, 640, 3)
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CameraError(f"no such folder: {str(folder)!r}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CameraError(f"folder {str(folder)!r} has no {'/'.join(IMAGE_SUFFIXES)} images")
    report = on_unreadable or (lambda file, reason: log.warning("skipping %s: %s", file, reason))
    for file in files:
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            report(file, "OpenCV cannot read it as an image")
            continue
        yield file, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def iter_video(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video file (or camera URL) as uint8 RGB images; CameraError if it cannot open.

    >>> sum(1 for _ in iter_video("line1.mp4"))  # doctest: +SKIP
    300
    """
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise CameraError(f"cannot open video {str(path)!r} (missing file or unsupported codec)")
    try:
        while True:
            ok, image = capture.read()
            if not ok or image is None:
                return
            yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def folder_frames(
    path: str | Path, line_id: str, camera_id: str, product_class: str, *, loop: bool = True
) -> Iterator[CameraFrame]:
    """One line's frames from a folder, repeated when ``loop`` (CameraError if no file is readable)."""
    while True:
        yielded = 0
        for file, image in iter_folder(path):
            yielded += 1
            yield line_id, camera_id, product_class, image, {"path": str(file)}
        if yielded == 0:
            raise CameraError(f"no readable image in folder {str(path)!r}")
        if not loop:
            return


def video_frames(
    path: str | Path, line_id: str, camera_id: str, product_class: str, *, loop: bool = True
) -> Iterator[CameraFrame]:
    """One line's frames from a video, restarted at the end when ``loop`` (CameraError if it has none)."""
    while True:
        yielded = 0
        for index, image in enumerate(iter_video(path)):
            yielded += 1
            yield line_id, camera_id, product_class, image, {"path": str(path), "video_frame": index}
        if yielded == 0:
            raise CameraError(f"video {str(path)!r} has no readable frame")
        if not loop:
            return


def interleave(sources: Sequence[Iterable[CameraFrame]]) -> Iterator[CameraFrame]:
    """Round-robin over several lines' sources until all are exhausted.

    >>> list(interleave([iter("ab"), iter("xyz")]))
    ['a', 'x', 'b', 'y', 'z']
    """
    iterators = [iter(source) for source in sources]
    while iterators:
        alive = []
        for iterator in iterators:
            try:
                yield next(iterator)
            except StopIteration:
                continue
            alive.append(iterator)
        iterators = alive


# --- publishing ------------------------------------------------------------------------------------
@dataclass
class PublishedFrame:
    """Manifest entry of one published frame; ``partition``/``offset`` are known after the final flush."""

    frame_id: str
    line_id: str
    camera_id: str
    product_class: str
    size_bytes: int
    is_defective: bool | None = None  # ground truth when the source knows it
    extra: dict[str, Any] = field(default_factory=dict)
    partition: int | None = None
    offset: int | None = None


class CameraPublisher:
    """Encode and publish camera frames to ``topic`` with a caller-owned producer (key = line id)."""

    def __init__(
        self, producer: Any, topic: str, *, fmt: Literal["jpg", "png"] = "jpg", quality: int = 90,
        flush_timeout_s: float = 60.0,
    ) -> None:
        if fmt not in ("jpg", "png"):
            raise FrameError(f"image format must be 'jpg' or 'png', got {fmt!r}")
        self.producer = producer
        self.topic = topic
        self.fmt: Literal["jpg", "png"] = fmt
        self.quality = quality
        self.flush_timeout_s = flush_timeout_s
        self._run_id = uuid.uuid4().hex[:8]  # frame ids are unique across publishers and runs
        self._sequence = itertools.count(1)

    def publish(
        self,
        frames: Iterable[CameraFrame],
        fps: float | None = None,
        count: int | None = None,
        progress: bool = False,
    ) -> list[PublishedFrame]:
        """Publish up to ``count`` frames (all when None) at ``fps`` per line (None: as fast as possible).

        Flushes at the end and returns the manifest in publishing order. Raises DeliveryError naming
        the frame when one is larger than the producer's ``max_request_size`` or was not delivered.
        """
        if fps is not None and fps <= 0:
            raise CameraError(f"fps must be > 0 (or None for as fast as possible), got {fps}")
        if count is not None and count < 0:
            raise CameraError(f"count must be >= 0, got {count}")
        manifest: list[PublishedFrame] = []
        futures: list[Any] = []
        failures: list[tuple[str, BaseException]] = []
        line_clock: dict[str, tuple[float, int]] = {}  # line -> (start time, frames sent)
        bar = tqdm(total=count, desc=f"publishing to {self.topic}", unit="frame", disable=not progress)
        try:
            for line_id, camera_id, product_class, image, extra in itertools.islice(frames, count):
                if fps is not None:
                    start, sent = line_clock.get(line_id, (time.monotonic(), 0))
                    delay_s = start + sent / fps - time.monotonic()
                    if delay_s > 0:
                        time.sleep(delay_s)
                    line_clock[line_id] = (start, sent + 1)
                item, future = self._send_one(line_id, camera_id, product_class, image, extra)
                future.add_errback(lambda exc, fid=item.frame_id: failures.append((fid, exc)))
                manifest.append(item)
                futures.append(future)
                bar.update(1)
                if failures:
                    break
            self._flush()
        finally:
            bar.close()
        if failures:
            frame_id, first = failures[0]
            raise DeliveryError(
                f"{len(failures)} frame(s) were not delivered to topic {self.topic!r}; first: {frame_id}: {first}"
            )
        for item, future in zip(manifest, futures, strict=True):
            metadata = future.get(timeout=0)
            item.partition, item.offset = metadata.partition, metadata.offset
        return manifest

    def _send_one(
        self, line_id: str, camera_id: str, product_class: str, image: np.ndarray, extra: dict[str, Any]
    ) -> tuple[PublishedFrame, Any]:
        frame_id = f"{line_id}-{self._run_id}-{next(self._sequence):07d}"
        try:
            headers = FrameHeaders(
                frame_id=frame_id, line_id=line_id, camera_id=camera_id, product_class=product_class,
                captured_at=datetime.now(UTC),
            )
        except ValidationError as exc:
            error = exc.errors()[0]
            name = str(error["loc"][0]) if error["loc"] else "?"
            raise FrameError(f"invalid {name} {error.get('input')!r} for frame {frame_id!r}: {error['msg']}") from None
        key, value, kafka_headers = frame_message(headers, encode_image(image, self.fmt, self.quality))
        try:
            future = self.producer.send(self.topic, key=key, value=value, headers=kafka_headers)
        except MessageSizeTooLargeError as exc:
            raise DeliveryError(
                f"frame {frame_id} is {len(value)} bytes, larger than the producer's max_request_size "
                f"({self.producer.config.get('max_request_size')}): {exc}"
            ) from exc
        except KafkaError as exc:
            raise DeliveryError(f"cannot send frame {frame_id} to topic {self.topic!r}: {exc}") from exc
        is_defective = extra.get("is_defective")
        item = PublishedFrame(
            frame_id=frame_id, line_id=line_id, camera_id=camera_id, product_class=product_class,
            size_bytes=len(value), is_defective=None if is_defective is None else bool(is_defective),
            extra=dict(extra),
        )
        return item, future

    def _flush(self) -> None:
        try:
            self.producer.flush(timeout=self.flush_timeout_s)
        except KafkaError as exc:
            raise DeliveryError(
                f"frames for topic {self.topic!r} were not delivered within {self.flush_timeout_s:g} s: {exc}"
            ) from exc
