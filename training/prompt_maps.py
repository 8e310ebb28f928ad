"""Few-shot anomaly maps of training images, as the prompt learner will see them in the stream and in eval.

The stream, ``linesight inspect`` and ``linesight eval --llm`` hand the prompt learner the few-shot
detector's map M (a frame against its class's bank), in units of the bank's calibrated threshold
(:func:`model.prompt_learner.prompt_map`). Training the prompt learner on the text-aligned decoder's
maps instead (the paper's training) teaches it a map it never sees at inference. So the trainer can
score its training images the way the detector does:

- per class, ``banks_per_class`` calibrated banks (:func:`model.fewshot.build_bank`, the stream's
  bank builder) from small subsets of the class's normal training images, k shots each, k cycling
  through ``shots`` (the demo's eval uses 1 shot, its stream 4); consecutive subsets are disjoint,
  so every image is left out of at least one bank;
- a training pair (normal image i, its NSA anomaly) is scored against one bank that does not hold
  image i (drawn by the caller's seeded generator), with the detector's matcher
  (:func:`model.matching.tile_maps`) on the cached stage features; M is then put in threshold units.

Building the banks costs a few seconds each (calibration scores views and synthetic defects), minutes
for all of them on a loaded CPU; with ``cache_dir`` each bank is kept as a bank file named by the
sha256 of what it is made of (encoder, size, class, rotations, seed and the shots' pixels), so a
resumed or repeated run reads them back instead.

>>> maps = FewShotPromptMaps(encoder, {"washer": images}, shots=(1, 2))  # doctest: +SKIP
>>> maps(["washer"], [maps.pick("washer", 3, draw=5)], stage_features).shape  # doctest: +SKIP
torch.Size([1, 224, 224])
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from linesight.errors import ConfigError
from model.matching import tile_maps
from model.prompt_learner import prompt_map

__all__ = ["DEFAULT_BANKS_PER_CLASS", "DEFAULT_BANK_SHOTS", "FewShotPromptMaps", "bank_subsets",
           "default_bank_cache_dir"]

log = logging.getLogger(__name__)

DEFAULT_BANK_SHOTS: tuple[int, ...] = (1, 2, 4)  # shots of the training banks, cycled
DEFAULT_BANKS_PER_CLASS = 6


def default_bank_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/linesight/training-banks`` (``~/.cache`` when unset), beside the LLM and engine caches."""
    import os

    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "linesight" / "training-banks"


def bank_subsets(image_count: int, shots: Sequence[int], banks: int, seed: int) -> list[tuple[int, ...]]:
    """Image indices of each bank: k = shots[j % len(shots)] (at most count - 1) taken in turn from a
    seeded permutation, reshuffled when it runs out; every image is left out of at least one bank.

    >>> bank_subsets(4, (1, 2), 3, seed=0)
    [(0,), (3, 1), (2,)]
    """
    if image_count < 2:
        raise ConfigError(f"few-shot training maps need >= 2 normal images per class, got {image_count}")
    if banks < 2 or not shots or min(shots) < 1:
        raise ConfigError(f"need >= 2 banks per class and shots >= 1, got banks={banks}, shots={tuple(shots)}")
    rng = np.random.default_rng([seed, 7717])
    order, position, subsets = list(rng.permutation(image_count)), 0, []
    for index in range(banks):
        k = min(int(shots[index % len(shots)]), image_count - 1)
        if position + k > len(order):
            order, position = list(rng.permutation(image_count)), 0
        subsets.append(tuple(int(i) for i in order[position : position + k]))
        position += k
    held_everywhere = set(range(image_count)).intersection(*map(set, subsets))
    if held_everywhere:  # cannot happen with >= 2 banks of at most count - 1 images; kept as a guard
        raise ConfigError(f"images {sorted(held_everywhere)} are in every bank; give more banks or images")
    return subsets


