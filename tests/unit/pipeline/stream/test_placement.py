"""Device resolution and Ray actor options of the inference actors (pure: no Ray, no GPU needed)."""

import pytest

from linesight.errors import ConfigError
from linesight.settings import load_settings
from pipeline.stream.placement import (
    check_ingest_loops,
    inference_actor_options,
    inference_placement,
    inference_placement_for,
    io_actor_options,
    resolve_device,
)


@pytest.mark.parametrize(
    ("setting", "cuda", "expected"),
    [("auto", False, "cpu"), ("auto", True, "cuda"), ("cpu", True, "cpu"), ("cpu", False, "cpu"),
     ("cuda", True, "cuda"), ("CUDA", True, "cuda")],
)
def test_resolve_device(setting, cuda, expected):
    assert resolve_device(setting, cuda_available=cuda) == expected


def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="LINESIGHT_DEVICE='cuda' but torch sees no GPU"):
        resolve_device("cuda", cuda_available=False)


def test_unknown_device_is_named():
    with pytest.raises(ConfigError, match="'tpu'"):
        resolve_device("tpu", cuda_available=False)


def test_auto_asks_torch():
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_device_setting_is_validated():
    assert load_settings(device="cpu").device == "cpu"
    with pytest.raises(ConfigError, match="device='gpu'"):
        load_settings(device="gpu")


def test_cpu_actors_request_no_gpu_and_spread():
    plan = inference_placement("cpu", actors=3, num_cpus=0.5, num_gpus=0.5, strategy="spread")
    assert plan.num_gpus == 0
    assert not plan.needs_placement_group
    assert [inference_actor_options(plan, i) for i in range(3)] == [
        {"num_cpus": 0.5, "num_gpus": 0, "scheduling_strategy": "SPREAD"}
    ] * 3


def test_cuda_actors_request_their_gpu_share():
    plan = inference_placement("cuda", actors=4, num_cpus=1, num_gpus=0.5, strategy="SPREAD", cluster_gpus=1)
    assert inference_actor_options(plan, 3) == {"num_cpus": 1, "num_gpus": 0.5, "scheduling_strategy": "SPREAD"}
    assert plan.bundles == [{"CPU": 1, "GPU": 0.5}] * 4


def test_default_strategy_leaves_scheduling_to_ray():
    plan = inference_placement("cpu", actors=1, num_cpus=1, num_gpus=1, strategy="DEFAULT")
    assert inference_actor_options(plan, 0) == {"num_cpus": 1, "num_gpus": 0}


def test_group_strategies_need_the_group():
    plan = inference_placement("cpu", actors=2, num_cpus=1, num_gpus=0, strategy="STRICT_SPREAD")
    assert plan.needs_placement_group
    assert plan.bundles == [{"CPU": 1}, {"CPU": 1}]
    with pytest.raises(ConfigError, match="create_placement_group"):
        inference_actor_options(plan, 0)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"actors": 0}, "inference_actors must be >= 1, got 0"),
        ({"num_cpus": 0}, "inference_cpus must be > 0, got 0"),
        ({"strategy": "RANDOM"}, "'RANDOM'"),
        ({"device": "cuda", "num_gpus": 0}, "inference_gpus must be > 0 on cuda"),
        ({"device": "cuda", "num_gpus": 1.5}, "whole number of GPUs, got 1.5"),
    ],
)
def test_bad_placement_names_the_value(kwargs, named):
    arguments = {"device": "cpu", "actors": 2, "num_cpus": 0.5, "num_gpus": 0.5, "strategy": "SPREAD",
                 "cluster_gpus": 1, **kwargs}
    device = arguments.pop("device")
    with pytest.raises(ConfigError, match=named):
        inference_placement(device, **arguments)


def test_actor_index_out_of_range_is_named():
    plan = inference_placement("cpu", actors=2, num_cpus=0.5, num_gpus=0, strategy="SPREAD")
    with pytest.raises(ConfigError, match="got 2"):
        inference_actor_options(plan, 2)


def test_cluster_gpus_decide_auto_on_a_cluster():
    assert inference_placement("auto", actors=2, num_cpus=1, num_gpus=0.5, cluster_gpus=2).num_gpus == 0.5
    assert inference_placement("auto", actors=2, num_cpus=1, num_gpus=0.5, cluster_gpus=0).device == "cpu"
    with pytest.raises(ConfigError, match="LINESIGHT_DEVICE='cuda' but the Ray cluster has no GPU"):
        inference_placement("cuda", actors=2, num_cpus=1, num_gpus=0.5, cluster_gpus=0)


def test_placement_from_settings():
    settings = load_settings(device="cpu", inference_actors=3, inference_cpus=0.25, placement_strategy="PACK")
    plan = inference_placement_for(settings)
    assert (plan.device, plan.actors, plan.num_cpus, plan.num_gpus, plan.strategy) == ("cpu", 3, 0.25, 0, "PACK")


def test_io_actors_never_take_a_gpu():
    assert io_actor_options(0.25) == {"num_cpus": 0.25, "num_gpus": 0}
    with pytest.raises(ConfigError, match="got 0"):
        io_actor_options(0)


def test_io_actors_spread_over_the_nodes_when_asked():
    assert io_actor_options(0.25, spread=True) == {"num_cpus": 0.25, "num_gpus": 0, "scheduling_strategy": "SPREAD"}


@pytest.mark.parametrize(("loops", "partitions"), [(0, 6), (7, 6), (2, 1)])
def test_ingest_loops_are_bounded_by_the_partitions(loops, partitions):
    with pytest.raises(ConfigError, match=rf"partitions \({partitions}, LINESIGHT_FRAMES_PARTITIONS\), got {loops}"):
        check_ingest_loops(loops, partitions)
    assert check_ingest_loops(partitions, partitions) == partitions


def test_a_pipeline_with_more_loops_than_partitions_is_refused_before_any_actor():
    from pipeline.stream.job import Pipeline

    with pytest.raises(ConfigError, match="got 5"):
        Pipeline(load_settings(frames_partitions=4), "127.0.0.1:9092", ingest_loops=5)
