"""Per-class few-shot memory bank: L2-normalised patch features per stage, stored as safetensors.

A bank file holds one tensor ``stage_<i>`` (N_i, C_i) float32 per matched encoder stage and, in
the safetensors header, one JSON string ``linesight`` with the metadata (class, version, shots,
encoder, image size, stage channels, calibration, creation time, format version). Format 2 adds
how the class is inspected: which encoder stages are matched (``stages``), and for a tiled bank
the tile side and overlap, the frame size of the shots and one int32 tensor ``tiles_<i>`` (N_i,)
with the tile each row came from (model/matching.py). Format 1 files still load. Never pickle:
a bank file from a user must not be able to run code. Buffers take their size from the file
(anomalib's dynamic buffer), so one ``MemoryBank`` can load any bank of its encoder.
Format 3 adds, for a tiled bank whose pixel residual is used (model/registration.py), one uint8
tensor ``references`` (k, H, W): the normal shots in grey, one float32 tensor ``reference_warps``
(k, 2, 3) that registers each to the first, and the ``residual_weight`` that puts grey levels of
residual into units of the anomaly map.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.calibration import Calibration
from model.exceptions import BankFileError, ModelError
from model.names import bank_key

__all__ = ["MemoryBank", "DEFAULT_MAX_BANK_ROWS", "FORMAT_VERSION", "METADATA_KEY", "file_sha256"]

FORMAT_VERSION = 3
_READABLE_FORMATS = (1, 2, 3)
METADATA_KEY = "linesight"
# Settings.max_bank_rows' default: the largest real build (16 shots x 4 rotations x 56x56 patches at
# 448 px = 200,704 rows) with headroom. Scoring cost grows with rows: a 200x bank stalls the stream.
DEFAULT_MAX_BANK_ROWS = 262_144
_STAGE = "stage_{}"
_TILES = "tiles_{}"
_REFERENCES = "references"  # tensor name in the file
_REFERENCE_BUFFER = "reference_pixels"  # buffer name (``references`` is the property)
_WARPS = "reference_warps"  # tensor name in the file
_WARP_BUFFER = "reference_warp_matrices"  # buffer name (``reference_warps`` is the property)


class MemoryBank(nn.Module):
    """Frozen per-class memory bank; ``stage_features[i]`` is (N_i, C_i), rows L2-normalised.

    >>> from model.calibration import choose_threshold
    >>> bank = MemoryBank([torch.randn(10, 4), torch.randn(5, 8)], product_class="washer", version=1,
    ...     shots=1, encoder_name="tiny", image_size_px=64, calibration=choose_threshold([0.1], [0.5]))
    >>> bank.stage_channels, bank.key
    ((4, 8), 'washer@v1')
    """

    def __init__(
        self,
        stage_features: Sequence[torch.Tensor],
        *,
        product_class: str,
        version: int,
        shots: int,
        encoder_name: str,
        image_size_px: int,
        calibration: Calibration,
        created_at: str | None = None,
        stages: Sequence[int] | None = None,
        tile_px: int | None = None,
        tile_overlap: float = 0.0,
        frame_size: tuple[int, int] | None = None,
        tile_ids: Sequence[torch.Tensor] | None = None,
        learned_frames: Sequence[str] = (),
        references: torch.Tensor | None = None,
        residual_weight: float | None = None,
        reference_warps: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if not stage_features:
            raise ModelError(f"bank {product_class!r}: needs at least one stage of features, got none")
        for index, features in enumerate(stage_features):
            if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
                raise ModelError(
                    f"bank {product_class!r}: stage {index} features must be (N, C) with N, C >= 1, "
                    f"got {tuple(features.shape)}"
                )
            self.register_buffer(_STAGE.format(index), _unit_rows(features.detach().float()).contiguous())
        self.num_stages = len(stage_features)
        self.stages = tuple(int(i) for i in stages) if stages is not None else tuple(range(self.num_stages))
        if len(self.stages) != self.num_stages:
            raise ModelError(f"bank {product_class!r}: {self.num_stages} stages of features but stages={self.stages}")
        if (tile_px is None) != (tile_ids is None) or (tile_px is not None and frame_size is None):
            raise ModelError(f"bank {product_class!r}: a tiled bank needs tile_px, frame_size and tile ids together")
        self.tile_px = None if tile_px is None else int(tile_px)
        self.tile_overlap = float(tile_overlap)
        self.frame_size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        self.learned_frames = tuple(str(f) for f in learned_frames)  # false alarms folded in (operator feedback)
        if tile_ids is not None:
            if len(tile_ids) != self.num_stages:
                raise ModelError(f"bank {product_class!r}: tile ids for {len(tile_ids)} stages, features for {self.num_stages}")
            for index, ids in enumerate(tile_ids):
                if ids.shape != (stage_features[index].shape[0],):
                    raise ModelError(
                        f"bank {product_class!r}: stage {index} has {stage_features[index].shape[0]} rows "
                        f"but {tuple(ids.shape)} tile ids"
                    )
                self.register_buffer(_TILES.format(index), ids.detach().to(torch.int32).contiguous())
        if not (references is None) == (residual_weight is None) == (reference_warps is None):
            raise ModelError(f"bank {product_class!r}: references, reference_warps and residual_weight go together")
        if references is not None:
            if self.frame_size is None or references.dtype != torch.uint8 or references.ndim != 3 \
                    or tuple(references.shape[1:]) != self.frame_size or references.shape[0] < 1:
                raise ModelError(
                    f"bank {product_class!r}: references must be (k, H, W) uint8 of a tiled bank's frame size "
                    f"{self.frame_size}, got {references.dtype} {tuple(references.shape)}"
                )
            if not (math.isfinite(residual_weight) and residual_weight > 0):  # type: ignore[arg-type]
                raise ModelError(f"bank {product_class!r}: residual_weight must be a positive number, got {residual_weight!r}")
            if tuple(reference_warps.shape) != (references.shape[0], 2, 3) or not torch.isfinite(reference_warps).all():  # type: ignore[union-attr]
                raise ModelError(f"bank {product_class!r}: reference_warps must be ({references.shape[0]}, 2, 3) "
                                 f"finite numbers, got {tuple(reference_warps.shape)}")  # type: ignore[union-attr]
            self.register_buffer(_REFERENCE_BUFFER, references.detach().contiguous())
            self.register_buffer(_WARP_BUFFER, reference_warps.detach().float().contiguous())  # type: ignore[union-attr]
        self.residual_weight = None if residual_weight is None else float(residual_weight)
        self.product_class = product_class
        self.version = int(version)
        self.shots = int(shots)
        self.encoder_name = encoder_name
        self.image_size_px = int(image_size_px)
        self.calibration = calibration
        self.created_at = created_at or datetime.now(UTC).isoformat(timespec="seconds")

    # ------------------------------------------------------------------ views
    @property
    def stage_features(self) -> tuple[torch.Tensor, ...]:
        """Per stage (N_i, C_i) L2-normalised features."""
        return tuple(getattr(self, _STAGE.format(i)) for i in range(self.num_stages))

    @property
    def tile_ids(self) -> tuple[torch.Tensor, ...] | None:
        """Per stage (N_i,) int32 tile index of each row, or None for an untiled bank."""
        if self.tile_px is None:
            return None
        return tuple(getattr(self, _TILES.format(i)) for i in range(self.num_stages))

    def patch_bank(self):  # -> model.matching.PatchBank (imported lazily: matching imports anomaly_map)
        """The rows to match, as :class:`model.matching.PatchBank` (cached: it keeps tile neighbourhoods)."""
        from model.matching import PatchBank
        from model.tiling import TileGrid

        cached = getattr(self, "_patch_bank", None)
        if cached is None or cached.rows[0].device != self.stage_features[0].device:
            grid = None
            if self.tile_px is not None and self.frame_size is not None:
                g = TileGrid.for_frame(*self.frame_size, self.tile_px, self.tile_overlap)
                grid = (g.rows, g.cols)
            cached = PatchBank(self.stage_features, self.tile_ids, grid)
            self._patch_bank = cached
        return cached

    @property
    def references(self) -> torch.Tensor | None:
        """(k, H, W) uint8 grey normal shots, or None (no pixel residual)."""
        return self._buffers.get(_REFERENCE_BUFFER)

    @property
    def reference_warps(self) -> torch.Tensor | None:
        """(k, 2, 3) float32: shot-0 pixel -> shot-j pixel of each reference, or None."""
        return self._buffers.get(_WARP_BUFFER)

    def reference_set(self):  # -> model.registration.ReferenceSet | None
        """The references ready to explain a frame (cached: their blurred copies are built once), or None."""
        from model.registration import ReferenceSet

        if self.references is None:
            return None
        cached = getattr(self, "_reference_set", None)
        if cached is None:
            cached = ReferenceSet(self.references.cpu().numpy(), self.reference_warps.cpu().numpy())  # type: ignore[union-attr]
            self._reference_set = cached
        return cached

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """C_i per stage."""
        return tuple(int(f.shape[1]) for f in self.stage_features)

    @property
    def key(self) -> str:
        """``class@vN`` (:func:`model.names.bank_key`), the cache key of this bank."""
        return bank_key(self.product_class, self.version)

    def metadata(self) -> dict[str, Any]:
        """The JSON metadata written into the file header."""
        return {
            "format_version": FORMAT_VERSION,
            "product_class": self.product_class,
            "version": self.version,
            "shots": self.shots,
            "encoder_name": self.encoder_name,
            "image_size_px": self.image_size_px,
            "stage_channels": list(self.stage_channels),
            "stage_rows": [int(f.shape[0]) for f in self.stage_features],
            "calibration": self.calibration.to_dict(),
            "created_at": self.created_at,
            "stages": list(self.stages),
            "tile_px": self.tile_px,
            "tile_overlap": self.tile_overlap,
            "frame_size": None if self.frame_size is None else list(self.frame_size),
            "learned_frames": list(self.learned_frames),
            "residual_weight": self.residual_weight,
        }

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001 - torch signature
        """Dynamic buffers: resize each stage buffer to the incoming tensor before copying it."""
        for name, buffer in self._buffers.items():
            incoming = state_dict.get(prefix + name)
            if buffer is not None and incoming is not None and incoming.shape != buffer.shape:
                buffer.resize_(incoming.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> str:
        """Write the bank as safetensors (tensors + JSON metadata); returns the file's sha256 hex.

        The file is written to a temporary name first and renamed, so readers never see half a bank.
        """
        from safetensors.torch import save_file

        path = Path(path)
        tensors = {_STAGE.format(i): f.contiguous().cpu() for i, f in enumerate(self.stage_features)}
        for i, ids in enumerate(self.tile_ids or ()):
            tensors[_TILES.format(i)] = ids.contiguous().cpu()
        if self.references is not None:
            tensors[_REFERENCES] = self.references.contiguous().cpu()
            tensors[_WARPS] = self.reference_warps.contiguous().cpu()  # type: ignore[union-attr]
        temporary = path.with_name(path.name + ".tmp")
        try:
            save_file(tensors, str(temporary), metadata={METADATA_KEY: json.dumps(self.metadata())})
            temporary.replace(path)
        except OSError as exc:
            raise BankFileError(f"cannot write bank file {str(path)!r}: {exc}") from exc
        return file_sha256(path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        expected_encoder: str | None = None,
        expected_sha256: str | None = None,
        max_rows: int | None = DEFAULT_MAX_BANK_ROWS,
    ) -> MemoryBank:
        """Read a bank file; every problem is a :class:`BankFileError` naming the file and the problem.

        Checked before the bank is used, in this order: no stage has more than ``max_rows`` rows
        (from the file's header, before the tensors are read), the file's sha256 equals
        ``expected_sha256`` (the hash recorded at registration; both named on a mismatch), the
        calibration threshold is finite and in (0, 1] (anomaly maps are in [0, 1]), the features
        are finite. The hash and the tensors come from the same read of one open file, so a file
        replaced meanwhile cannot slip past the hash.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load as load_safetensors

        path = Path(path)
        where = f"bank file {str(path)!r}"
        if not path.is_file():
            raise BankFileError(f"{where}: no such file")
        try:
            with path.open("rb") as handle:
                layout = _read_layout(handle, where)
                if max_rows is not None:
                    for name, info in layout.items():
                        shape = info.get("shape") if isinstance(info, dict) and name != "__metadata__" else None
                        if shape and isinstance(shape[0], int) and shape[0] > max_rows:
                            raise BankFileError(
                                f"{where}: tensor {name!r} has {shape[0]} rows; the limit is {max_rows} "
                                "(max_bank_rows): a bank this large would stall scoring"
                            )
                handle.seek(0)
                data = handle.read()
        except OSError as exc:
            raise BankFileError(f"{where}: cannot be read ({exc})") from None
        if expected_sha256:
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected_sha256.lower():
                raise BankFileError(
                    f"{where}: sha256 is {actual}, but {expected_sha256} was recorded when it was registered "
                    "(the file was changed or replaced; rebuild or re-register the bank)"
                )
        try:
            tensors = load_safetensors(data)
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise BankFileError(f"{where}: not a readable safetensors file ({exc})") from None
        del data
        header = layout.get("__metadata__") or {}
        if not isinstance(header, dict):
            raise BankFileError(f"{where}: not a readable safetensors file (__metadata__ is not an object)")
        meta = _parse_metadata(header, where)
        if expected_encoder is not None and meta["encoder_name"] != expected_encoder:
            raise BankFileError(
                f"{where}: built with encoder {meta['encoder_name']!r}, but this model uses {expected_encoder!r}"
            )
        stages = []
        for index, channels in enumerate(meta["stage_channels"]):
            name = _STAGE.format(index)
            if name not in tensors:
                raise BankFileError(f"{where}: missing tensor {name!r} (has {sorted(tensors)})")
            features = tensors[name]
            if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] != channels:
                raise BankFileError(
                    f"{where}: tensor {name!r} has shape {tuple(features.shape)}, metadata says (N, {channels})"
                )
            if not torch.isfinite(features).all():
                raise BankFileError(f"{where}: tensor {name!r} contains NaN or infinite values")
            stages.append(features.float())
        tiled = meta.get("tile_px") is not None
        tile_ids = []
        if tiled:
            for index, features in enumerate(stages):
                ids = tensors.get(_TILES.format(index))
                if ids is None or ids.shape != (features.shape[0],) or ids.dtype != torch.int32:
                    raise BankFileError(f"{where}: tiled bank needs int32 tensor {_TILES.format(index)!r} of {features.shape[0]} rows")
                tile_ids.append(ids)
        residual_weight = meta.get("residual_weight")
        references, warps = tensors.get(_REFERENCES), tensors.get(_WARPS)
        if not (references is None) == (warps is None) == (residual_weight is None):
            raise BankFileError(f"{where}: tensors {_REFERENCES!r}, {_WARPS!r} and metadata 'residual_weight' go together")
        expected = {_STAGE.format(i) for i in range(len(stages))} | ({_TILES.format(i) for i in range(len(stages))} if tiled else set())
        if references is not None:
            expected |= {_REFERENCES, _WARPS}
        extra = sorted(set(tensors) - expected)
        if extra:
            raise BankFileError(f"{where}: unexpected tensors {extra}")
        try:
            calibration = Calibration.from_dict(meta["calibration"])
        except ModelError as exc:
            raise BankFileError(f"{where}: {exc}") from None
        if meta.get("stages") is not None and len(meta["stages"]) != len(stages):
            raise BankFileError(f"{where}: metadata lists stages {meta['stages']} for {len(stages)} tensors")

        threshold = calibration.threshold
        if not (math.isfinite(threshold) and 0.0 < threshold <= 1.0):
            raise BankFileError(
                f"{where}: calibration threshold {threshold!r} is outside (0, 1] (anomaly maps are in [0, 1])"
            )
        try:
            return cls(
                stages,
                product_class=meta["product_class"],
                version=meta["version"],
                shots=meta["shots"],
                encoder_name=meta["encoder_name"],
                image_size_px=meta["image_size_px"],
                calibration=calibration,
                created_at=meta["created_at"],
                stages=meta.get("stages"),
                tile_px=meta.get("tile_px"),
                tile_overlap=float(meta.get("tile_overlap") or 0.0),
                frame_size=tuple(meta["frame_size"]) if meta.get("frame_size") else None,
                tile_ids=tile_ids if tiled else None,
                learned_frames=[str(f) for f in meta.get("learned_frames") or []],
                references=references,
                residual_weight=residual_weight,
                reference_warps=warps,
            )
        except ModelError as exc:
            raise BankFileError(f"{where}: {exc}") from None


