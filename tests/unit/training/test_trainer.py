"""training/trainer.py with tiny random parts: a 32 px CLIP (vision + text tower) and a 2-layer Llama."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from linesight.errors import ConfigError
from model.prompt_learner import PromptLearner
from tests.unit.model.test_clip import save_tiny_clip
from tests.unit.model.test_llm import tiny_llm
from training.checkpoint import CheckpointError, load_checkpoint
from training.trainer import TrainConfig, Trainer, synthetic_training_images

SIZE_PX = 32

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from model.encoders.clip import ClipVisionEncoder

    return ClipVisionEncoder(save_tiny_clip(tmp_path_factory.mktemp("clip")), image_size_px=SIZE_PX)


@pytest.fixture(scope="module")
def llm():
    return tiny_llm()


@pytest.fixture(scope="module")
def images():
    return synthetic_training_images(["gravel", "brick"], images_per_class=3, image_size_px=SIZE_PX)


def make_trainer(encoder, llm, images, **overrides) -> Trainer:
    config = TrainConfig(**{"epochs": 2, "batch_size": 2, "image_size_px": SIZE_PX, **overrides})
    torch.manual_seed(1)
    learner = PromptLearner(llm.hidden_size, encoder.global_dim, channels=(4, 4, 8, 8, 8)) if config.answer_loss else None
    return Trainer(config, encoder, encoder.text_embedder, images, llm if config.answer_loss else None,
                   prompt_learner=learner, progress=False)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def test_loss_decreases_over_a_few_steps_on_a_fixed_batch(encoder, llm, images):
    trainer = make_trainer(encoder, llm, images, lr=1e-2)
    batch = trainer.batch(0, 0)
    assert len(batch.classes) == 4
    assert batch.answers[0].startswith("No")
    assert batch.answers[2].startswith("Yes")
    assert float(batch.masks[:2].sum()) == 0.0
    assert float(batch.masks[2:].sum()) > 0
    losses = [trainer.train_step(batch) for _ in range(8)]
    assert float(losses[-1].total.detach()) < float(losses[0].total.detach())
    assert float(losses[-1].answer) < float(losses[0].answer)
    assert float(losses[-1].focal) < float(losses[0].focal)


def test_only_decoder_prompt_learner_and_e_img_change(encoder, llm, images):
    trainer = make_trainer(encoder, llm, images)
    frozen = {"encoder": snapshot(encoder), "llm": snapshot(llm)}
    before = {"decoder": snapshot(trainer.decoder), "prompt_learner": snapshot(trainer.prompt_learner)}
    for index in range(2):
        trainer.train_step(trainer.batch(0, index))
    for part, module in (("encoder", encoder), ("llm", llm)):
        after = module.state_dict()
        assert all(torch.equal(after[name], tensor) for name, tensor in frozen[part].items()), part
        assert not any(p.requires_grad for p in module.parameters()), part
    for part, module in (("decoder", trainer.decoder), ("prompt_learner", trainer.prompt_learner)):
        after = module.state_dict()
        unchanged = [name for name, tensor in before[part].items() if torch.equal(after[name], tensor)]
        assert unchanged == [], (part, unchanged)
    assert "image_projection.weight" in before["prompt_learner"]  # E_img is among the changed tensors


def test_batches_are_a_function_of_seed_epoch_and_index(encoder, llm, images):
    first = make_trainer(encoder, llm, images).batch(1, 1)
    again = make_trainer(encoder, llm, images).batch(1, 1)
    other = make_trainer(encoder, llm, images, seed=5).batch(1, 1)
    assert all((a == b).all() for a, b in zip(first.anomalies, again.anomalies, strict=True))
    assert torch.equal(first.masks, again.masks)
    assert first.normal_keys != other.normal_keys or not torch.equal(first.masks, other.masks)


def test_resumed_run_equals_an_uninterrupted_one(encoder, llm, images, tmp_path: Path):
    whole = make_trainer(encoder, llm, images)
    result = whole.fit(tmp_path / "whole")
    assert result.steps == whole.total_steps == 6  # 6 pairs / 2 per step * 2 epochs

    make_trainer(encoder, llm, images, max_steps=4).fit(tmp_path / "split")  # stops mid-epoch 2
    assert load_checkpoint(tmp_path / "split").step == 4
    resumed = make_trainer(encoder, llm, images)
    assert resumed.fit(tmp_path / "split", resume=True).steps == 6

    for part in ("decoder", "prompt_learner"):
        expected, got = getattr(whole, part).state_dict(), getattr(resumed, part).state_dict()
        for name, tensor in expected.items():
            assert torch.equal(got[name], tensor), (part, name)
    expected_state, got_state = whole.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for index, entry in expected_state.items():
        for key, value in entry.items():
            assert torch.equal(torch.as_tensor(got_state[index][key]), torch.as_tensor(value)), (index, key)
    assert resumed.history == whole.history
    saved = load_checkpoint(tmp_path / "split")
    assert saved.step == 6
    assert saved.history.shape == (6, 5)
    assert (tmp_path / "split" / "loss_curve.png").stat().st_size > 1000


def test_decoder_only_run_writes_no_prompt_learner(encoder, images, tmp_path: Path):
    trainer = make_trainer(encoder, None, images, answer_loss=False, epochs=1)
    result = trainer.fit(tmp_path / "ckpt")
    assert result.final_losses["answer"] == 0.0
    assert not (tmp_path / "ckpt" / "prompt_learner.safetensors").exists()
    checkpoint = load_checkpoint(tmp_path / "ckpt", encoder)
    assert checkpoint.prompt_learner is None
    assert checkpoint.config["llm"] is None
    assert checkpoint.config["classes"] == ["gravel", "brick"]
    assert checkpoint.config["text_embedder"]["dim"] == encoder.text_embedder.dim
    assert torch.equal(checkpoint.decoder.projections[0].weight, trainer.decoder.projections[0].weight)


def test_fit_refuses_to_overwrite_and_resume_checks_the_config(encoder, images, tmp_path: Path):
    make_trainer(encoder, None, images, answer_loss=False, epochs=1).fit(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        make_trainer(encoder, None, images, answer_loss=False, epochs=1).fit(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="batch_size was 2, now 3"):
        make_trainer(encoder, None, images, answer_loss=False, batch_size=3).fit(tmp_path / "ckpt", resume=True)
    with pytest.raises(CheckpointError, match="does not exist"):
        make_trainer(encoder, None, images, answer_loss=False).fit(tmp_path / "missing", resume=True)


def test_bad_configuration_names_the_value(encoder, images):
    with pytest.raises(ConfigError, match="batch_size.*0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="'psychic'"):
        TrainConfig(nsa_method="psychic")
    with pytest.raises(ConfigError, match="needs an LLM"):
        Trainer(TrainConfig(image_size_px=SIZE_PX), encoder, encoder.text_embedder, images, None)
    with pytest.raises(ConfigError, match="224"):
        Trainer(TrainConfig(answer_loss=False), encoder, encoder.text_embedder, images, None)
    with pytest.raises(ConfigError, match="at least 2"):
        Trainer(TrainConfig(image_size_px=SIZE_PX, answer_loss=False), encoder, encoder.text_embedder,
                {"gravel": images["gravel"][:1]}, None)


def test_train_command_help_defaults_match_the_config_and_bad_values_are_named(tmp_path: Path, capsys):
    from dataclasses import asdict

    from linesight.cli import main
    from linesight.commands.train import HELP_DEFAULTS

    assert {k: asdict(TrainConfig())[k] for k in HELP_DEFAULTS} == HELP_DEFAULTS
    assert main(["train", "--data", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "--synthetic" in capsys.readouterr().err
    assert main(["train", "--synthetic", "--resume", "--out", str(tmp_path / "empty")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["train", "--synthetic", "--images-per-class", "1"]) == 2
    assert ">= 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--synthetic", "--epochs", "0"])
    assert "0" in capsys.readouterr().err


def test_train_command_trains_with_the_measured_recipe_unless_paper_or_an_option_says_otherwise():
    from dataclasses import asdict

    from linesight.cli import build_parser
    from linesight.commands.train import RECIPE, train_config

    def config(*argv: str) -> dict:
        return asdict(train_config(build_parser().parse_args(["train", "--synthetic", *argv]), SIZE_PX))

    assert {k: config()[k] for k in RECIPE} == RECIPE
    paper = asdict(TrainConfig(image_size_px=SIZE_PX))
    assert {k: config("--paper")[k] for k in RECIPE} == {k: paper[k] for k in RECIPE}
    assert config("--no-skip-unseen", "--epochs", "2")["skip_unseen"] is False
    assert config("--no-skip-unseen", "--epochs", "2")["epochs"] == 2
    assert config("--paper", "--with-description")["with_description"] is True


def test_train_command_writes_and_resumes_a_decoder_only_checkpoint(tmp_path: Path, monkeypatch, capsys):
    from linesight.cli import main

    monkeypatch.setenv("LINESIGHT_IMAGE_SIZE_PX", "64")
    out = tmp_path / "ckpt"
    common = ["train", "--synthetic", "--classes", "washer", "--images-per-class", "2", "--batch-size", "1",
              "--no-llm", "--no-progress", "--out", str(out)]
    assert main([*common, "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"checkpoint: {out} (step 2, epoch 1.00)" in printed
    assert "final losses" in printed
    assert main([*common, "--epochs", "2", "--resume"]) == 0
    assert "(step 4, epoch 2.00)" in capsys.readouterr().out
    checkpoint = load_checkpoint(out)
    assert checkpoint.config["encoder"] == "efficientnet-lite0"
    assert checkpoint.decoder.image_size_px == 64
    assert checkpoint.history.shape == (4, 5)
    assert main([*common, "--epochs", "1"]) == 2  # no silent overwrite
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_few_shot_prompt_maps_score_each_pair_against_a_bank_without_its_image(encoder, llm, images):
    trainer = make_trainer(encoder, llm, images)
    maps = trainer.prompt_maps
    assert maps is not None
    assert set(maps.banks) == {"gravel", "brick"}
    assert all(t > 0 for name in maps.banks for t in maps.thresholds(name))
    for epoch in range(2):
        for index in range(trainer.steps_per_epoch):
            batch = trainer.batch(epoch, index)
            for (name, image), draw in zip(batch.normal_keys, batch.draws, strict=True):
                assert image not in maps.subsets[name][maps.pick(name, image, draw)]
    batch = trainer.batch(0, 0)
    trainer._build_cache()
    features, _ = trainer._features(batch)
    out = trainer._prompt_maps(batch, features, None)
    assert out.shape == (4, SIZE_PX, SIZE_PX)
    assert 0.0 <= float(out.min()) <= float(out.max()) <= 1.0
    decoder_maps = make_trainer(encoder, llm, images, prompt_map="decoder")
    assert decoder_maps.prompt_maps is None  # the paper's training: the decoder's map


def test_decision_weight_adds_the_first_token_loss_to_the_total(encoder, llm, images):
    plain = make_trainer(encoder, llm, images).train_step(make_trainer(encoder, llm, images).batch(0, 0))
    plain = plain._replace(total=plain.total.detach())
    assert float(plain.total) == pytest.approx(float(plain.focal + plain.dice + plain.answer), rel=1e-5)
    trainer = make_trainer(encoder, llm, images, decision_weight=3.0, log_every=1)
    weighted = trainer.train_step(trainer.batch(0, 0))
    weighted = weighted._replace(total=weighted.total.detach())
    (decision, accuracy, exact), = trainer._recent
    assert decision > 0
    assert 0.0 <= accuracy <= 1.0
    assert 0.0 <= exact <= 1.0
    assert float(weighted.total) == pytest.approx(float(weighted.focal + weighted.dice + weighted.answer) + 3 * decision,
                                                  rel=1e-4)


def test_periodic_checkpoints_and_progress_lines(encoder, llm, images, tmp_path: Path, caplog):
    trainer = make_trainer(encoder, llm, images, checkpoint_every=2, log_every=2)
    saved, save = [], trainer.save
    trainer.save = lambda out: (saved.append(trainer.step), save(out))[1]
    with caplog.at_level("INFO", logger="training.trainer"):
        trainer.fit(tmp_path / "ckpt")
    assert saved == [2, 3, 4, 6]  # every 2 steps, at each epoch's end (3 steps) and at the end
    lines = [r.getMessage() for r in caplog.records if "s/step" in r.getMessage()]
    assert len(lines) == 3
    assert "step 2/6" in lines[0]
    assert "decision_acc" in lines[0]


def test_a_checkpoint_from_before_prompt_maps_resumes_as_decoder_maps(encoder, llm, images, tmp_path: Path):
    import json

    out = tmp_path / "old"
    make_trainer(encoder, llm, images, prompt_map="decoder", max_steps=2).fit(out)
    config = json.loads((out / "config.json").read_text())
    for key in ("prompt_map", "bank_shots", "banks_per_class"):
        del config["train_config"][key]  # as written before these options existed
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="prompt_map was 'decoder', now 'few_shot'"):
        make_trainer(encoder, llm, images, max_steps=3).fit(out, resume=True)
    assert make_trainer(encoder, llm, images, prompt_map="decoder", max_steps=3).fit(out, resume=True).steps == 3


def test_bad_prompt_map_options_are_named():
    with pytest.raises(ConfigError, match="'oracle'"):
        TrainConfig(prompt_map="oracle")
    with pytest.raises(ConfigError, match="bank_shots.*0"):
        TrainConfig(bank_shots=(1, 0))
    with pytest.raises(ConfigError, match="banks_per_class.*1"):
        TrainConfig(banks_per_class=1)
    with pytest.raises(ConfigError, match="decision_weight.*-1"):
        TrainConfig(decision_weight=-1.0)
    with pytest.raises(ConfigError, match="checkpoint_every.*0"):
        TrainConfig(checkpoint_every=0)


def test_a_mix_of_anomaly_methods_is_drawn_per_pair(encoder, llm, images):
    trainer = make_trainer(encoder, llm, images, nsa_method="nsa+stain", prompt_map="decoder")
    assert [s.method for s in trainer.simulators["gravel"]] == ["nsa", "stain"]
    again = make_trainer(encoder, llm, images, nsa_method="nsa+stain", prompt_map="decoder")
    for index in range(trainer.steps_per_epoch):
        assert torch.equal(trainer.batch(0, index).masks, again.batch(0, index).masks)  # seeded
    with pytest.raises(ConfigError, match="'glitter'"):
        TrainConfig(nsa_method="nsa+glitter")


def test_skip_unseen_trains_only_answers_the_map_can_support(encoder, llm, images):
    trainer = make_trainer(encoder, llm, images, skip_unseen=True, log_every=1)
    masks = torch.zeros(4, SIZE_PX, SIZE_PX)
    masks[2:, 4:12, 4:12] = 1  # images 2 and 3 are anomalies
    maps = torch.full((4, SIZE_PX, SIZE_PX), 0.2)
    maps[1, 20, 20] = 0.9  # a normal image the map flags: skipped
    maps[2, 6, 6] = 0.8  # an anomaly shown inside its mask: kept
    maps[3, 25, 25] = 0.9  # an anomaly shown only outside its mask: skipped
    assert trainer._answered(maps, masks) == [0, 2]
    assert trainer._skipped[-1] == pytest.approx(0.5)
    everything = make_trainer(encoder, llm, images)
    assert everything._answered(maps, masks) == [0, 1, 2, 3]
    batch = trainer.batch(0, 0)
    trainer.train_step(batch)  # a whole step with skipping runs (some or no answers left)