class FewShotPromptMaps:
    """Calibrated leave-out banks per class and the prompt maps of training images against them."""

    def __init__(
        self,
        encoder,  # model.encoders.base.ImageEncoder (frozen)
        images: Mapping[str, Sequence[np.ndarray]],
        *,
        shots: Sequence[int] = DEFAULT_BANK_SHOTS,
        banks_per_class: int = DEFAULT_BANKS_PER_CLASS,
        seed: int = 0,
        rotations: Callable[[str], bool] | None = None,
        cache_dir: Path | str | None = None,
    ) -> None:
        rotate = rotations or _rotations_for
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.built = self.cached = 0
        self.size_px = int(encoder.image_size_px)
        self.banks: dict[str, list] = {}
        self.subsets: dict[str, list[tuple[int, ...]]] = {}
        started = time.perf_counter()
        for name, imgs in images.items():
            subsets = bank_subsets(len(imgs), shots, banks_per_class, seed)
            self.subsets[name] = subsets
            self.banks[name] = [
                self._bank(encoder, [imgs[i] for i in subset], name, index + 1, rotate(name), seed + index)
                for index, subset in enumerate(subsets)
            ]
        log.info("few-shot training banks: %d classes x %d banks in %.1f s (%d built, %d read from %s)", len(images),
                 banks_per_class, time.perf_counter() - started, self.built, self.cached, self.cache_dir)

    def _bank(self, encoder, shots: Sequence[np.ndarray], name: str, version: int, rotations: bool, seed: int):
        """``build_bank``'s bank, read from / written to the cache when there is one."""
        from model.bank import MemoryBank
        from model.exceptions import BankFileError
        from model.fewshot import build_bank

        path = None
        if self.cache_dir is not None:
            digest = hashlib.sha256(repr((encoder.name, self.size_px, name, version, rotations, seed)).encode())
            for shot in shots:
                digest.update(np.ascontiguousarray(shot).tobytes())
            path = self.cache_dir / f"{name}-{digest.hexdigest()[:24]}.safetensors"
            if path.is_file():
                try:
                    bank = MemoryBank.load(path, expected_encoder=encoder.name, max_rows=None)
                    self.cached += 1
                    return bank
                except BankFileError as exc:  # a damaged cache file is rebuilt
                    log.warning("rebuilding training bank: %s", exc)
        bank = build_bank(encoder, list(shots), name, version, rotations=rotations, seed=seed)
        self.built += 1
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            bank.save(path)
        return bank

    def thresholds(self, product_class: str) -> list[float]:
        """The calibrated thresholds of the class's banks."""
        return [float(bank.calibration.threshold) for bank in self.banks[product_class]]

    def pick(self, product_class: str, image_index: int, draw: int) -> int:
        """Index of a bank of the class that does not hold ``image_index``: the ``draw``-th (mod) of them."""
        free = [j for j, subset in enumerate(self.subsets[product_class]) if image_index not in subset]
        return free[draw % len(free)]

    @torch.no_grad()
    def __call__(
        self,
        classes: Sequence[str],
        bank_indices: Sequence[int],
        stage_features: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        """Prompt maps (B, S, S) in [0, 1] of images with raw stage features [(B, C_i, H_i, W_i)]:
        image b against bank ``bank_indices[b]`` of ``classes[b]``, in threshold units."""
        out = torch.empty(len(classes), self.size_px, self.size_px)
        groups: dict[tuple[str, int], list[int]] = {}
        for row, key in enumerate(zip(classes, bank_indices, strict=True)):
            groups.setdefault(key, []).append(row)
        for (name, index), rows in groups.items():
            bank = self.banks[name][index]
            select = torch.tensor(rows)
            features = [stage_features[i].index_select(0, select) for i in bank.stages]
            maps = tile_maps(features, bank.patch_bank(), None, self.size_px)
            out[rows] = prompt_map(maps, float(bank.calibration.threshold))
        return out


def _rotations_for(product_class: str) -> bool:
    """As ``linesight eval`` builds banks: the demo classes' own rule, rotations for any other class."""
    from training.synthetic import PRODUCT_CLASSES, rotations_ok

    return rotations_ok(product_class) if product_class in PRODUCT_CLASSES else True