_MAX_HEADER_BYTES = 1 << 20  # a bank header is < 2 KB; safetensors itself allows 100 MB


def _read_layout(handle: Any, where: str) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor names -> dtype/shape/offsets, ``__metadata__``).

    Format: 8-byte little-endian header length, then that many bytes of JSON.
    """
    prefix = handle.read(8)
    if len(prefix) < 8:
        raise BankFileError(f"{where}: not a readable safetensors file ({len(prefix)} bytes, no header)")
    size = int.from_bytes(prefix, "little")
    if not 2 <= size <= _MAX_HEADER_BYTES:
        raise BankFileError(f"{where}: not a readable safetensors file (header length {size})")
    raw = handle.read(size)
    try:
        layout = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BankFileError(f"{where}: not a readable safetensors file (header is not JSON: {exc})") from None
    if not isinstance(layout, dict):
        raise BankFileError(f"{where}: not a readable safetensors file (header is not a JSON object)")
    return layout


def _unit_rows(features: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm; rows already unit (e.g. read back from a file) are kept bit-exact."""
    norms = features.norm(dim=1, keepdim=True)
    if bool(((norms - 1.0).abs() <= 1e-5).all()):
        return features
    return features / norms.clamp_min(1e-12)


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks (what :meth:`MemoryBank.save` returns)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "format_version": int,
    "product_class": str,
    "version": int,
    "shots": int,
    "encoder_name": str,
    "image_size_px": int,
    "stage_channels": list,
    "calibration": dict,
    "created_at": str,
}


