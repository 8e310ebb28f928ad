"""``/healthz`` (broker, database, stream; 200 or 503) and ``/metrics`` (Prometheus text)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from linesight.api.context import ApiContext, get_context
from linesight.api.schemas import Health

__all__ = ["router", "check_broker", "check_database", "check_stream"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])

BROKER_TIMEOUT_MS = 2000


def check_broker(bootstrap_servers: str | None, security: dict[str, Any] | None = None) -> dict[str, Any]:
    """A metadata request to the brokers (``security``: TLS/SASL options of ``connectors.kafka.security_config``):
    ``{"status": "ok"|"down"|"skipped", ...}``."""
    if not bootstrap_servers:
        return {"status": "skipped", "detail": "no Kafka broker configured for this server"}
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    try:
        client = KafkaConsumer(
            bootstrap_servers=bootstrap_servers, request_timeout_ms=BROKER_TIMEOUT_MS,
            bootstrap_timeout_ms=BROKER_TIMEOUT_MS, **(security or {}),
        )
    except (KafkaError, ValueError, OSError) as exc:
        return {"status": "down", "servers": bootstrap_servers, "detail": f"{type(exc).__name__}: {exc}"}
    try:
        topics = client.topics()
        return {"status": "ok", "servers": bootstrap_servers, "topics": len(topics)}
    except (KafkaError, OSError) as exc:
        return {"status": "down", "servers": bootstrap_servers, "detail": f"{type(exc).__name__}: {exc}"}
    finally:
        client.close()


def check_database(context: ApiContext) -> dict[str, Any]:
    """``Database.ping``: ``{"status": "ok"|"down", "url": <masked>}``."""
    try:
        repository = context.repository
        repository.database.ping()
        return {"status": "ok", "url": repository.database.url}
    except Exception as exc:  # any failure to reach it is "down", reported, never raised
        return {"status": "down", "detail": f"{type(exc).__name__}: {exc}"}


def check_stream(context: ApiContext) -> dict[str, Any]:
    """The stream monitor's view: down when it is expected but absent or no ingest loop runs."""
    snap = context.stream_snapshot()
    if snap is None:
        if context.expect_stream:
            return {"status": "down", "detail": "the stream monitor actor does not answer"}
        return {"status": "skipped", "detail": "no stream runs in this server (--no-stream)"}
    part = {
        "ingest_running": snap.get("ingest_running", 0),
        "frames_in": snap.get("frames_in", 0),
        "frames_stored": snap.get("frames_stored", 0),
        "updated_at": snap.get("updated_at"),
    }
    if not snap.get("ingest_running"):
        return {"status": "down", "detail": "no ingest loop is running", **part}
    faults = snap.get("faults_active") or {}
    if faults:  # an infrastructure fault: the stream holds back (no polling, no commit) and retries
        detail = "; ".join(f"{kind}: {why}" for kind, why in sorted(faults.items()))
        return {"status": "degraded", "detail": f"holding on a fault, retrying: {detail}", "faults": faults, **part}
    return {"status": "ok", **part}


def check_engine(engine: str, precision: str) -> dict[str, Any]:
    """The encoder engine and precision the settings resolve to on this CPU (what the scoring actors load)."""
    from model.engine import choose_engine

    choice = choose_engine(engine, precision)
    detail = f"{choice[0]} {choice[1]}: {choice[2]}"
    if choice[1] == "bf16":
        detail += " (checked against fp32 when the encoder loads; below the accuracy bar it runs fp32)"
    return {"status": "ok", "detail": detail}


@router.get("/healthz", response_model=Health, responses={503: {"model": Health, "description": "A part is down"}},
            summary="Health of the broker, the database and the stream")
def healthz(context: Annotated[ApiContext, Depends(get_context)]) -> JSONResponse:
    """200 when every part is ok (or not used by this server), else 503; each part says why."""
    parts = {
        "database": check_database(context),
        "broker": check_broker(context.bootstrap_servers, security=context.settings.kafka_security),
        "stream": check_stream(context),
        "engine": check_engine(context.settings.engine, context.settings.precision),
    }
    healthy = all(part["status"] in ("ok", "skipped") for part in parts.values())
    body = Health(status="ok" if healthy else "degraded", parts=parts).model_dump(mode="json")
    return JSONResponse(body, status_code=200 if healthy else 503)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
def metrics(request: Request) -> Response:
    """Stream counters, latency histogram, dead letters by reason, LLM verdict backlog, SQL counts."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
