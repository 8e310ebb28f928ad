"""training/checkpoint.py: the checkpoint folder round trip and errors that name the bad file."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from model.decoder import TextAlignedDecoder
from model.prompt_learner import PromptLearner
from training.checkpoint import (
    CONFIG_FILE,
    DECODER_FILE,
    PROMPT_LEARNER_FILE,
    STATE_FILE,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    write_loss_curve,
)

CHANNELS = (4, 6, 8, 10)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trained_parts(seed: int = 0):
    """A decoder and prompt learner after two Adam steps, so that the optimizer has state."""
    torch.manual_seed(seed)
    decoder = TextAlignedDecoder(CHANNELS, text_dim=8, image_size_px=32)
    learner = PromptLearner(hidden_size=16, global_dim=10, channels=(2, 2, 2, 2, 4))
    optimizer = torch.optim.Adam([*decoder.parameters(), *learner.parameters()], lr=1e-3)
    for _ in range(2):
        features = [torch.randn(2, c, 4, 4) for c in CHANNELS]
        out = decoder(features, torch.randn(2, 8))
        tokens = learner(out.anomaly_map, torch.randn(2, 10))
        loss = out.anomaly_map.mean() + tokens.prompt_tokens.pow(2).mean() + tokens.image_tokens.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return decoder, learner, optimizer


def config(**overrides) -> dict:
    return {
        "encoder": "tiny", "image_size_px": 32, "text_embedder": {"name": "t", "dim": 8},
        "llm": {"name": "tiny", "hidden_size": 16}, "classes": ["washer"], "epoch": 1.0, "step": 2,
        "losses": {"total": 1.5}, "seed": 0, **overrides,
    }


@pytest.fixture
def saved(tmp_path: Path):
    decoder, learner, optimizer = trained_parts()
    history = torch.tensor([[1, 2.0, 0.5, 1.5, 0.0], [2, 1.8, 0.4, 1.4, 0.0]], dtype=torch.float64)
    folder = save_checkpoint(tmp_path / "ckpt", decoder=decoder, prompt_learner=learner, optimizer=optimizer,
                             step=2, config=config(), history=history)
    return folder, decoder, learner, optimizer, history


def test_round_trip_restores_weights_optimizer_state_step_and_history(saved):
    folder, decoder, learner, optimizer, history = saved
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, DECODER_FILE, PROMPT_LEARNER_FILE, STATE_FILE])
    checkpoint = load_checkpoint(folder)
    for original, loaded in ((decoder, checkpoint.decoder), (learner, checkpoint.prompt_learner)):
        for name, tensor in original.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor), name
    assert checkpoint.step == 2
    assert checkpoint.epoch == 1.0
    assert checkpoint.config["classes"] == ["washer"]
    assert torch.equal(checkpoint.history, history)

    _, fresh_learner, fresh = trained_parts(seed=1)  # other values, same shapes
    fresh.load_state_dict(checkpoint.optimizer_state)
    expected, got = optimizer.state_dict(), fresh.state_dict()
    assert got["param_groups"] == expected["param_groups"]
    for index, entry in expected["state"].items():
        for key, value in entry.items():
            assert torch.equal(torch.as_tensor(got["state"][index][key]), torch.as_tensor(value)), (index, key)


def test_saving_again_replaces_the_folder_and_weights_only_loading_skips_the_state(saved):
    folder, decoder, learner, optimizer, _ = saved
    with torch.no_grad():
        decoder.projections[0].weight.add_(1.0)
    save_checkpoint(folder, decoder=decoder, prompt_learner=learner, optimizer=optimizer, step=3, config=config())
    (folder / STATE_FILE).unlink()
    checkpoint = load_checkpoint(folder, with_trainer_state=False)
    assert checkpoint.step == 3
    assert checkpoint.optimizer_state is None
    assert torch.equal(checkpoint.decoder.projections[0].weight, decoder.projections[0].weight)
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []  # no staging left


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / CONFIG_FILE).unlink(), "config.json' is missing"),
        (lambda f: (f / CONFIG_FILE).write_text("{not json"), "config.json' is not readable JSON"),
        (lambda f: (f / CONFIG_FILE).write_text(json.dumps({"encoder": "x"})), "lacks the key"),
        (lambda f: (f / DECODER_FILE).unlink(), "decoder.safetensors' is missing"),
        (lambda f: (f / DECODER_FILE).write_bytes(b"garbage" * 10), "decoder.safetensors is not a readable"),
        (lambda f: (f / PROMPT_LEARNER_FILE).unlink(), "prompt_learner.safetensors' is missing"),
        (lambda f: (f / STATE_FILE).unlink(), "trainer_state.safetensors' is missing"),
        (lambda f: (f / STATE_FILE).write_bytes(b"\x00" * 16), "trainer_state.safetensors' is not a readable"),
        (lambda f: (f / DECODER_FILE).write_bytes((f / PROMPT_LEARNER_FILE).read_bytes()), "expected 'linesight.text"),
    ],
)
def test_a_bad_file_is_named(saved, damage, message):
    folder = saved[0]
    damage(folder)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder)


def test_missing_folder_wrong_version_and_encoder_mismatch(saved, tmp_path: Path):
    with pytest.raises(CheckpointError, match="nowhere' does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    folder = saved[0]
    fits = SimpleNamespace(name="tiny", stage_channels=CHANNELS, image_size_px=32)
    assert load_checkpoint(folder, fits).decoder.stage_channels == CHANNELS
    with pytest.raises(CheckpointError, match=r"trained for encoder 'tiny'.*'efficientnet-lite0'"):
        load_checkpoint(folder, SimpleNamespace(name="efficientnet-lite0", stage_channels=CHANNELS, image_size_px=32))
    with pytest.raises(CheckpointError, match="64 px"):
        load_checkpoint(folder, SimpleNamespace(name="tiny", stage_channels=CHANNELS, image_size_px=64))
    content = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**content, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99"):
        load_checkpoint(folder)


def test_save_refuses_a_foreign_folder_and_an_incomplete_config(tmp_path: Path):
    decoder, learner, optimizer = trained_parts()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "keep.png").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        save_checkpoint(foreign, decoder=decoder, prompt_learner=learner, optimizer=optimizer, step=1, config=config())
    assert (foreign / "keep.png").exists()
    incomplete = {k: v for k, v in config().items() if k != "classes"}
    with pytest.raises(CheckpointError, match="classes"):
        save_checkpoint(tmp_path / "c", decoder=decoder, prompt_learner=None, optimizer=optimizer, step=1,
                        config=incomplete)


def test_loss_curve_png(tmp_path: Path):
    history = torch.tensor([[s, 3.0 / s, 1.0 / s, 2.0 / s, 0.5] for s in range(1, 6)], dtype=torch.float64)
    path = write_loss_curve(history, tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
