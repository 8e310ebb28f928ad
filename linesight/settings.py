"""Infrastructure settings (broker, database, Ray, paths), read from ``LINESIGHT_*`` variables.

Every field has a default that runs on one machine with no services: no bootstrap servers means
linesight starts the embedded Tansu broker itself; the database is a SQLite file; Ray starts
locally. Production sets ``LINESIGHT_KAFKA_BOOTSTRAP_SERVERS``, ``LINESIGHT_DATABASE_URL`` and
``LINESIGHT_RAY_ADDRESS`` (see docker-compose.yml).

>>> Settings(max_batch_size=8).max_batch_size
8
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from linesight.errors import ConfigError

__all__ = ["Settings", "load_settings", "DEFAULT_DATA_DIR", "DATABASE_FILE"]

DEFAULT_DATA_DIR = Path("linesight-data")  # the data folder: SQLite file, banks, overlays, inspect outputs
DATABASE_FILE = "linesight.db"  # the SQLite file inside the data folder
CHECKPOINT_FOLDER = "checkpoint"  # `linesight train`'s default output inside the data folder
_TRAINED_LEARNER = "prompt_learner.safetensors"  # a checkpoint folder with it is picked up when checkpoint_dir is unset


class Settings(BaseSettings):
    """All knobs of a running linesight; environment variables are ``LINESIGHT_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="LINESIGHT_", extra="forbid", frozen=True)

    # --- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        None, description="host:port[,host:port]; empty = start the embedded Tansu broker"
    )
    frames_topic: str = Field("linesight.frames", description="topic the cameras publish frames to")
    alerts_topic: str = Field("linesight.alerts", description="topic alerts are published to")
    dead_letter_topic: str = Field(
        "linesight.dead-letter", description="topic for frames that cannot be inspected, with the reason"
    )
    consumer_group: str = Field("linesight-inspect", description="Kafka consumer group of the ingest actors")
    partition_assignment: Literal["static", "group"] = Field(
        "static",
        description="static: the stream's supervisor gives ingest loop i of n the frames partitions p with "
        "p % n == i (a restarted loop takes the same ones back; offsets are still committed to consumer_group); "
        "group: the Kafka group coordinator assigns and rebalances them",
    )
    frames_partitions: int = Field(4, ge=1, description="partitions created for the frames topic")
    max_frame_bytes: int = Field(
        1_048_576, ge=1024, description="largest encoded frame accepted; larger ones are dead-lettered"
    )
    session_timeout_ms: int = Field(6000, ge=1000, description="consumer session timeout (join takes ~half)")
    fetch_max_wait_ms: int = Field(
        10, ge=0, le=30_000,
        description="longest a frames fetch waits at the broker for data; the embedded Tansu broker holds every "
        "fetch this long, so kafka-python's 500 ms default added ~140 ms median to each frame (measured at 20 "
        "frames/s: latency p50 236 -> 37 ms with 10 ms, README); on Apache Kafka it only paces an idle line's polls",
    )

    # --- SQL -----------------------------------------------------------------------------------
    database_url: str = Field(
        "",
        description="SQLAlchemy URL (sqlite:/// or postgresql+psycopg://); empty = sqlite:///<data_dir>/linesight.db, "
        "so every command finds the database of the data folder",
    )

    # --- Ray -----------------------------------------------------------------------------------
    ray_address: str | None = Field(None, description="Ray cluster address; empty = start Ray locally")
    ray_num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray; empty = all cores")
    # 2 actors x 1 thread beat 1 x 2 threads on 2 cores (measured with `make bench`: an actor's
    # batch keeps going while the other waits for its next one, and single-threaded torch does
    # not stall when an I/O actor takes the core)
    inference_actors: int = Field(2, ge=1, description="number of inference actors")
    inference_cpus: float = Field(0.5, gt=0, description="Ray CPUs reserved per inference actor")
    torch_threads: int = Field(1, ge=1, description="torch threads per inference actor")

    # --- batching and backpressure -------------------------------------------------------------
    max_batch_size: int = Field(16, ge=1, le=256, description="frames per inference batch")
    batch_wait_timeout_s: float = Field(
        0.5, ge=0.0, le=10.0,
        description="while every inference actor is busy, longest wait to fill a batch (it goes at once when an "
                    "actor finishes); 0.5 s measured p99 0.73 s at 70 % load against 1.03 s with 0.05 s (README)",
    )
    max_inflight_batches: int = Field(3, ge=1, le=64, description="batches in flight per ingest actor")
    bank_poll_interval_s: float = Field(
        1.0, gt=0.0, description="how often the stream looks for a newly activated bank version"
    )

    # --- model ---------------------------------------------------------------------------------
    image_size_px: int = Field(224, ge=32, le=1024, description="side of the square model input")
    encoder: str = Field("efficientnet-lite0", description="encoder backend name")
    encoder_path: Path | None = Field(None, description="local folder of a transformers encoder (clip/dinov2)")
    bank_cache_size: int = Field(16, ge=1, description="bank versions kept in memory per inference actor (LRU)")
    zero_shot_classes: str = Field(
        "",
        description="comma-separated classes the stream scores with the trained decoder alone while they have no "
        "active bank (stored as bank version 0; a bank built later takes over at once); needs checkpoint_dir",
    )
    map_fusion: Literal["few_only", "mean", "max"] = Field(
        "few_only",
        description="few_only = the bank's map (measured best, README); mean/max = fused with the trained "
        "decoder's zero-shot map from checkpoint_dir, each in units of its own threshold",
    )

    # --- LLM: verdict sentences and dialogue (pipeline/stream/verdicts.py, pipeline/services/dialogue.py) -------
    # --- LLM verdicts and dialogue; the LLM never sits on the per-frame hot path.
    llm_verdicts: bool = Field(
        False, description="reword verdicts with the LLM in a low-priority actor, after rows and alerts are written"
    )
    llm_path: Path | None = Field(
        None, description="local causal LM folder (save_pretrained layout); empty = the packaged SmolLM2-135M"
    )
    checkpoint_dir: Path | None = Field(
        None,
        description="trained checkpoint folder (`linesight train`): prompt_learner.safetensors for LLM verdicts, "
        "decoder.safetensors for map_fusion and zero-shot inspect; empty = <data_dir>/checkpoint when `linesight "
        "train` wrote a prompt learner there, else a seeded fresh (untrained) prompt learner",
    )
    llm_torch_threads: int = Field(1, ge=1, description="torch threads of the verdict actor (keep inference fed)")
    verdict_queue_size: int = Field(
        64, ge=1, le=10_000, description="verdict jobs waiting at most; more are skipped (the template verdict stands)"
    )
    verdict_sample_normal: float = Field(
        0.05, ge=0.0, le=1.0, description="share of normal frames also sent for an LLM verdict (flagged: all)"
    )
    verdict_max_new_tokens: int = Field(
        48, ge=4, le=256, description="longest LLM verdict, in tokens (SmolLM2 echoes ~17 before the sentence)"
    )
    verdict_drain_s: float = Field(
        10.0, ge=0.0, description="on stop, wait this long for queued verdicts; the rest are skipped"
    )
    chat_max_question_chars: int = Field(
        2000, ge=1, le=10_000, description="longest operator question accepted (the HTTP API allows 2000)"
    )
    chat_max_new_tokens: int = Field(64, ge=4, le=512, description="longest dialogue answer, in tokens")
    chat_max_context_tokens: int = Field(
        1024, ge=128, description="dialogue context; the oldest later turns are dropped beyond it"
    )

    # --- paths and API -------------------------------------------------------------------------
    data_dir: Path = Field(
        DEFAULT_DATA_DIR,
        description="the data folder: the SQLite file (unless database_url says otherwise), banks, overlays, "
        "inspect outputs; `linesight demo` writes here too, so every command finds what the demo made",
    )
    api_token: SecretStr | None = Field(None, description="bearer token required by write endpoints")
    api_base_url: str | None = Field(None, description="public URL of the HTTP API, used for links in alerts")
    alert_webhook_url: str | None = Field(
        None, description="also POST every alert as JSON here (retries, bounded queue); empty = no webhook"
    )
    alert_webhook_token: SecretStr | None = Field(None, description="bearer token sent to the alert webhook")
    alert_webhook_queue_size: int = Field(
        1000, ge=1, le=100_000, description="alerts waiting for the webhook at most; more are dropped and counted"
    )
    write_overlays: bool = Field(False, description="write an overlay PNG of every flagged frame to overlays_dir")

    # --- operations: metrics endpoint of `run`, data retention, frame storage --------
    metrics_port: int | None = Field(
        None, ge=1, le=65535,
        description="`linesight run` serves Prometheus /metrics on this port (9108 is customary); empty = off "
        "(`linesight serve` always serves /metrics on its HTTP port)",
    )
    retention_days: float | None = Field(
        None, gt=0,
        description="`linesight purge` with no --older-than deletes inspections captured longer ago than this; "
        "empty = keep everything",
    )
    store_frames: Literal["all", "flagged"] = Field(
        "all",
        description="which frames keep their image in SQL: all, or only flagged ones (the others keep score, "
        "anomaly map and mask)",
    )

    @model_validator(mode="before")
    @classmethod
    def _checkpoint_in_data_dir(cls, data: object) -> object:
        """An empty ``checkpoint_dir`` becomes ``<data_dir>/checkpoint`` when `linesight train` wrote a prompt
        learner there (its default output), so the demo and the stream use what was trained."""
        if isinstance(data, dict) and not str(data.get("checkpoint_dir") or "").strip():
            folder = Path(data.get("data_dir") or DEFAULT_DATA_DIR) / CHECKPOINT_FOLDER
            if (folder / _TRAINED_LEARNER).is_file():
                data = {**data, "checkpoint_dir": folder}
        return data

    @model_validator(mode="before")
    @classmethod
    def _database_in_data_dir(cls, data: object) -> object:
        """An empty ``database_url`` becomes the SQLite file of ``data_dir`` (one data folder)."""
        if isinstance(data, dict) and not str(data.get("database_url") or "").strip():
            data = dict(data)
            data["database_url"] = f"sqlite:///{(Path(data.get('data_dir') or DEFAULT_DATA_DIR) / DATABASE_FILE).as_posix()}"
        return data

    # --- input guards (hostile input is refused before any work) ------------------------
    # 20 MP: the largest common machine-vision sensors (5472x3648 = 19.96 MP, e.g. Sony IMX183) fit;
    # an RGB decode of 20 MP is 60 MB, so a batch of them stays bounded. Bigger is a misconfigured
    # camera or a decompression bomb (a 48 KB PNG can declare 20000x20000 = 1.2 GB decoded).
    max_frame_pixels: int = Field(
        20_000_000, ge=256, le=67_108_864,
        description="largest width x height accepted, read from the PNG/JPEG header before decoding; larger "
        "frames are dead-lettered as too_many_pixels (the API answers 413)",
    )
    max_capture_age_s: float = Field(
        7 * 24 * 3600.0, gt=0,
        description="frames captured longer ago than this (by the ingest clock) are dead-lettered as invalid_header",
    )
    max_capture_skew_s: float = Field(
        300.0, ge=0,
        description="frames whose captured_at is further ahead of the ingest clock are dead-lettered as invalid_header",
    )
    # The largest real build: 16 shots x 4 rotations x (448 px / 8)^2 = 56x56 patches = 200,704 rows in
    # the first EfficientNet-Lite0 stage (measured: stage shapes at 448 px are 56/28/28/14 a side);
    # 2^18 leaves 30 % headroom. Rows of a build: shots x 4 x (image_size_px / 8)^2; raise it for 1024 px.
    max_bank_rows: int = Field(
        262_144, ge=1,
        description="most feature rows a bank file may hold in any stage; a bigger file is refused on load "
        "before its tensors are read (the largest 16-shot build at 448 px with rotations has 200,704)",
    )
    api_inspect_concurrency: int = Field(
        2, ge=1, le=1024, description="POST /api/inspect requests scored at once per API replica; more get 429"
    )
    api_inspect_requires_token: bool = Field(
        False, description="POST /api/inspect needs the bearer token too (default: open, rate-limited)"
    )

    # --- faults and supervision (pipeline/stream/ingest.py, pipeline/supervisor.py) --------------------
    fault_retry_initial_s: float = Field(
        0.2, gt=0, le=60, description="first retry delay after an infrastructure fault (database, broker, actor)"
    )
    fault_retry_max_s: float = Field(5.0, gt=0, le=300, description="longest retry delay after repeated faults")
    supervise_interval_s: float = Field(
        1.0, gt=0, le=60, description="how often dead inference, sink, verdict and ingest actors are looked for"
    )

    # --- line screen (dashboard tiles and trends) ------------------------------------------------
    line_down_after_s: float = Field(
        30.0, gt=0.0, description="the line screen shows a line as down when its newest frame is older than this"
    )
    shift_hours: float = Field(8.0, gt=0.0, le=24.0, description="length of the line screen's 'shift' trend range")

    # --- deployment: Kafka security and topics, device, actor placement ------------
    # Production Kafka: TLS and SASL for every client (connectors.kafka.security_config validates them).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how every Kafka client connects; anything but PLAINTEXT needs kafka_bootstrap_servers"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism for SASL_PLAINTEXT/SASL_SSL (needs kafka_sasl_username and _password)"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password")
    kafka_ssl_cafile: Path | None = Field(None, description="PEM file of the CA that signed the brokers' certificates")
    kafka_ssl_certfile: Path | None = Field(None, description="PEM client certificate (mutual TLS)")
    kafka_ssl_keyfile: Path | None = Field(None, description="PEM client private key (mutual TLS; needs the certfile)")
    kafka_ssl_password: SecretStr | None = Field(None, description="password of the client private key")
    kafka_ssl_check_hostname: bool = Field(True, description="check that the broker certificate matches its host name")
    kafka_replication_factor: int = Field(
        1, ge=1, le=32, description="replication factor of the topics linesight creates (3 on a production cluster)"
    )
    frames_retention_ms: int | None = Field(
        None, ge=60_000, description="retention of the frames topic set at creation; empty = the broker's default"
    )
    alerts_retention_ms: int | None = Field(
        None, ge=60_000, description="retention of the alerts topic set at creation; empty = the broker's default"
    )
    dead_letter_retention_ms: int | None = Field(
        None, ge=60_000, description="retention of the dead-letter topic set at creation; empty = the broker's default"
    )
    # Device and placement of the inference actors (pipeline/stream/placement.py).
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="inference device: auto = cuda when torch sees a GPU, else cpu; cuda without one = error"
    )
    inference_gpus: float = Field(
        0.5, gt=0, le=8, description="GPUs reserved per inference actor on cuda (0.5 = two actors share a GPU)"
    )
    placement_strategy: Literal["SPREAD", "PACK", "STRICT_SPREAD", "DEFAULT"] = Field(
        "SPREAD", description="how inference actors are spread over Ray nodes (STRICT_SPREAD = one per node)"
    )

    # --- inference engine (model/engine/, docs/engine.md) ----------------------------
    engine: Literal["auto", "torch", "onnxruntime", "openvino"] = Field(
        "auto",
        description="runtime of the frozen encoder; auto = openvino, else onnxruntime, else torch (falls back on failure)",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="encoder precision; auto = bf16 on openvino where the CPU has amx/avx512_bf16 and bf16 passes "
        "the accuracy check, else fp32",
    )

    # --- inspection at the camera's resolution (issue 9: model/tiling.py, model/matching.py) ----------
    tile_px: str = Field(
        "auto",
        description="how new banks inspect frames larger than the model input: auto = tiles of image_size_px frame "
        "pixels when the shots are 1.5x larger (else the whole frame, squeezed), none = always the whole frame, "
        "or a number of frame pixels per tile; the bank keeps its tiling, so the stream follows each class's bank",
    )
    bank_stages: str = Field(
        "", description="comma-separated encoder stages new banks match (0-3 for efficientnet-lite0); empty = all"
    )
    # 500 frames: the refined threshold (median + 4 robust sigmas) then varies by 1.4-1.7 % from one window
    # to the next (3 % defects in it), against 3.2 % at 100 and 4.5 % at 50; 1000 gains little (1.1-1.3 %)
    # for twice the wait (measured: python -m pipeline.services.bench_self_calibration, README "Detection on real photographs").
    self_calibrate_after_frames: int = Field(
        500, ge=0,
        description="the stream refines a bank version's threshold from its own scores once the version has "
        "scored this many frames of its class (a new, reversible version; pipeline/services/self_calibration.py); 0 = off",
    )

    # --- cold start (issue 15: `linesight bank auto`, pipeline/services/coldstart.py, model/mutual.py) -------
    coldstart_frames: int = Field(
        64, ge=4, description="`bank auto`: the first N frames of a class scored against each other"
    )
    coldstart_shots: int = Field(
        4, ge=1, description="`bank auto`: the K most normal of those frames become the bank's references"
    )
    coldstart_window: int = Field(
        16, ge=2, description="mutual scoring compares each frame with at most this many - 1 other frames (cost bound)"
    )
    coldstart_classes: str = Field(
        "",
        description="comma-separated classes the stream scores from their first frames by mutual scoring while they "
        "have no bank (stored as bank version 0, score_source 'cold-start'); after coldstart_frames frames the "
        "coldstart_shots most normal become bank v1, activated by itself (pipeline/services/coldstart_stream.py)",
    )
    coldstart_min_frames: int = Field(
        8, ge=2, description="cold start: no decision (threshold 1) before this many frames of the class were scored"
    )
    coldstart_check_interval_s: float = Field(
        2.0, gt=0.0, description="cold start: how often the stream's driver looks for classes ready to promote"
    )

    # --- LLM verdicts that keep up (issue 10: pipeline/stream/verdicts.py, batched generation) ----------
    verdict_batch_size: int = Field(
        8, ge=1, le=64, description="verdict jobs answered together in one batched LLM generation"
    )
    # Off by default, measured in `make demo` on 2 cores (README "LLM verdicts"): with a trained prompt learner's
    # tokens every verdict is generated (27 of 133 jobs answered, 106 skipped, 19 frames/s); without them the
    # answer depends on the facts alone and is reused (125 of 125, 23 frames/s, 99 % agreeing).
    verdict_image_tokens: bool = Field(
        False,
        description="E_img and E_prompt (the prompt learner reading the anomaly map) in the stream's verdict prompt; "
        "off: the prompt is the detector's facts alone and its answer is reused. `eval --llm`, chat and "
        "`inspect --ask` use the prompt learner either way",
    )

    # --- grounded dialogue (issue 12: pipeline/services/dialogue.py, model/grounding.py) ----------------
    chat_repetition_penalty: float = Field(
        1.3, ge=1.0, le=3.0, description="dialogue generation: penalty on tokens already in the sequence (1 = none)"
    )
    chat_no_repeat_ngram_size: int = Field(
        3, ge=0, le=16, description="dialogue generation: never repeat a word-piece n-gram of this size (0 = off)"
    )
    chat_history_window: int = Field(
        20, ge=1, le=1000, description="the line's recent history in dialogue facts: the last N inspections"
    )

    @field_validator("kafka_bootstrap_servers", "ray_address", "alert_webhook_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("alert_webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("zero_shot_classes", "coldstart_classes")
    @classmethod
    def _class_names(cls, value: str) -> str:
        from model.names import check_class_name

        return ",".join(check_class_name(n.strip()) for n in value.split(",") if n.strip())

    @field_validator("tile_px")
    @classmethod
    def _tile_px(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("auto", "none") or (value.isdigit() and int(value) >= 32):
            return value
        raise ValueError("must be 'auto', 'none' or a whole number of pixels >= 32")

    @field_validator("bank_stages")
    @classmethod
    def _bank_stages(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
            raise ValueError("must be distinct stage numbers separated by commas, e.g. '1' or '1,2'")
        return ",".join(parts)

    @field_validator("self_calibrate_after_frames")
    @classmethod
    def _self_calibrate_after_frames(cls, value: int) -> int:
        from model.calibration import STREAM_MIN_FRAMES

        if 0 < value < STREAM_MIN_FRAMES:
            raise ValueError(f"must be 0 (off) or at least {STREAM_MIN_FRAMES} frames (robust statistics need them)")
        return value

    @property
    def tile_setting(self) -> int | str | None:
        """``tile_px`` as build_bank takes it: None, "auto" or a number of pixels."""
        return None if self.tile_px == "none" else ("auto" if self.tile_px == "auto" else int(self.tile_px))

    @property
    def bank_stage_indices(self) -> tuple[int, ...] | None:
        """``bank_stages`` as a tuple, None for all stages."""
        return tuple(int(p) for p in self.bank_stages.split(",")) if self.bank_stages else None

    @property
    def zero_shot_class_names(self) -> tuple[str, ...]:
        """``zero_shot_classes`` as a tuple of names."""
        return tuple(n for n in self.zero_shot_classes.split(",") if n)

    @property
    def coldstart_class_names(self) -> tuple[str, ...]:
        """``coldstart_classes`` as a tuple of names."""
        return tuple(n for n in self.coldstart_classes.split(",") if n)

    @model_validator(mode="after")
    def _cold_start_is_consistent(self) -> Settings:
        both = sorted(set(self.coldstart_class_names) & set(self.zero_shot_class_names))
        if both:
            raise ValueError(f"class {both[0]!r} is in both zero_shot_classes and coldstart_classes; choose one")
        if self.coldstart_frames < 2 * self.coldstart_shots:
            raise ValueError(f"coldstart_frames={self.coldstart_frames} must be at least 2 * coldstart_shots="
                             f"{2 * self.coldstart_shots} (the references are drawn from the more normal half)")
        if self.coldstart_min_frames > self.coldstart_frames:
            raise ValueError(f"coldstart_min_frames={self.coldstart_min_frames} must not exceed "
                             f"coldstart_frames={self.coldstart_frames}")
        return self

    @model_validator(mode="after")
    def _fusion_needs_checkpoint(self) -> Settings:
        if self.zero_shot_classes and self.checkpoint_dir is None:
            raise ValueError(
                f"zero_shot_classes={self.zero_shot_classes!r} needs checkpoint_dir (a `linesight train` folder "
                "with decoder.safetensors); set LINESIGHT_CHECKPOINT_DIR"
            )
        if self.map_fusion != "few_only" and self.checkpoint_dir is None:
            raise ValueError(
                f"map_fusion={self.map_fusion!r} needs checkpoint_dir (a `linesight train` folder with "
                "decoder.safetensors); set LINESIGHT_CHECKPOINT_DIR or use map_fusion='few_only'"
            )
        return self

    @field_validator(
        "kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password", "kafka_ssl_cafile",
        "kafka_ssl_certfile", "kafka_ssl_keyfile", "kafka_ssl_password", "frames_retention_ms",
        "alerts_retention_ms", "dead_letter_retention_ms", mode="before",
    )
    @classmethod
    def _deployment_empty_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _kafka_security_consistent(self) -> Settings:
        from connectors.exceptions import ConnectorError

        if self.kafka_security_protocol != "PLAINTEXT" and not self.kafka_bootstrap_servers:
            raise ValueError(
                f"kafka_security_protocol={self.kafka_security_protocol!r} needs kafka_bootstrap_servers: the "
                "embedded Tansu broker speaks PLAINTEXT only; set LINESIGHT_KAFKA_BOOTSTRAP_SERVERS"
            )
        try:
            self.kafka_security  # noqa: B018 - validates the combination and the files
        except ConnectorError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def kafka_security(self) -> dict[str, object]:
        """kafka-python TLS/SASL keyword arguments for every client (``connectors.kafka.security_config``).

        Holds the SASL and key passwords in clear: pass it to clients, never log it.

        >>> Settings().kafka_security
        {'security_protocol': 'PLAINTEXT'}
        """
        from connectors.kafka import security_config

        def secret(value: SecretStr | None) -> str | None:
            return value.get_secret_value() if value is not None else None

        return security_config(
            self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=secret(self.kafka_sasl_password),
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
            ssl_password=secret(self.kafka_ssl_password),
            ssl_check_hostname=self.kafka_ssl_check_hostname,
        )

    @property
    def topic_configs(self) -> dict[str, dict[str, int]]:
        """Topic configs set when linesight creates its topics (retention), by topic name."""
        retention = {
            self.frames_topic: self.frames_retention_ms,
            self.alerts_topic: self.alerts_retention_ms,
            self.dead_letter_topic: self.dead_letter_retention_ms,
        }
        return {topic: {"retention.ms": ms} for topic, ms in retention.items() if ms is not None}

    @property
    def banks_dir(self) -> Path:
        """Folder holding ``<class>/v<version>.safetensors`` bank files."""
        return self.data_dir / "banks"

    @property
    def overlays_dir(self) -> Path:
        """Folder where overlays of flagged frames are written."""
        return self.data_dir / "overlays"


def _shown(err: object) -> str:
    """The bad value of a field error, masked when the field is a secret."""
    name = str(err["loc"][0])  # type: ignore[index]
    field = Settings.model_fields.get(name)
    if field is not None and "SecretStr" in str(field.annotation):
        return "'**********'"
    return repr(err.get("input"))  # type: ignore[attr-defined]


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment plus ``overrides``; a bad value raises :class:`ConfigError`.

    >>> load_settings(max_batch_size=4).max_batch_size
    4
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        # a whole-model error's input is every setting, secrets included: name the field values only
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}={_shown(err)}: {err['msg']}" if err["loc"] else err["msg"]
            for err in exc.errors()
        )
        raise ConfigError(f"invalid setting: {problems}") from None
