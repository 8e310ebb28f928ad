"""Inference actor options on a real local Ray: the options Ray accepts, placement groups that fit or are
refused with a clear error, and (only with a GPU) an actor that gets its GPU share and runs torch on it."""

from __future__ import annotations

import pytest

from linesight.errors import ConfigError
from pipeline.stream.placement import (
    create_placement_group,
    inference_actor_options,
    inference_placement,
)

pytestmark = pytest.mark.integration


class _Probe:
    def where(self) -> dict:
        import ray

        context = ray.get_runtime_context()
        return {"node": context.get_node_id(), "gpus": ray.get_gpu_ids()}

    def cuda_sum(self) -> float:
        import torch

        return float(torch.ones(4, device="cuda").sum().item())


def _start(plan, group=None) -> list:
    import ray

    probe = ray.remote(_Probe)
    actors = [probe.options(**inference_actor_options(plan, i, group)).remote() for i in range(plan.actors)]
    return actors


def test_spread_and_pack_options_place_actors(ray_session):
    import ray
    from ray.util import remove_placement_group

    spread = inference_placement("cpu", actors=2, num_cpus=0.25, num_gpus=0, strategy="SPREAD")
    actors = _start(spread)
    assert len({r["node"] for r in ray.get([a.where.remote() for a in actors], timeout=60)}) == 1  # one node here
    for actor in actors:
        ray.kill(actor)
    pack = inference_placement("cpu", actors=2, num_cpus=0.25, num_gpus=0, strategy="PACK")
    group = create_placement_group(pack, timeout_s=60)
    try:
        actors = _start(pack, group)
        assert all(r["gpus"] == [] for r in ray.get([a.where.remote() for a in actors], timeout=60))
        for actor in actors:
            ray.kill(actor)
    finally:
        remove_placement_group(group)


def test_strict_spread_beyond_the_nodes_is_refused_with_the_reason(ray_session):
    plan = inference_placement("cpu", actors=2, num_cpus=0.25, num_gpus=0, strategy="STRICT_SPREAD")
    with pytest.raises(ConfigError, match="cannot place 2 inference actors .*'STRICT_SPREAD'"):
        create_placement_group(plan, timeout_s=3)


def test_cuda_actor_gets_its_gpu_share(ray_session):
    import ray
    import torch

    if not torch.cuda.is_available() or not ray.cluster_resources().get("GPU"):
        pytest.skip("no GPU on this machine (torch.cuda / Ray see none)")
    plan = inference_placement("auto", actors=2, num_cpus=0.25, num_gpus=0.5, strategy="SPREAD",
                               cluster_gpus=ray.cluster_resources().get("GPU", 0))
    assert plan.device == "cuda"
    actors = _start(plan)
    places = ray.get([a.where.remote() for a in actors], timeout=120)
    assert all(len(p["gpus"]) == 1 for p in places)
    assert ray.get(actors[0].cuda_sum.remote(), timeout=120) == 4.0
