"""Unit tests are fast; the few that are not are marked ``slow`` here, in one list.

``make test`` runs them all; ``make test-unit`` leaves the ``slow`` ones out (``-m "not slow"``).
The list holds the unit tests that took over 10 s (``pytest tests/unit --durations=30`` on a busy
2-core host, 2026-12-01): real weights, a packaged LLM, bank builds or CLI subprocesses. Tests that
need a service or a real LLM end to end belong in tests/integration instead.
"""

from __future__ import annotations

import pytest

SLOW_TESTS = (  # node id prefixes, relative to the repository root
    "tests/unit/model/test_anomalygpt.py::test_real_smollm2_verdicts",  # real SmolLM2 (also marked in place)
    "tests/unit/model/test_fewshot.py::test_calibrated_bank_from_shots",
    "tests/unit/model/test_fewshot.py::test_coreset_and_determinism",
    "tests/unit/model/test_fewshot.py::test_single_shot_uses_augmented_views",
    "tests/unit/training/test_llm_eval.py::test_accuracy_and_agreement_are_counted_against_truth_and_detector",
    "tests/unit/training/test_llm_eval.py::test_the_report_carries_the_llm_figures",
    "tests/unit/training/test_llm_eval.py::test_an_answer_without_a_decision_counts_as_wrong",
    "tests/unit/linesight/test_inspect_cli.py::test_inspect_with_the_active_bank_then_zero_shot_for_a_new_class",
    "tests/unit/linesight/test_inspect_cli.py::test_inspect_with_a_bank_file_needs_no_database",
    "tests/unit/linesight/test_inspect_cli.py::test_inspect_a_folder_writes_a_table_csv_json_and_overlays_elsewhere",
    "tests/unit/linesight/test_wiring.py::test_logs_are_quiet_by_default_and_verbose_on_request",  # CLI subprocesses
    "tests/unit/model/test_detector.py::test_mixed_batch_equals_per_class_batches",
    "tests/unit/training/test_evaluate.py::test_few_shot_end_to_end_gives_metrics_per_draw",
    "tests/unit/training/test_evaluate.py::test_zero_shot_and_fused_use_the_given_decoder_maps",
    "tests/unit/linesight/test_bench_capacity.py::test_a_worker_prints_frames_per_second_and_the_per_frame_costs",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of :data:`SLOW_TESTS` ``slow`` (parametrised ids match by prefix)."""
    for item in items:
        if item.nodeid.startswith(SLOW_TESTS):
            item.add_marker(pytest.mark.slow)
