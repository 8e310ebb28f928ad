"""The line screen: per-line tiles, throughput and defect-share trends, dead letters and their replay."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel

from connectors.dead_letter_reader import DeadLetter  # its fields are the API schema
from linesight.api.auth import AUTH_RESPONSES, require_token
from linesight.api.context import ApiContext, get_context
from linesight.api.errors import ERROR_RESPONSES, ApiError
from linesight.api.routes.params import TEXT_PATTERN

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["line screen"], responses=ERROR_RESPONSES)

RATE_WINDOW_S = 60.0  # frames/s on a tile: frames captured in the last minute
SHARE_WINDOW_S = 3600.0  # flagged share on a tile: the last hour
HOUR_BUCKET_S = 60  # trend points of the last hour: one a minute
SHIFT_BUCKETS = 96  # trend points of a shift (8 h: one every 5 min)
DEAD_LETTER_TIMEOUT_S = 5.0


class LineTile(BaseModel):
    """One line: newest frame, frames/s over the last minute, flagged share over the last hour, up/down."""

    line_id: str
    last_frame_at: datetime
    last_frame_age_s: float
    frames_per_s: float
    frames_window: int
    flagged_window: int
    flagged_share: float | None
    is_up: bool
    unacknowledged_window: int


class Lines(BaseModel):
    """The tiles, with the windows they were counted over."""

    now: datetime
    down_after_s: float
    rate_window_s: float
    share_window_s: float
    lines: list[LineTile]


class TrendPoint(BaseModel):
    """Frames and flagged frames of one line and class captured in [t, t + bucket_s)."""

    t: datetime
    line_id: str
    product_class: str
    frames: int
    flagged: int


class Trends(BaseModel):
    """Trend buckets of the range (buckets without frames are absent)."""

    range: str
    since: datetime
    until: datetime
    bucket_s: int
    points: list[TrendPoint]


class DeadLetters(BaseModel):
    """The newest dead letters, newest first; ``available`` is false (and ``detail`` says why) when this
    server has no Kafka broker configured."""

    topic: str
    available: bool
    detail: str | None = None
    items: list[DeadLetter]


class Replayed(BaseModel):
    """Where a replayed frame went."""

    dead_letter: DeadLetter
    topic: str
    partition: int
    offset: int
    message: str


@router.get("/lines", response_model=Lines, summary="Per-line status tiles")
def lines(context: Annotated[ApiContext, Depends(get_context)]) -> dict[str, Any]:
    """Every line that stored a frame: newest capture, frames/s (last minute), flagged share (last hour),
    and up/down (down when the newest frame is older than ``line_down_after_s``)."""
    now = datetime.now(UTC)
    down_after_s = context.settings.line_down_after_s
    tiles = context.repository.line_status(now=now, rate_window_s=RATE_WINDOW_S, share_window_s=SHARE_WINDOW_S,
                                           down_after_s=down_after_s)
    return {"now": now, "down_after_s": down_after_s, "rate_window_s": RATE_WINDOW_S,
            "share_window_s": SHARE_WINDOW_S, "lines": [dataclasses.asdict(t) for t in tiles]}


@router.get("/trends", response_model=Trends, summary="Throughput and defect share over time")
def trends(
    context: Annotated[ApiContext, Depends(get_context)],
    range_: Annotated[Literal["hour", "shift"], Query(alias="range", description="last hour or last shift")] = "hour",
    line: Annotated[str | None, Query(pattern=TEXT_PATTERN, description="only this line")] = None,
) -> dict[str, Any]:
    """Frames and flagged frames per bucket, line and class (1-minute buckets for the hour; a shift is
    ``shift_hours`` in 96 buckets)."""
    until = datetime.now(UTC)
    if range_ == "hour":
        span_s, bucket_s = 3600.0, HOUR_BUCKET_S
    else:
        span_s = context.settings.shift_hours * 3600.0
        bucket_s = max(HOUR_BUCKET_S, int(span_s // SHIFT_BUCKETS))
    since = until - timedelta(seconds=span_s)
    points = context.repository.trend(since=since, until=until, bucket_s=bucket_s, line_id=line)
    return {"range": range_, "since": since, "until": until, "bucket_s": bucket_s,
            "points": [{"t": p.bucket_start, "line_id": p.line_id, "product_class": p.product_class,
                        "frames": p.frames, "flagged": p.flagged} for p in points]}


_NO_BROKER = ("no Kafka broker is configured for this server (LINESIGHT_KAFKA_BOOTSTRAP_SERVERS), "
              "so the dead-letter topic cannot be read")


def _servers(context: ApiContext) -> str:
    if not context.bootstrap_servers:
        raise ApiError(409, _NO_BROKER)
    return context.bootstrap_servers


@router.get("/dead-letters", response_model=DeadLetters, responses={503: {"description": "Kafka unreachable"}},
            summary="The newest dead letters (read from the dead-letter topic)")
def dead_letters(
    context: Annotated[ApiContext, Depends(get_context)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    reason: Annotated[str | None, Query(pattern=r"^[a-z_]{1,64}$", description="only this reason code")] = None,
    line: Annotated[str | None, Query(pattern=TEXT_PATTERN, description="only this line")] = None,
) -> dict[str, Any]:
    """Reason, detail, when and line of the newest ``limit`` dead letters, newest first (a bounded read
    of the topic's tail; nothing is stored in SQL)."""
    from connectors.dead_letter_reader import read_dead_letters
    from connectors.exceptions import ConnectorError

    topic = context.settings.dead_letter_topic
    if not context.bootstrap_servers:
        return {"topic": topic, "available": False, "detail": _NO_BROKER, "items": []}
    try:
        letters = read_dead_letters(context.bootstrap_servers, topic, limit=limit, timeout_s=DEAD_LETTER_TIMEOUT_S,
                                    reason=reason, line_id=line, security=context.settings.kafka_security)
    except ConnectorError as exc:
        raise ApiError(503, str(exc)) from None
    return {"topic": topic, "available": True, "items": [dataclasses.asdict(d) for d in letters]}


@router.post("/dead-letters/{partition}/{offset}/replay", response_model=Replayed,
             dependencies=[Depends(require_token)],
             responses={**AUTH_RESPONSES,
                        409: {"description": "The dead letter holds no frame (oversize), or no broker is configured"},
                        503: {"description": "Kafka unreachable"}},
             summary="Re-publish a dead-lettered frame to the frames topic")
def replay(
    partition: Annotated[int, Path(ge=0, le=2**31 - 1)],
    offset: Annotated[int, Path(ge=0, le=2**63 - 1)],
    context: Annotated[ApiContext, Depends(get_context)],
) -> dict[str, Any]:
    """For a frame dead-lettered by mistake (e.g. ``unknown_class`` before its bank existed): its original
    key, value and headers go back to the frames topic; the stream stores a frame_id once."""
    from connectors.dead_letter_reader import DeadLetterNotFound, NotReplayableError, replay_dead_letter
    from connectors.exceptions import ConnectorError

    settings = context.settings
    try:
        sent = replay_dead_letter(
            _servers(context), settings.dead_letter_topic, partition, offset, settings.frames_topic,
            max_request_size=settings.max_frame_bytes + 64 * 1024, timeout_s=DEAD_LETTER_TIMEOUT_S,
            security=settings.kafka_security,
        )
    except DeadLetterNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except NotReplayableError as exc:
        raise ApiError(409, str(exc)) from None
    except ConnectorError as exc:
        raise ApiError(503, str(exc)) from None
    letter = sent["dead_letter"]
    return {"dead_letter": dataclasses.asdict(letter), "topic": sent["topic"], "partition": sent["partition"],
            "offset": sent["offset"],
            "message": f"frame {letter.frame_id or '?'} re-published to {sent['topic']}[{sent['partition']}]"
                       f"@{sent['offset']}"}
