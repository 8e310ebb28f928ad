"""Few-shot anomaly map (docs/method.md): nearest-neighbour cosine similarity to a memory bank.

Per stage i: sim_i = max over the bank B_i of cosine(F_patch_i, B_i); then
M = upsample(1 - mean_i sim_i) to (S, S), and the image score is max(M).

M is smoothed by a small Gaussian (sigma 4 px at 224, PatchCore). A PatchCore-style 3x3 average of
patch features before matching is available (``smooth_kernel``) but off by default: on the
synthetic line it lowered the mean image AUROC of 4-shot banks from 0.970 to 0.932.
Pure torch, batched: (B, ...) in, (B, S, S) out.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from model.exceptions import ShapeError

__all__ = [
    "SMOOTH_KERNEL",
    "BLUR_SIGMA_PX",
    "patch_embeddings",
    "nearest_similarity",
    "few_shot_anomaly_map",
    "image_scores",
    "gaussian_blur",
]

SMOOTH_KERNEL = 1  # k x k average of patch features before matching; 1 = off (3 measured worse)
BLUR_SIGMA_PX = 4.0  # Gaussian smoothing of M at 224 px (PatchCore); scaled with the image size
_CHUNK_ELEMENTS = 1 << 22  # at most 4M similarities (16 MB) at once: cache-friendlier than larger chunks


def patch_embeddings(patch_features: Sequence[torch.Tensor], smooth_kernel: int = SMOOTH_KERNEL) -> list[torch.Tensor]:
    """Per stage (B, C_i, H_i, W_i) -> (B, H_i * W_i, C_i): (optionally locally averaged) L2-normalised features.

    >>> [e.shape for e in patch_embeddings([torch.randn(2, 8, 4, 4)])]
    [torch.Size([2, 16, 8])]
    """
    embeddings = []
    for features in patch_features:
        if features.ndim != 4:
            raise ShapeError(f"expected stage features (B, C, H, W), got {tuple(features.shape)}")
        if smooth_kernel > 1:
            features = F.avg_pool2d(
                features, smooth_kernel, stride=1, padding=smooth_kernel // 2, count_include_pad=False
            )
        flat = features.flatten(2).transpose(1, 2)  # (B, H*W, C)
        embeddings.append(F.normalize(flat.float(), dim=-1))
    return embeddings


def nearest_similarity(queries: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """Max cosine similarity of each query row to the bank: (B, P, C) x (N, C) -> (B, P).

    Both inputs must be L2-normalised; the (rows x N) similarity matrix is built in chunks.
    """
    if queries.ndim != 3 or bank.ndim != 2 or queries.shape[-1] != bank.shape[-1]:
        raise ShapeError(
            f"expected queries (B, P, C) and bank (N, C) with equal C, got {tuple(queries.shape)} and {tuple(bank.shape)}"
        )
    rows = queries.reshape(-1, queries.shape[-1])  # (B*P, C)
    bank_t = bank.t().contiguous()  # (C, N)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, bank.shape[0]))
    best = torch.empty(rows.shape[0], dtype=rows.dtype, device=rows.device)
    for start in range(0, rows.shape[0], chunk):
        best[start : start + chunk] = (rows[start : start + chunk] @ bank_t).amax(dim=1)
    return best.view(queries.shape[0], queries.shape[1])


def gaussian_blur(maps: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, H, W) maps (reflect padding); sigma <= 0 returns the input."""
    if sigma_px <= 0:
        return maps
    radius = max(1, int(round(3.0 * sigma_px)))
    radius = min(radius, maps.shape[-1] - 1, maps.shape[-2] - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-0.5 * (offsets / sigma_px) ** 2)
    kernel = kernel / kernel.sum()
    x = maps.unsqueeze(1)  # (B, 1, H, W)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return x.squeeze(1)


def few_shot_anomaly_map(
    patch_features: Sequence[torch.Tensor],
    bank_features: Sequence[torch.Tensor],
    image_size_px: int,
    *,
    smooth_kernel: int = SMOOTH_KERNEL,
    blur_sigma_px: float | None = None,
) -> torch.Tensor:
    """M (B, S, S) float32 in [0, 1] from raw stage features (B, C_i, H_i, W_i) and bank stages (N_i, C_i).

    ``blur_sigma_px`` defaults to BLUR_SIGMA_PX scaled by S / 224.

    >>> feats = [torch.randn(1, 8, 7, 7)]
    >>> bank = torch.nn.functional.normalize(
    ...     patch_embeddings(feats)[0][0], dim=-1)  # the image itself is the bank
    >>> float(few_shot_anomaly_map(feats, [bank], 32).max()) < 1e-4
    True
    """
    if len(patch_features) != len(bank_features):
        raise ShapeError(f"encoder gives {len(patch_features)} stages but the bank has {len(bank_features)}")
    for index, (features, bank) in enumerate(zip(patch_features, bank_features, strict=True)):
        if features.shape[1] != bank.shape[-1]:
            raise ShapeError(
                f"stage {index}: encoder features have {features.shape[1]} channels, the bank has {bank.shape[-1]}"
            )
    size = (image_size_px, image_size_px)
    similarity = None
    for features, embedding, bank in zip(
        patch_features, patch_embeddings(patch_features, smooth_kernel), bank_features, strict=True
    ):
        height, width = features.shape[-2:]
        sim = nearest_similarity(embedding, bank.to(embedding.dtype)).view(-1, 1, height, width)  # sim_i
        sim = F.interpolate(sim, size=size, mode="bilinear", align_corners=False)
        similarity = sim if similarity is None else similarity + sim
    maps = 1.0 - similarity.squeeze(1) / len(patch_features)  # M = 1 - mean_i sim_i, (B, S, S)
    sigma = BLUR_SIGMA_PX * image_size_px / 224.0 if blur_sigma_px is None else blur_sigma_px
    return gaussian_blur(maps, sigma).clamp_(0.0, 1.0)


def image_scores(maps: torch.Tensor) -> torch.Tensor:
    """Image score max(M) per map: (B, S, S) -> (B,)."""
    return maps.flatten(1).amax(dim=1)
