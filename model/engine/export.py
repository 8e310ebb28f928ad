"""Export an :class:`~model.encoders.base.ImageEncoder` to ONNX, cached per encoder, stages, size and weights.

The graph maps normalised pixels ``pixels`` (B, 3, S, S) to ``stage0`` .. ``stage{n-1}`` (B, C_i, H_i, W_i)
and ``global`` (B, C_global), with a dynamic batch axis. Each cache entry is a folder
``<cache_dir>/<name>-<S>px-<stages>-<weights hash>/model.onnx`` (a folder, so that the external
weight files of a model over 2 GB stay with it); it is written into a temporary folder and renamed
into place, so a reader never sees half a file and two processes exporting at once both end with a
complete entry. Changed weights give another hash, hence a fresh export; of the entries of the same
encoder, stages and size only the ``KEEP_VERSIONS`` newest are kept (two deployments with different
weights sharing a folder do not evict each other).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from model.encoders.base import ImageEncoder
from model.engine.exceptions import ExportError

__all__ = ["KEEP_VERSIONS", "OPSET_VERSION", "cache_key", "export_onnx", "output_names", "weights_hash"]

OPSET_VERSION = 17
INPUT_NAME = "pixels"  # the ONNX input name
_MODEL_FILE = "model.onnx"
KEEP_VERSIONS = 2  # entries kept per encoder, stages and size (the newest by write time)
_log = logging.getLogger(__name__)


def output_names(encoder: ImageEncoder) -> list[str]:
    """ONNX output names: one per stage, then the global vector."""
    return [f"stage{i}" for i in range(len(encoder.stage_channels))] + ["global"]


def weights_hash(encoder: nn.Module) -> str:
    """SHA-256 (hex, 16 chars) over every parameter and buffer: names, dtypes, shapes and bytes.

    Buffers that are not in the ``state_dict`` (non-persistent ones) are included too: the
    exported graph bakes them in as constants.
    """
    digest = hashlib.sha256()
    tensors = dict(encoder.named_parameters())
    tensors.update(encoder.named_buffers())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous().reshape(-1)  # 0-dim tensors cannot be viewed as bytes
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensors[name].shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def _stage_tag(encoder: ImageEncoder) -> str:
    blocks = getattr(encoder, "stage_blocks", None)
    tag = "b" + "-".join(str(int(b)) for b in blocks) if blocks is not None else ""
    return tag + "c" + "-".join(str(int(c)) for c in encoder.stage_channels)


def cache_key(encoder: ImageEncoder) -> str:
    """Folder name of ``encoder``'s cache entry: name, input size, stage set and weights hash.

    >>> cache_key(EfficientNetLiteEncoder(pretrained=False))  # doctest: +SKIP
    'efficientnet-lite0-224px-b4-7-10-14c40-80-112-192-3f0c...'
    """
    safe_name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in encoder.name)
    return f"{safe_name}-{int(encoder.image_size_px)}px-{_stage_tag(encoder)}-{weights_hash(encoder)}"


class _Flat(nn.Module):
    """The encoder with a flat tuple output (what the ONNX exporter needs)."""

    def __init__(self, encoder: ImageEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.encoder(pixels)
        return (*out.patch_features, out.global_vector)


def export_onnx(encoder: ImageEncoder, cache_dir: Path) -> Path:
    """Path of ``encoder``'s ONNX file in ``cache_dir``, exporting it first when it is not cached.

    Raises :class:`ExportError` naming the encoder and the folder when the export fails.
    """
    cache_dir = Path(cache_dir)
    key = cache_key(encoder)
    entry = cache_dir / key
    model_file = entry / _MODEL_FILE
    if model_file.is_file():
        return model_file
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=cache_dir))
    except OSError as exc:
        raise ExportError(f"cannot write the engine cache folder {cache_dir}: {exc}") from exc
    try:
        _export(encoder, staging / _MODEL_FILE)
        try:
            os.rename(staging, entry)  # atomic; fails if another process got there first
        except OSError:
            if not model_file.is_file():
                raise
    except ExportError:
        raise
    except Exception as exc:  # the exporter raises many types; all mean "this encoder did not export"
        raise ExportError(f"exporting encoder {encoder.name!r} to ONNX in {entry} failed: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_stale(cache_dir, key)
    _log.info("exported encoder %s to %s", encoder.name, model_file)
    return model_file


def _export(encoder: ImageEncoder, path: Path) -> None:
    was_training = encoder.training
    encoder.eval()
    size = int(encoder.image_size_px)
    example = torch.zeros(2, 3, size, size)
    names = output_names(encoder)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shapes fixed by image_size_px
            torch.onnx.export(
                _Flat(encoder),
                (example,),
                str(path),
                dynamo=False,
                opset_version=OPSET_VERSION,
                input_names=[INPUT_NAME],
                output_names=names,
                dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *names]},
                do_constant_folding=True,
            )
    finally:
        encoder.train(was_training)
    if not path.is_file():
        raise ExportError(f"exporting encoder {encoder.name!r} wrote no file at {path}")


def _remove_stale(cache_dir: Path, key: str) -> None:
    """Remove all but the ``KEEP_VERSIONS`` newest entries of the same encoder, size and stages."""
    prefix = key.rsplit("-", 1)[0] + "-"
    siblings = []
    for other in cache_dir.iterdir():
        if other.name != key and other.name.startswith(prefix) and (other / _MODEL_FILE).is_file():
            siblings.append(((other / _MODEL_FILE).stat().st_mtime, other))
    for _, other in sorted(siblings, reverse=True)[KEEP_VERSIONS - 1 :]:
        shutil.rmtree(other, ignore_errors=True)
        _log.info("removed stale engine cache entry %s", other)
