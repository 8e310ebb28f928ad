"""Export an :class:`~model.encoders.base.ImageEncoder` to ONNX, cached per encoder, stages, size and weights.

The graph maps normalised pixels ``pixels`` (B, 3, S, S) to ``stage0`` .. ``stage{n-1}`` (B, C_i, H_i, W_i)
and ``global`` (B, C_global), with a dynamic batch axis. Each cache entry is a folder
``<cache_dir>/<name>-<S>px-<stages>-<weights hash>/model.onnx`` (a folder, so that the external
weight files of a model over 2 GB stay with it); it is written into a temporary folder and renamed
into place, so a reader never sees half a file and two processes exporting at once both end with a
complete entry. Changed weights give another hash, hence a fresh export; of the entries of the same
encoder, stages and size only the ``KEEP_VERSIONS`` newest are kept (two deployments with different
weights sharing a folder do not evict each other).

``export_split_onnx`` writes an encoder's :meth:`~model.encoders.base.ImageEncoder.precision_split`
as two graphs in one entry (``head.onnx``: ``pixels`` -> ``middle``; ``body.onnx``: ``middle`` ->
the outputs), for engines that run the head in fp32 and the body in bf16.
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

__all__ = [
    "KEEP_VERSIONS", "OPSET_VERSION", "cache_key", "export_onnx", "export_split_onnx", "output_names", "weights_hash",
]

OPSET_VERSION = 17
INPUT_NAME = "pixels"  # the ONNX input name
MIDDLE_NAME = "middle"  # the head's output and the body's input of a split export
_MODEL_FILE = "model.onnx"
_SPLIT_FILES = ("head.onnx", "body.onnx")
_SPLIT_TAG = "split"
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


def cache_key(encoder: ImageEncoder, variant: str = "") -> str:
    """Folder name of ``encoder``'s cache entry: name, input size, stage set, variant and weights hash.

    >>> cache_key(EfficientNetLiteEncoder(pretrained=False))  # doctest: +SKIP
    'efficientnet-lite0-224px-b4-7-10-14c40-80-112-192-3f0c...'
    """
    safe_name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in encoder.name)
    tag = _stage_tag(encoder) + (f"-{variant}" if variant else "")
    return f"{safe_name}-{int(encoder.image_size_px)}px-{tag}-{weights_hash(encoder)}"


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
    size = int(encoder.image_size_px)

    def write(folder: Path) -> None:
        _export(encoder, _Flat(encoder), torch.zeros(2, 3, size, size), folder / _MODEL_FILE, INPUT_NAME,
                output_names(encoder))

    return _cached(encoder, Path(cache_dir), cache_key(encoder), (_MODEL_FILE,), write)[0]


def export_split_onnx(encoder: ImageEncoder, cache_dir: Path) -> tuple[Path, Path] | None:
    """``(head.onnx, body.onnx)`` of ``encoder.precision_split()`` in ``cache_dir`` (exported when not
    cached), or None when the encoder has no split."""
    split = encoder.precision_split()
    if split is None:
        return None
    head, body = split
    size = int(encoder.image_size_px)

    def write(folder: Path) -> None:
        pixels = torch.zeros(2, 3, size, size)
        _export(encoder, head, pixels, folder / _SPLIT_FILES[0], INPUT_NAME, [MIDDLE_NAME])
        with torch.no_grad():
            middle = head(pixels)
        _export(encoder, body, middle, folder / _SPLIT_FILES[1], MIDDLE_NAME, output_names(encoder))

    head_file, body_file = _cached(encoder, Path(cache_dir), cache_key(encoder, _SPLIT_TAG), _SPLIT_FILES, write)
    return head_file, body_file


def _cached(encoder: ImageEncoder, cache_dir: Path, key: str, names: tuple[str, ...], write) -> list[Path]:
    """The files ``names`` of the cache entry ``key``; ``write(folder)`` fills a staging folder first when absent."""
    entry = cache_dir / key
    files = [entry / name for name in names]
    if all(f.is_file() for f in files):
        return files
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=cache_dir))
    except OSError as exc:
        raise ExportError(f"cannot write the engine cache folder {cache_dir}: {exc}") from exc
    try:
        write(staging)
        try:
            os.rename(staging, entry)  # atomic; fails if another process got there first
        except OSError:
            if not all(f.is_file() for f in files):
                raise
    except ExportError:
        raise
    except Exception as exc:  # the exporter raises many types; all mean "this encoder did not export"
        raise ExportError(f"exporting encoder {encoder.name!r} to ONNX in {entry} failed: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_stale(cache_dir, key, names[0])
    _log.info("exported encoder %s to %s", encoder.name, entry)
    return files


def _export(encoder: ImageEncoder, module: nn.Module, example: torch.Tensor, path: Path, input_name: str,
            names: list[str]) -> None:
    """Trace ``module`` (a part or all of ``encoder``) from ``example`` to ``path``, batch axis dynamic."""
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shapes fixed by image_size_px
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                opset_version=OPSET_VERSION,
                input_names=[input_name],
                output_names=names,
                dynamic_axes={name: {0: "batch"} for name in [input_name, *names]},
                do_constant_folding=True,
            )
    finally:
        encoder.train(was_training)
    if not path.is_file():
        raise ExportError(f"exporting encoder {encoder.name!r} wrote no file at {path}")


def _remove_stale(cache_dir: Path, key: str, marker: str) -> None:
    """Remove all but the ``KEEP_VERSIONS`` newest entries of the same encoder, size, stages and variant."""
    prefix = key.rsplit("-", 1)[0] + "-"
    siblings = []
    for other in cache_dir.iterdir():
        rest = other.name[len(prefix):]
        if other.name != key and other.name.startswith(prefix) and "-" not in rest and (other / marker).is_file():
            siblings.append(((other / marker).stat().st_mtime, other))
    for _, other in sorted(siblings, reverse=True)[KEEP_VERSIONS - 1 :]:
        shutil.rmtree(other, ignore_errors=True)
        _log.info("removed stale engine cache entry %s", other)
