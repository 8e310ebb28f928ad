"""The evaluation protocol end to end on a tiny synthetic dataset, the report files and the eval command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from linesight.errors import ConfigError
from training.datasets import export_synthetic_dataset, load_dataset
from training.evaluate import NO_DECODER_REASON, EvalConfig, draw_references, evaluate
from training.exceptions import DatasetError
from training.metrics import COUNT_NAMES, METRIC_NAMES


@pytest.fixture(scope="module")
def encoder():
    from model.encoders.efficientnet import EfficientNetLiteEncoder

    return EfficientNetLiteEncoder(pretrained=True, image_size_px=128).eval()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = export_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), ["washer"], n_train=3, n_test=6, seed=0)
    return load_dataset(root)


@pytest.fixture(scope="module")
def result(dataset, encoder):
    config = EvalConfig(shots=(1,), seeds=2, modes=("few_shot", "zero_shot"), examples_per_kind=1)
    return evaluate(dataset, encoder, config, progress=False)


def test_few_shot_end_to_end_gives_metrics_per_draw(result, dataset):
    assert [(d.product_class, d.mode, d.shots, d.seed) for d in result.draws] == [
        ("washer", "few_shot", 1, 0),
        ("washer", "few_shot", 1, 1),
    ]
    train_paths = {str(s.path) for s in dataset.classes["washer"].train}
    for draw in result.draws:
        assert len(draw.references) == 1
        assert set(draw.references) <= train_paths
        for name in METRIC_NAMES:
            value = getattr(draw.metrics, name)
            if name in COUNT_NAMES:  # confusion counts add up to the test images
                assert value >= 0, (name, value)
                assert value == int(value), (name, value)
            elif not np.isnan(value):  # precision is undefined when nothing is flagged
                assert 0.0 <= value <= 1.0, (name, value)
        counts = [getattr(draw.metrics, n) for n in COUNT_NAMES]
        assert sum(counts) == len(dataset.classes["washer"].test)
    summary = result.summary("washer", "few_shot", 1)
    assert summary.draws == 2
    assert summary.mean.image_auroc == pytest.approx(np.mean([d.metrics.image_auroc for d in result.draws]))
    macro = result.macro("few_shot", 1)
    assert macro.mean.accuracy == pytest.approx(summary.mean.accuracy)  # one class: macro = the class


def test_modes_needing_a_decoder_are_skipped_with_a_reason(result):
    assert result.skipped == {"zero_shot": NO_DECODER_REASON}
    assert result.settings() == [("few_shot", 1)]
    assert "random" in NO_DECODER_REASON


def test_examples_and_curves_are_kept_for_the_report(result):
    assert ("washer", "few_shot", 1) in result.curves
    assert result.curves[("washer", "few_shot", 1)].labels.tolist().count(1) == 3
    assert 1 <= len(result.examples) <= 2
    example = result.examples[0]
    assert example.image.shape == (128, 128, 3)
    assert example.anomaly_map.shape == (128, 128)


def test_report_writes_json_markdown_plots_and_overlays(result, tmp_path):
    from training.report import write_report

    written = write_report(result, tmp_path / "report")
    content = json.loads((tmp_path / "report" / "report.json").read_text())
    assert set(METRIC_NAMES) <= set(content["macro"])
    assert content["macro"]["mode"] == "few_shot"
    assert content["macro"]["shots"] == 1
    assert content["macro"]["image_auroc"] == pytest.approx(result.macro("few_shot", 1).mean.image_auroc, abs=1e-6)
    assert set(content["classes"]["washer"]["few_shot"]["1"]["mean"]) == set(METRIC_NAMES)
    assert content["skipped"] == {"zero_shot": NO_DECODER_REASON}
    markdown = written["markdown"][0].read_text()
    assert "theirs" in markdown
    assert "94.1" in markdown
    assert "skipped" in markdown
    for path in written["roc"] + written["examples"]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written["roc"]
    assert written["examples"]


def test_class_without_masks_gets_image_level_metrics_only(dataset, encoder, tmp_path):
    import shutil

    root = tmp_path / "nomasks"
    shutil.copytree(dataset.root, root)
    shutil.rmtree(root / "washer" / "ground_truth")
    data = load_dataset(root, layout="folder")
    out = evaluate(data, encoder, EvalConfig(shots=(1,), seeds=1, max_test_images=4), progress=False)
    metrics = out.draws[0].metrics
    assert math.isnan(metrics.pixel_auroc)
    assert math.isnan(metrics.aupro)
    assert not math.isnan(metrics.accuracy)


def test_zero_shot_and_fused_use_the_given_decoder_maps(dataset, encoder):
    def maps(images, product_class):  # a stand-in decoder: "abnormal" everywhere the image is bright
        return np.stack([img.mean(axis=2) / 255.0 for img in images]).astype(np.float32)

    config = EvalConfig(shots=(1,), seeds=1, modes=("zero_shot", "fused"), max_test_images=4)
    out = evaluate(dataset, encoder, config, zero_shot_maps=maps, progress=False)
    assert out.skipped == {}
    assert out.settings() == [("zero_shot", 1), ("fused", 1)]


def test_draw_references_is_seeded_and_checks_the_shot_count(dataset):
    washer = dataset.classes["washer"]
    assert draw_references(washer, 2, 5) == draw_references(washer, 2, 5)
    assert len({tuple(draw_references(washer, 1, seed)) for seed in range(10)}) > 1
    with pytest.raises(DatasetError, match="fewer than 4 shots"):
        draw_references(washer, 4, 0)


def test_config_validation_names_the_value():
    with pytest.raises(ConfigError, match="'psychic'"):
        EvalConfig(modes=("psychic",))
    with pytest.raises(ConfigError, match=r"\[0\]"):
        EvalConfig(shots=(0,))


def test_eval_command_rejects_bad_arguments(tmp_path: Path, capsys):
    from linesight.cli import main

    assert main(["eval", "--data", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["eval", "--synthetic", "--modes", "psychic"]) == 2
    assert "'psychic'" in capsys.readouterr().err
    assert main(["eval"]) == 2
    assert main(["eval", "--data", str(tmp_path), "--layout", "folder"]) == 2
    assert "no product class" in capsys.readouterr().err
    assert main(["eval", "--realistic", "--part-variation-px", "80"]) == 2
    assert "--part-variation-px must be in [0, 50] pixels, got 80.0" in capsys.readouterr().err
    assert main(["eval", "--synthetic", "--part-variation-px", "2"]) == 2
    assert "only applies to --realistic" in capsys.readouterr().err


def test_decoder_checkpoint_gives_zero_shot_maps_and_a_mismatch_is_named(encoder, tmp_path):
    from model.decoder import TextAlignedDecoder, save_decoder
    from training.evaluate import decoder_maps_from_checkpoint

    path = tmp_path / "decoder.safetensors"
    save_decoder(TextAlignedDecoder(encoder.stage_channels, 384, image_size_px=encoder.image_size_px), path)
    maps = decoder_maps_from_checkpoint(path, encoder)
    out = maps([np.zeros((128, 128, 3), np.uint8)] * 2, "washer")
    assert out.shape == (2, 128, 128)
    assert float(out.min()) >= 0.0
    assert float(out.max()) <= 1.0
    wrong = tmp_path / "wrong.safetensors"
    save_decoder(TextAlignedDecoder(encoder.stage_channels, 384, image_size_px=224), wrong)
    with pytest.raises(ConfigError, match="224 px"):
        decoder_maps_from_checkpoint(wrong, encoder)


def test_draws_do_not_share_references_while_there_are_enough(dataset):
    washer = dataset.classes["washer"]  # 3 training images
    singles = [draw_references(washer, 1, seed)[0] for seed in range(3)]
    assert sorted(singles) == [0, 1, 2]


def test_eval_llm_finds_the_prompt_learner_beside_a_decoder_file_or_in_a_named_folder(tmp_path):
    from linesight.commands.eval import checkpoint_folder

    folder = tmp_path / "ckpt"
    folder.mkdir()
    assert checkpoint_folder(folder) == folder  # train prints the folder form
    assert checkpoint_folder(folder / "decoder.safetensors") == folder
