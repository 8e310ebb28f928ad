"""Training checkpoints: one FOLDER holding the trained decoder, prompt learner and optimizer state.

Layout (never pickle; tensors travel as safetensors)::

    <dir>/decoder.safetensors          TextAlignedDecoder (model.decoder.save_decoder format)
    <dir>/prompt_learner.safetensors   PromptLearner incl. E_img (absent when trained with --no-llm)
    <dir>/trainer_state.safetensors    Adam state as tensors ``state/<param index>/<key>``, ``step``,
                                       ``history`` (N, 5): step, total, focal, dice, answer per step
    <dir>/config.json                  encoder, image size, text embedder, LLM, classes, epoch/step,
                                       losses, seed, train config (see :data:`REQUIRED_KEYS`)
    <dir>/loss_curve.png               the losses per step (written by the trainer, optional)

``decoder.safetensors`` is also what ``linesight eval --decoder FILE`` reads. A folder is replaced
as a whole (written next to it, then swapped in), so a reader never sees half a checkpoint.

>>> ckpt = load_checkpoint("linesight-data/checkpoint")  # doctest: +SKIP
>>> ckpt.step, ckpt.config["classes"]  # doctest: +SKIP
(40, ['brick', 'washer'])
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.decoder import TextAlignedDecoder, load_decoder, save_decoder
from model.exceptions import ModelError
from model.prompt_learner import PromptLearner, load_prompt_learner, save_prompt_learner
from training.exceptions import TrainingError

__all__ = [
    "CONFIG_FILE",
    "DECODER_FILE",
    "HISTORY_COLUMNS",
    "LOSS_CURVE_FILE",
    "FORMAT_VERSION",
    "PROMPT_LEARNER_FILE",
    "REQUIRED_KEYS",
    "STATE_FILE",
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "write_loss_curve",
]

DECODER_FILE = "decoder.safetensors"
PROMPT_LEARNER_FILE = "prompt_learner.safetensors"
STATE_FILE = "trainer_state.safetensors"
CONFIG_FILE = "config.json"
LOSS_CURVE_FILE = "loss_curve.png"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "encoder", "image_size_px", "text_embedder", "llm", "classes", "epoch",
                 "step", "losses", "seed")
_STATE_KIND = "linesight.trainer_state"
HISTORY_COLUMNS = ("step", "total", "focal", "dice", "answer")


class CheckpointError(TrainingError):
    """A checkpoint folder is missing, incomplete or does not fit the encoder (the message names the file)."""


@dataclass
class Checkpoint:
    """A loaded checkpoint folder."""

    path: Path
    config: dict[str, Any]  # config.json
    decoder: TextAlignedDecoder
    prompt_learner: PromptLearner | None  # None when trained without the LLM
    step: int  # optimizer steps done
    optimizer_state: dict[str, Any] | None = None  # torch ``Optimizer.state_dict()`` form; None if not loaded
    history: torch.Tensor = field(default_factory=lambda: torch.zeros(0, len(HISTORY_COLUMNS)))  # (N, 5)

    @property
    def epoch(self) -> float:
        """Epochs done (fractional when stopped mid-epoch by ``max_steps``)."""
        return float(self.config["epoch"])


def save_checkpoint(
    directory: Path | str,
    *,
    decoder: TextAlignedDecoder,
    prompt_learner: PromptLearner | None,
    optimizer: torch.optim.Optimizer,
    step: int,
    config: Mapping[str, Any],
    history: torch.Tensor | None = None,
) -> Path:
    """Write the checkpoint folder ``directory`` (replacing an older one there); return its path.

    ``config`` must hold :data:`REQUIRED_KEYS` (``format_version`` is added); ``step`` overrides its step.

    >>> save_checkpoint("out/ckpt", decoder=dec, prompt_learner=pl, optimizer=opt, step=10,
    ...                 config=cfg)  # doctest: +SKIP
    PosixPath('out/ckpt')
    """
    from safetensors.torch import save_file

    target = Path(directory)
    content = {**dict(config), "format_version": FORMAT_VERSION, "step": int(step)}
    missing = [key for key in REQUIRED_KEYS if key not in content]
    if missing:
        raise CheckpointError(f"checkpoint config for {str(target)!r} lacks {missing}")
    if target.is_dir() and any(target.iterdir()) and not (target / CONFIG_FILE).is_file():
        raise CheckpointError(f"refusing to overwrite {str(target)!r}: it is not empty and holds no checkpoint")
    staging = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_decoder(decoder, staging / DECODER_FILE)
    if prompt_learner is not None:
        save_prompt_learner(prompt_learner, staging / PROMPT_LEARNER_FILE)
    tensors, meta = _optimizer_tensors(optimizer)
    tensors["step"] = torch.tensor(int(step), dtype=torch.int64)
    rows = history if history is not None else torch.zeros(0, len(HISTORY_COLUMNS))
    tensors["history"] = rows.detach().to(torch.float64).reshape(-1, len(HISTORY_COLUMNS)).contiguous()
    save_file(tensors, str(staging / STATE_FILE), metadata={"kind": _STATE_KIND, **meta})
    (staging / CONFIG_FILE).write_text(json.dumps(content, indent=2) + "\n")
    _swap_in(staging, target)
    return target


def load_checkpoint(
    directory: Path | str, encoder: object | None = None, *, with_trainer_state: bool = True
) -> Checkpoint:
    """Load a checkpoint folder; with ``encoder`` check that it was trained for that encoder.

    ``with_trainer_state=False`` skips the optimizer state (inference needs only the weights).
    Errors (:class:`CheckpointError`) name the missing or bad file and what is wrong.

    >>> load_checkpoint("out/ckpt", build_encoder("efficientnet-lite0")).decoder.text_dim  # doctest: +SKIP
    384
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {str(folder)!r} does not exist")
    config = _read_config(folder / CONFIG_FILE)
    try:
        decoder = load_decoder(_require(folder / DECODER_FILE))
        learner = None
        if config["llm"] is not None:
            learner = load_prompt_learner(_require(folder / PROMPT_LEARNER_FILE, "(config.json names an LLM)"))
    except ModelError as exc:
        raise CheckpointError(f"bad checkpoint file: {exc}") from exc
    if encoder is not None:
        _check_encoder(folder, config, decoder, encoder)
    checkpoint = Checkpoint(folder, config, decoder, learner, step=int(config["step"]))
    if with_trainer_state:
        checkpoint.optimizer_state, checkpoint.history, checkpoint.step = _read_state(folder / STATE_FILE)
    return checkpoint


