"""model/text_anchors.py: prompt sentences, F_text shape/normalisation/averaging, the packaged MiniLM, the LRU."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
import torch

from model.exceptions import ModelError, ShapeError
from model.text_anchors import (
    ABNORMAL_STATES,
    NORMAL_STATES,
    MiniLMTextEmbedder,
    TextAnchorCache,
    TextEmbedder,
    minilm_model_dir,
    prompt_sentences,
    text_anchors,
)


class HashEmbedder:
    """A real (if crude) embedder: each sentence -> a fixed pseudo-random vector; counts its calls."""

    name = "hash"
    dim = 8

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, sentences: Sequence[str]) -> torch.Tensor:
        self.calls += 1
        rows = []
        for sentence in sentences:
            seed = int.from_bytes(hashlib.sha256(sentence.encode()).digest()[:4], "little")
            rows.append(torch.randn(self.dim, generator=torch.Generator().manual_seed(seed)) * 3)
        return torch.stack(rows)


@pytest.fixture(scope="module")
def minilm() -> MiniLMTextEmbedder:
    return MiniLMTextEmbedder()


def test_prompt_sentences_fill_states_into_templates():
    normal, abnormal = prompt_sentences("metal_nut")
    assert len(normal) == len(NORMAL_STATES) * 2 == 14
    assert len(abnormal) == len(ABNORMAL_STATES) * 2 == 10
    assert normal[:2] == ["a photo of a metal nut.", "a photo of the metal nut."]
    assert "a photo of the metal nut without damage." in normal
    assert "a photo of a broken metal nut." in abnormal
    assert "a photo of the metal nut with defect." in abnormal


def test_unknown_class_is_object():
    normal, _ = prompt_sentences(None)
    assert normal[0] == "a photo of a object."
    assert prompt_sentences("") == prompt_sentences(None)


def test_anchors_are_the_normalised_state_means():
    embedder = HashEmbedder()
    anchors = text_anchors(embedder, "bottle")
    normal, abnormal = prompt_sentences("bottle")
    unit = torch.nn.functional.normalize
    expected_normal = unit(unit(embedder.embed(normal), dim=-1).mean(0), dim=0)
    expected_abnormal = unit(unit(embedder.embed(abnormal), dim=-1).mean(0), dim=0)
    assert torch.allclose(anchors[0], expected_normal, atol=1e-6)
    assert torch.allclose(anchors[1], expected_abnormal, atol=1e-6)


def test_a_bad_embedder_output_is_named():
    class Broken(HashEmbedder):
        def embed(self, sentences: Sequence[str]) -> torch.Tensor:
            return torch.zeros(3, 8)

    with pytest.raises(ShapeError, match=r"'hash' returned \(3, 8\) for 24 sentences"):
        text_anchors(Broken(), "bottle")


def test_minilm_loads_from_the_package_folder(minilm):
    assert (minilm_model_dir() / "model.safetensors").is_file()
    assert isinstance(minilm, TextEmbedder)
    assert minilm.dim == 384


def test_minilm_anchors_shape_and_norm(minilm):
    anchors = text_anchors(minilm, "bottle")
    assert tuple(anchors.shape) == (2, 384)
    assert torch.allclose(anchors.norm(dim=1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(anchors[0], anchors[1])
    assert torch.equal(anchors, text_anchors(minilm, "bottle"))  # deterministic


def test_minilm_anchors_follow_the_class_and_the_state(minilm):
    bottle, carpet = text_anchors(minilm, "bottle"), text_anchors(minilm, "carpet")
    assert float(bottle[1] @ carpet[1]) < 0.99
    damaged = minilm.embed(["a damaged bottle"])[0]
    assert float(damaged @ bottle[1]) > float(damaged @ bottle[0])  # closer to "abnormal"


def test_minilm_mean_pooling_ignores_padding(minilm):
    alone = minilm.embed(["a bottle"])
    padded = minilm.embed(["a bottle", "a much longer sentence about a bottle on the line"])[:1]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_cache_computes_once_per_class_and_evicts_the_oldest():
    embedder = HashEmbedder()
    cache = TextAnchorCache(embedder, max_entries=2)
    first = cache.get("bottle")
    assert cache.get("bottle") is first
    assert embedder.calls == 1
    cache.get("screw")
    cache.get("bottle")  # refresh: "screw" is now the oldest
    cache.get("carpet")
    assert "bottle" in cache
    assert "carpet" in cache
    assert "screw" not in cache
    assert len(cache) == 2
    assert embedder.calls == 3


def test_cache_size_must_be_positive():
    with pytest.raises(ModelError, match="max_entries must be >= 1, got 0"):
        TextAnchorCache(HashEmbedder(), max_entries=0)
