"""model/prompt_learner.py: E_base, E_dec (224 px -> 3x3 = 9 tokens), E_prompt (18), E_img (1), weight files."""

from __future__ import annotations

import pytest
import torch

from model.exceptions import ModelError, ShapeError
from model.prompt_learner import PromptLearner, load_prompt_learner, prompt_map, save_prompt_learner

HIDDEN, GLOBAL = 32, 24


@pytest.fixture(scope="module")
def learner() -> PromptLearner:
    torch.manual_seed(0)
    return PromptLearner(hidden_size=HIDDEN, global_dim=GLOBAL)  # docs/method.md channel widths


def test_reference_shapes(learner):
    maps, vectors = torch.rand(2, 224, 224), torch.randn(2, GLOBAL)
    with torch.no_grad():
        out = learner(maps, vectors)
    assert tuple(out.image_tokens.shape) == (2, 1, HIDDEN)  # E_img: 1 token
    assert tuple(out.prompt_tokens.shape) == (2, 18, HIDDEN)  # E_prompt = [E_base; E_dec]
    assert learner.prompt_length == 18
    with torch.no_grad():
        assert tuple(learner.decoder_tokens(maps).shape) == (2, 9, HIDDEN)  # E_dec from a 224 map


def test_conv_stack_halves_224_to_7_then_5x5_gives_3x3(learner):
    shapes = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: shapes.append(tuple(o.shape)))
        for m in learner.map_net
        if isinstance(m, torch.nn.MaxPool2d | torch.nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            learner.decoder_tokens(torch.rand(1, 1, 224, 224))
    finally:
        for hook in hooks:
            hook.remove()
    pooled = shapes[1:-1:2]  # after each maxpool
    assert pooled == [(1, 4, 112, 112), (1, 16, 56, 56), (1, 64, 28, 28), (1, 256, 14, 14), (1, 1024, 7, 7)]
    assert shapes[-1] == (1, HIDDEN, 3, 3)
    assert learner.map_net[-1].kernel_size == (5, 5)
    assert learner.map_net[-1].padding == (0, 0)


def test_prompt_is_base_then_decoder_tokens_row_major(learner):
    maps = torch.rand(2, 224, 224)
    with torch.no_grad():
        out = learner(maps, torch.randn(2, GLOBAL))
        grid = learner.map_net(maps.unsqueeze(1))  # (B, D, 3, 3)
    assert torch.equal(out.prompt_tokens[0, :9], learner.base_prompts)
    assert torch.equal(out.prompt_tokens[1, :9], learner.base_prompts)  # E_base shared by the batch
    assert torch.allclose(out.prompt_tokens[:, 9 + 3 * 1 + 2], grid[:, :, 1, 2])  # token (row 1, col 2)
    assert not torch.allclose(out.prompt_tokens[0, 9:], out.prompt_tokens[1, 9:])  # E_dec follows M


def test_image_token_is_a_linear_map_of_the_global_vector(learner):
    vectors = torch.randn(3, GLOBAL)
    with torch.no_grad():
        tokens = learner.image_tokens(vectors)
    expected = vectors @ learner.image_projection.weight.T + learner.image_projection.bias
    assert torch.allclose(tokens[:, 0], expected, atol=1e-5)


def test_maps_of_other_sizes_still_give_nine_tokens():
    small = PromptLearner(HIDDEN, GLOBAL, channels=(2, 2, 4, 4, 8))
    with torch.no_grad():
        assert tuple(small.decoder_tokens(torch.rand(1, 1, 256, 256)).shape) == (1, 9, HIDDEN)
        assert tuple(small.decoder_tokens(torch.rand(2, 64, 64)).shape) == (2, 9, HIDDEN)


def test_everything_trains():
    small = PromptLearner(HIDDEN, GLOBAL, channels=(2, 2, 4, 4, 8))
    out = small(torch.rand(2, 224, 224), torch.randn(2, GLOBAL))
    (out.prompt_tokens.square().mean() + out.image_tokens.square().mean()).backward()
    assert all(p.grad is not None for p in small.parameters())


def test_bad_inputs_are_named(learner):
    with pytest.raises(ShapeError, match=r"\(B, 24\), got \(2, 7\)"):
        learner.image_tokens(torch.randn(2, 7))
    with pytest.raises(ShapeError, match=r"got \(2, 3, 224, 224\)"):
        learner.decoder_tokens(torch.rand(2, 3, 224, 224))
    with pytest.raises(ShapeError, match="batch mismatch"):
        learner(torch.rand(2, 224, 224), torch.randn(3, GLOBAL))
    with pytest.raises(ShapeError, match="need 5 conv widths"):
        PromptLearner(HIDDEN, GLOBAL, channels=(4, 16, 64, 256))


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    small = PromptLearner(HIDDEN, GLOBAL, channels=(2, 2, 4, 4, 8))
    path = tmp_path / "learner.safetensors"
    save_prompt_learner(small, path)
    loaded = load_prompt_learner(path)
    assert loaded.config() == small.config()
    maps, vectors = torch.rand(1, 224, 224), torch.randn(1, GLOBAL)
    with torch.no_grad():
        assert torch.equal(loaded(maps, vectors).prompt_tokens, small(maps, vectors).prompt_tokens)
    other = PromptLearner(HIDDEN + 8, GLOBAL, channels=(2, 2, 4, 4, 8))
    with pytest.raises(
        ModelError, match=r"'base_prompts' has shape \(9, 32\) but the model expects \(9, 40\)"
    ):
        load_prompt_learner(path, other)


def test_prompt_map_puts_the_threshold_at_one_half_for_any_scale():
    import numpy as np

    for threshold in (0.2, 0.43):  # two classes' calibrated thresholds: the same picture in threshold units
        raw = np.array([[0.0, threshold / 2, threshold, 2 * threshold, 3 * threshold]], np.float32)
        assert prompt_map(raw, threshold)[0].tolist() == pytest.approx([0.0, 0.25, 0.5, 1.0, 1.0])
    decoder_map = torch.rand(2, 8, 8)  # the decoder's softmax: threshold 0.5 leaves it unchanged
    assert torch.allclose(prompt_map(decoder_map, 0.5), decoder_map)
    assert torch.equal(prompt_map(torch.tensor([1.5, -0.1]), None), torch.tensor([1.0, 0.0]))


@pytest.mark.parametrize("threshold", [0.0, -0.3, float("nan")])
def test_prompt_map_refuses_a_threshold_that_is_not_positive(threshold):
    with pytest.raises(ModelError, match="threshold"):
        prompt_map(torch.zeros(4, 4), threshold)