def write_loss_curve(history: torch.Tensor, path: Path | str, title: str = "training losses") -> Path:
    """Plot the per-step losses (``history`` (N, 5) as in the state file) to a PNG; return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = history.detach().double().cpu().numpy().reshape(-1, len(HISTORY_COLUMNS))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for column, name in enumerate(HISTORY_COLUMNS[1:], start=1):
        values = rows[:, column]
        if rows.shape[0] and (name == "total" or values.any()):
            ax.plot(rows[:, 0], values, label=name, linewidth=1.6 if name == "total" else 1.0)
    ax.set(xlabel="optimizer step", ylabel="loss (focal, dice: summed over stages)", title=title)
    if rows.shape[0] and (rows[:, 1:] > 0).all():
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if rows.shape[0]:
        ax.legend()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, bbox_inches="tight")
    plt.close(fig)
    return target


# --- internals -------------------------------------------------------------------------------------


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Optimizer state as flat tensors ``state/<index>/<key>`` plus JSON metadata for the param groups."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, float]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state/{index}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": json.dumps(groups), "scalars": json.dumps(scalars)}


def _read_state(path: Path) -> tuple[dict[str, Any], torch.Tensor, int]:
    from safetensors import SafetensorError, safe_open

    _require(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        if meta.get("kind") != _STATE_KIND:
            raise CheckpointError(f"{str(path)!r} holds {meta.get('kind')!r}, expected {_STATE_KIND!r}")
        groups = json.loads(meta["param_groups"])
        scalars = json.loads(meta.get("scalars", "{}"))
        step, history = int(tensors.pop("step")), tensors.pop("history")
    except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as exc:
        raise CheckpointError(f"{str(path)!r} is not a readable trainer state: {exc!r}") from exc
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        _, index, key = name.split("/", 2)
        state.setdefault(int(index), {})[key] = tensor
    for index, values in scalars.items():
        state.setdefault(int(index), {}).update(values)
    for group in groups:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}, history, step


def _read_config(path: Path) -> dict[str, Any]:
    _require(path)
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{str(path)!r} is not readable JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise CheckpointError(f"{str(path)!r} must hold a JSON object, got {type(config).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in config]
    if missing:
        raise CheckpointError(f"{str(path)!r} lacks the key(s) {missing}")
    if config["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has format_version {config['format_version']!r}; this linesight reads {FORMAT_VERSION}"
        )
    return config


def _require(path: Path, why: str = "") -> Path:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {str(path)!r} is missing {why}".rstrip())
    return path


def _check_encoder(folder: Path, config: Mapping[str, Any], decoder: TextAlignedDecoder, encoder: object) -> None:
    name = getattr(encoder, "name", None)
    channels = tuple(getattr(encoder, "stage_channels", ()))
    size_px = getattr(encoder, "image_size_px", None)
    trained = config["encoder"]
    if name != trained or channels != tuple(decoder.stage_channels) or size_px != decoder.image_size_px:
        raise CheckpointError(
            f"checkpoint {str(folder)!r} was trained for encoder {trained!r} (stage channels "
            f"{tuple(decoder.stage_channels)}, {decoder.image_size_px} px), but got {name!r} "
            f"({channels}, {size_px} px)"
        )


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging``: the old folder is moved aside first, then removed."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
