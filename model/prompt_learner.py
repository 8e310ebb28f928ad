"""The prompt learner: anomaly map M and global image vector -> LLM input embeddings.

docs/method.md:
- E_base: n1 = 9 learnable embeddings of the LLM hidden size D.
- E_dec: M through conv blocks [conv3x3 pad1, ReLU, maxpool2] with channels 1->4->16->64->256->1024,
  224 -> 7 px, then conv5x5 (no pad) to D: 3x3 = n2 = 9 tokens.
- E_prompt = concat(E_base, E_dec): 18 tokens.  E_img = Linear(global image vector): 1 token.

The paper's summary says "4 x" blocks, but its channel list has 5 steps and 224 -> 7 px needs 5 halvings
(7 - 5 + 1 = 3 after the 5x5 conv); the original AnomalyGPT code has 5 blocks. Shapes at 224 px:

    M (B, 1, 224, 224)
    block 1: (B,    4, 112, 112)    block 4: (B,  256, 14, 14)
    block 2: (B,   16,  56,  56)    block 5: (B, 1024,  7,  7)
    block 3: (B,   64,  28,  28)    conv5x5: (B,    D,  3,  3) -> E_dec (B, 9, D), row-major

M reaches the prompt learner in units of the detector's decision threshold (:func:`prompt_map`):
``clamp(0.5 * M / threshold, 0, 1)``, so 0.5 is the decision for every map (a few-shot map against
its bank's calibrated threshold, the trained decoder's softmax at 0.5, a fused map at 1). Raw
few-shot maps differ in scale from class to class (1-shot thresholds 0.27-0.43 on the demo classes),
which the LLM cannot know; in threshold units one learner serves all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from model.decoder import load_state_checked, load_weights, save_weights
from model.exceptions import ModelError, ShapeError

__all__ = ["PromptLearner", "PromptTokens", "load_prompt_learner", "prompt_map", "save_prompt_learner"]

MAP_SIZE_PX = 224  # M is resized to this side so that E_dec always has 3x3 = 9 tokens
_KIND = "linesight.prompt_learner"
DECISION_LEVEL = 0.5  # where the decision threshold lands in the prompt map


def prompt_map(anomaly_map, threshold: float | None) -> torch.Tensor:
    """M in units of the decision threshold, as the prompt learner reads it: ``clamp(0.5 M / t, 0, 1)``.

    ``anomaly_map`` is an (S, S) or (B, S, S) tensor or numpy array; ``threshold`` the detector's
    threshold for it (``FrameScore.threshold``; None: M is taken as already in these units).

    >>> prompt_map(torch.tensor([[0.1, 0.3, 0.9]]), 0.3).tolist()
    [[0.1666666716337204, 0.5, 1.0]]
    """
    heat = torch.as_tensor(anomaly_map, dtype=torch.float32)
    if threshold is None:
        return heat.clamp(0.0, 1.0)
    if not threshold > 0:
        raise ModelError(f"the decision threshold must be > 0, got {threshold!r}")
    return (heat * (DECISION_LEVEL / float(threshold))).clamp_(0.0, 1.0)


class PromptTokens(NamedTuple):
    """LLM input embeddings produced from one image."""

    image_tokens: torch.Tensor  # E_img (B, 1, D)
    prompt_tokens: torch.Tensor  # E_prompt = [E_base; E_dec] (B, 18, D)


class PromptLearner(nn.Module):
    """Trainable E_base, the E_dec conv net and the E_img projection (everything else is frozen).

    >>> learner = PromptLearner(hidden_size=576, global_dim=192)
    >>> out = learner(torch.rand(2, 224, 224), torch.randn(2, 192))
    >>> tuple(out.image_tokens.shape), tuple(out.prompt_tokens.shape)
    ((2, 1, 576), (2, 18, 576))
    """

    def __init__(
        self,
        hidden_size: int,
        global_dim: int,
        base_tokens: int = 9,  # n1
        channels: Sequence[int] = (4, 16, 64, 256, 1024),  # conv block widths (docs/method.md)
    ) -> None:
        super().__init__()
        if hidden_size < 1 or global_dim < 1 or base_tokens < 0 or len(channels) != 5 or min(channels) < 1:
            raise ShapeError(
                f"bad prompt learner shape: hidden_size={hidden_size}, global_dim={global_dim}, "
                f"base_tokens={base_tokens}, channels={tuple(channels)} (need 5 conv widths)"
            )
        self.hidden_size = int(hidden_size)
        self.global_dim = int(global_dim)
        self.channels = tuple(int(c) for c in channels)
        self.base_prompts = nn.Parameter(torch.randn(base_tokens, hidden_size) * 0.02)  # E_base (n1, D)
        layers: list[nn.Module] = []
        previous = 1
        for width in self.channels:  # 224 -> 112 -> 56 -> 28 -> 14 -> 7
            layers += [
                nn.Conv2d(previous, width, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            previous = width
        layers.append(nn.Conv2d(previous, hidden_size, kernel_size=5, padding=0))  # 7 -> 3
        self.map_net = nn.Sequential(*layers)
        self.image_projection = nn.Linear(global_dim, hidden_size)  # E_img = Linear(global vector)

    @property
    def prompt_length(self) -> int:
        """Tokens in E_prompt: n1 + n2 (9 + 9 = 18 by default)."""
        return self.base_prompts.shape[0] + 9

    def config(self) -> dict[str, object]:
        """Constructor arguments (stored in weight files)."""
        return {
            "hidden_size": self.hidden_size,
            "global_dim": self.global_dim,
            "base_tokens": int(self.base_prompts.shape[0]),
            "channels": list(self.channels),
        }

    def image_tokens(self, global_vector: torch.Tensor) -> torch.Tensor:
        """E_img (B, 1, D) from the global image vector (B, C_global)."""
        if global_vector.ndim != 2 or global_vector.shape[1] != self.global_dim:
            raise ShapeError(
                f"expected a global vector (B, {self.global_dim}), got {tuple(global_vector.shape)}"
            )
        return self.image_projection(global_vector.float()).unsqueeze(1)

    def decoder_tokens(self, anomaly_map: torch.Tensor) -> torch.Tensor:
        """E_dec (B, 9, D) from M (B, S, S) or (B, 1, S, S); M is resized to 224 px first if needed."""
        if anomaly_map.ndim == 3:
            anomaly_map = anomaly_map.unsqueeze(1)
        if anomaly_map.ndim != 4 or anomaly_map.shape[1] != 1:
            raise ShapeError(
                f"expected an anomaly map (B, S, S) or (B, 1, S, S), got {tuple(anomaly_map.shape)}"
            )
        anomaly_map = anomaly_map.float()
        if anomaly_map.shape[-2:] != (MAP_SIZE_PX, MAP_SIZE_PX):
            anomaly_map = nn.functional.interpolate(
                anomaly_map, size=(MAP_SIZE_PX, MAP_SIZE_PX), mode="bilinear", align_corners=False
            )
        grid = self.map_net(anomaly_map)  # (B, D, 3, 3)
        return grid.flatten(2).transpose(1, 2)  # (B, 9, D)

    def forward(self, anomaly_map: torch.Tensor, global_vector: torch.Tensor) -> PromptTokens:
        """E_img (B, 1, D) and E_prompt (B, 18, D) for a batch of maps and global vectors."""
        e_dec = self.decoder_tokens(anomaly_map)
        if global_vector.shape[0] != e_dec.shape[0]:
            raise ShapeError(
                f"batch mismatch: {e_dec.shape[0]} maps but {global_vector.shape[0]} global vectors"
            )
        e_base = self.base_prompts.unsqueeze(0).expand(e_dec.shape[0], -1, -1)
        prompt = torch.cat([e_base, e_dec], dim=1)  # E_prompt = [E_base; E_dec]
        return PromptTokens(image_tokens=self.image_tokens(global_vector), prompt_tokens=prompt)


def save_prompt_learner(learner: PromptLearner, path: Path | str) -> str:
    """Save the prompt learner as safetensors (configuration in the metadata); return the sha256 hex."""
    return save_weights(learner, path, _KIND, learner.config())


def load_prompt_learner(path: Path | str, learner: PromptLearner | None = None) -> PromptLearner:
    """Load a prompt learner file into ``learner`` (shapes checked) or into a new one from its metadata."""
    tensors, config = load_weights(path, _KIND)
    if learner is None:
        try:
            learner = PromptLearner(
                hidden_size=int(config["hidden_size"]),  # type: ignore[arg-type]
                global_dim=int(config["global_dim"]),  # type: ignore[arg-type]
                base_tokens=int(config["base_tokens"]),  # type: ignore[arg-type]
                channels=[int(c) for c in config["channels"]],  # type: ignore[union-attr]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: prompt learner config metadata {config} is incomplete: {exc}") from exc
    load_state_checked(learner, tensors, path)
    return learner