def _parse_metadata(header: dict[str, str], where: str) -> dict[str, Any]:
    """The validated metadata dict of a bank header, or BankFileError saying what is wrong."""
    if METADATA_KEY not in header:
        raise BankFileError(f"{where}: no {METADATA_KEY!r} metadata in the header (not a linesight bank)")
    try:
        meta = json.loads(header[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise BankFileError(f"{where}: metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise BankFileError(f"{where}: metadata must be a JSON object, got {type(meta).__name__}")
    for field, kind in _REQUIRED.items():
        if field not in meta:
            raise BankFileError(f"{where}: metadata is missing {field!r}")
        if not isinstance(meta[field], kind) or isinstance(meta[field], bool):
            raise BankFileError(f"{where}: metadata {field!r} has the wrong type: {meta[field]!r}")
    if meta["format_version"] not in _READABLE_FORMATS:
        raise BankFileError(
            f"{where}: format version {meta['format_version']} is not supported (readable: {list(_READABLE_FORMATS)})"
        )
    stages = meta.get("stages")
    if stages is not None and (
        not isinstance(stages, list)
        or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in stages)
    ):
        raise BankFileError(f"{where}: metadata 'stages' must list encoder stage indices, got {stages!r}")
    tile_px, frame_size = meta.get("tile_px"), meta.get("frame_size")
    if tile_px is not None and (
        not isinstance(tile_px, int) or tile_px < 32 or not isinstance(frame_size, list) or len(frame_size) != 2
        or not all(isinstance(v, int) and v >= 1 for v in frame_size)
    ):
        raise BankFileError(f"{where}: metadata tile_px={tile_px!r} / frame_size={frame_size!r} are not a valid tiling")
    weight = meta.get("residual_weight")
    if weight is not None and (not isinstance(weight, (int, float)) or isinstance(weight, bool)):
        raise BankFileError(f"{where}: metadata 'residual_weight' must be a number, got {weight!r}")
    channels = meta["stage_channels"]
    if not channels or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels):
        raise BankFileError(f"{where}: metadata 'stage_channels' must be positive integers, got {channels!r}")
    if meta["shots"] < 1 or meta["version"] < 0 or meta["image_size_px"] < 1:
        raise BankFileError(
            f"{where}: metadata has impossible values: shots={meta['shots']}, version={meta['version']}, "
            f"image_size_px={meta['image_size_px']}"
        )
    return meta
