"""The one interface every image encoder backend implements.

An encoder is frozen: it turns a batch of RGB images into 4 stages of patch features and one
global image vector (docs/method.md: "a frozen image encoder gives a global image vector and patch
features from 4 intermediate stages").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from model.exceptions import ShapeError

__all__ = ["EncoderOutput", "ImageEncoder"]


class EncoderOutput(NamedTuple):
    """Output of :meth:`ImageEncoder.forward`."""

    patch_features: tuple[torch.Tensor, ...]  # per stage i: (B, C_i, H_i, W_i), raw (not normalised)
    global_vector: torch.Tensor  # (B, C_global)


class ImageEncoder(nn.Module, ABC):
    """Frozen image encoder: ``preprocess`` (uint8 RGB -> pixels) then ``forward`` (pixels -> features).

    Subclasses set ``name``, ``image_size_px``, ``stage_channels`` (C_i per stage) and
    ``global_dim`` (C_global) and implement ``normalize`` and ``forward``. ``engine``,
    ``precision`` and ``engine_description`` say what runs ``forward``: eager torch fp32 here,
    another runtime for the encoders ``model.engine.accelerate`` returns.
    """

    name: str
    image_size_px: int
    stage_channels: tuple[int, ...]
    global_dim: int
    engine: str = "torch"  # "torch" | "onnxruntime" | "openvino"
    precision: str = "fp32"  # "fp32" | "bf16"
    engine_description: str = "torch fp32"  # for logs, /healthz and the bench

    @abstractmethod
    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Map float pixels in [0, 1], shape (B, 3, S, S), to the backbone's expected input."""

    @abstractmethod
    def forward(self, pixels: torch.Tensor) -> EncoderOutput:
        """Encode already-``preprocess``-ed pixels (B, 3, S, S) into an :class:`EncoderOutput`."""

    def precision_split(self) -> tuple[nn.Module, nn.Module] | None:
        """``(head, body)`` with ``body(head(pixels)) == (*stages, global)``, or None (the default).

        An encoder whose first layers lose too much in bf16 names them here: ``model.engine`` then
        runs ``head`` in fp32 and ``body`` in bf16 (two compiled graphs, one after the other)
        instead of the whole network in bf16. ``head`` maps pixels (B, 3, S, S) to one tensor.
        """
        return None

    def preprocess(self, images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
        """Turn uint8 RGB images (B, H, W, 3) or a list of (H, W, 3) into normalised (B, 3, S, S).

        Images of another size are resized (bilinear) to ``image_size_px``.
        """
        import cv2  # local: keeps `import model` light for Ray workers that never preprocess

        size = self.image_size_px
        batch = []
        for index, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ShapeError(
                    f"image {index}: expected uint8 RGB of shape (H, W, 3), got {image.dtype} {tuple(image.shape)}"
                )
            if image.shape[0] != size or image.shape[1] != size:
                image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
            batch.append(image)
        if not batch:
            raise ShapeError("preprocess got an empty batch")
        # (B, 3, S, S) float in channels-last memory (torch's CPU convolutions run ~1.6x faster on it;
        # OpenVINO takes it as NHWC without a copy, ONNX Runtime copies it to NCHW); one pass to float
        pixels = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().mul_(1.0 / 255.0)
        return self.normalize(pixels)  # (B, 3, S, S)
