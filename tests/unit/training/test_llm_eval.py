"""training/llm_eval.py: the LLM figures of `linesight eval --llm`, with a real (tiny) AnomalyGPT stack.

The tiny random LLM's generate() is replaced by a fixed answer so the arithmetic can be checked
exactly: everything else (E_img, E_prompt, the embedded input, parsing, agreement) is the real code.
"""

from __future__ import annotations

import json

import pytest

from model.anomalygpt import AnomalyGPT
from model.detector import Detector
from model.fewshot import build_bank
from model.prompt_learner import PromptLearner
from tests.unit.model.test_llm import tiny_llm
from training.datasets import export_synthetic_dataset, load_dataset
from training.evaluate import EvalConfig, draw_references, evaluate
from training.llm_eval import balanced_subset, evaluate_llm, llm_report
from training.report import write_report

NO = "No, there is no anomaly in the image."
YES = "Yes, there is an anomaly in the image, at the center of the image."


@pytest.fixture(scope="module")
def encoder():
    from model.encoders.efficientnet import EfficientNetLiteEncoder

    return EfficientNetLiteEncoder(pretrained=True, image_size_px=128).eval()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = export_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), ["washer"], n_train=2, n_test=8, seed=0)
    return load_dataset(root)


def _gpt(encoder, answer: str) -> AnomalyGPT:
    llm = tiny_llm()
    llm.generate = lambda inputs_embeds, max_new_tokens=48, **options: answer  # the fixed answer; the input is still built
    return AnomalyGPT(llm, PromptLearner(llm.hidden_size, encoder.global_dim).eval())


def _detector_says_normal(dataset, encoder, count: int) -> float:
    data = dataset.classes["washer"]
    bank = build_bank(encoder, [data.train[i].load_image(128) for i in draw_references(data, 1, 0)], "washer", 1,
                      rotations=True, seed=0)
    picked = [data.test[i].load_image(128) for i in balanced_subset(data.test, count)]
    return sum(not f.is_anomalous for f in Detector(encoder).score_batch(picked, bank)) / len(picked)


@pytest.mark.parametrize("answer", [NO, YES])
def test_accuracy_and_agreement_are_counted_against_truth_and_detector(dataset, encoder, answer):
    scores = evaluate_llm(dataset, encoder, _gpt(encoder, answer), shots=1, images_per_class=6, progress=False)
    (score,) = scores
    assert score.images == 6
    assert score.undecided == 0.0
    assert score.accuracy == pytest.approx(0.5)  # the subset is balanced: a constant answer is right half the time
    normal_share = _detector_says_normal(dataset, encoder, 6)
    if answer == NO:
        assert score.agreement == pytest.approx(normal_share)
    else:  # "Yes ... at the center" agrees only with single-region frames flagged at the center
        assert score.agreement <= 1.0 - normal_share


def test_an_answer_without_a_decision_counts_as_wrong(dataset, encoder):
    (score,) = evaluate_llm(dataset, encoder, _gpt(encoder, "I am not sure."), images_per_class=4, progress=False)
    assert score.undecided == 1.0
    assert score.accuracy == 0.0
    assert score.agreement == 0.0


def test_the_report_carries_the_llm_figures(dataset, encoder, tmp_path):
    scores = evaluate_llm(dataset, encoder, _gpt(encoder, NO), images_per_class=2, progress=False)
    result = evaluate(dataset, encoder, EvalConfig(shots=(1,), seeds=1), progress=False)
    result.llm = llm_report(scores, 1)
    write_report(result, tmp_path)
    content = json.loads((tmp_path / "report.json").read_text())
    assert content["llm"]["macro"]["accuracy"] == pytest.approx(0.5)
    assert content["llm"]["classes"]["washer"]["images"] == 2
    assert "## LLM verdicts" in (tmp_path / "report.md").read_text()


def test_balanced_subset_alternates_and_stops_at_the_data(dataset):
    test = dataset.classes["washer"].test
    picked = balanced_subset(test, 100)
    assert sorted(picked) == list(range(len(test)))
    labels = [test[i].label for i in balanced_subset(test, 4)]
    assert labels == [0, 1, 0, 1]
