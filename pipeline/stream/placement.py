"""Where the stream's actors run: the inference device and Ray resource requests / scheduling strategies.

- :func:`resolve_device`: ``LINESIGHT_DEVICE`` (auto|cpu|cuda) -> ``"cpu"`` or ``"cuda"``; ``cuda`` asked
  for on a machine whose torch sees no GPU is a :class:`ConfigError`, never a silent CPU fallback.
- :class:`InferencePlacement` / :func:`inference_placement`: how many inference actors, the CPUs and
  GPUs each one reserves (``num_gpus`` only on cuda) and how they spread over nodes: ``SPREAD`` (Ray
  spreads them, best effort), ``STRICT_SPREAD`` (a placement group: one actor per node, the cluster must
  have that many nodes), ``PACK`` (a placement group packed on as few nodes as fit), ``DEFAULT`` (Ray's
  hybrid policy).
- :func:`inference_actor_options`: the ``.options(...)`` of actor ``index``; :func:`create_placement_group`
  reserves the bundles first when the strategy needs one.
- :func:`io_actor_options`: sink, verdict and ingest actors are I/O bound: fractional CPUs, never a GPU;
  ingest loops and sinks are ``SPREAD`` over the nodes, so losing a node takes only its share of them.
- :func:`check_ingest_loops`: ingest loops are bounded by the frames topic's partitions (a consumer
  beyond them is assigned none and idles).
- :func:`driver_node_options`: the stream's monitor stays on the driver's node (it lives and dies with the stream).

Pure functions except :func:`create_placement_group` (needs ``ray.init``); the job wires them in:

>>> plan = inference_placement("cpu", actors=2, num_cpus=0.5, num_gpus=0.5, strategy="SPREAD", cluster_gpus=0)
>>> inference_actor_options(plan, 0)
{'num_cpus': 0.5, 'num_gpus': 0, 'scheduling_strategy': 'SPREAD'}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from linesight.errors import ConfigError

__all__ = [
    "InferencePlacement",
    "PLACEMENT_STRATEGIES",
    "check_ingest_loops",
    "create_placement_group",
    "driver_node_options",
    "inference_actor_options",
    "inference_placement",
    "inference_placement_for",
    "io_actor_options",
    "resolve_device",
]

log = logging.getLogger(__name__)

PLACEMENT_STRATEGIES = ("SPREAD", "PACK", "STRICT_SPREAD", "DEFAULT")
_GROUP_STRATEGIES = ("PACK", "STRICT_SPREAD")  # need a placement group; SPREAD/DEFAULT are actor-level
Device = Literal["cpu", "cuda"]


def resolve_device(setting: str, *, cuda_available: bool | None = None) -> Device:
    """``auto|cpu|cuda`` -> the device inference runs on; ``cuda_available`` None = ask torch.

    >>> resolve_device("auto", cuda_available=False)
    'cpu'
    >>> resolve_device("auto", cuda_available=True)
    'cuda'
    """
    choice = (setting or "").strip().lower()
    if choice not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda (LINESIGHT_DEVICE), got {setting!r}")
    if choice == "cpu":
        return "cpu"
    if cuda_available is None:
        import torch

        cuda_available = bool(torch.cuda.is_available())
    if choice == "cuda" and not cuda_available:
        raise ConfigError(
            "LINESIGHT_DEVICE='cuda' but torch sees no GPU (torch.cuda.is_available() is False): install a CUDA "
            "build of torch on a GPU node (see docs/deployment.md) or set LINESIGHT_DEVICE=auto|cpu"
        )
    return "cuda" if cuda_available else "cpu"


@dataclass(frozen=True)
class InferencePlacement:
    """Resources and spread of the inference actors (see the module docstring for the strategies)."""

    device: Device
    actors: int  # inference actors
    num_cpus: float  # Ray CPUs reserved per actor
    num_gpus: float  # Ray GPUs reserved per actor (0 on cpu)
    strategy: str  # SPREAD | PACK | STRICT_SPREAD | DEFAULT

    @property
    def needs_placement_group(self) -> bool:
        """True when the strategy reserves bundles up front (:func:`create_placement_group`)."""
        return self.strategy in _GROUP_STRATEGIES

    @property
    def bundles(self) -> list[dict[str, float]]:
        """One resource bundle per actor, for ``ray.util.placement_group``."""
        bundle = {"CPU": self.num_cpus, **({"GPU": self.num_gpus} if self.num_gpus else {})}
        return [dict(bundle) for _ in range(self.actors)]


def inference_placement(
    device: str, *, actors: int, num_cpus: float, num_gpus: float, strategy: str = "SPREAD",
    cluster_gpus: float | None = None,
) -> InferencePlacement:
    """Validate and combine the settings into the inference actors' placement.

    ``device`` is the setting (auto|cpu|cuda). On a cluster the driver often has no GPU while workers do,
    so pass ``cluster_gpus`` (``ray.cluster_resources().get("GPU", 0)``): ``auto`` then means cuda when the
    cluster has GPUs, and ``cuda`` with none is a ConfigError. ``cluster_gpus=None`` asks this machine's
    torch instead (:func:`resolve_device`). ``num_gpus`` is the share of a GPU per actor on cuda
    (0.5 = two actors per GPU); on cpu it is ignored.

    >>> inference_placement("cuda", actors=4, num_cpus=1, num_gpus=0.5, cluster_gpus=2).bundles[0]
    {'CPU': 1, 'GPU': 0.5}
    """
    if cluster_gpus is None:
        resolved = resolve_device(device)
    elif (device or "").strip().lower() == "cuda" and not cluster_gpus > 0:
        raise ConfigError(
            "LINESIGHT_DEVICE='cuda' but the Ray cluster has no GPU resources (ray.cluster_resources() shows "
            "no 'GPU'): start GPU workers with `ray start --num-gpus=N` or set LINESIGHT_DEVICE=auto|cpu"
        )
    else:
        resolved = resolve_device(device, cuda_available=cluster_gpus > 0)
    if actors < 1:
        raise ConfigError(f"inference_actors must be >= 1, got {actors}")
    if not num_cpus > 0:
        raise ConfigError(f"inference_cpus must be > 0, got {num_cpus}")
    if resolved == "cuda" and not num_gpus > 0:
        raise ConfigError(f"inference_gpus must be > 0 on cuda, got {num_gpus}")
    if num_gpus > 1 and num_gpus != int(num_gpus):
        raise ConfigError(f"inference_gpus above 1 must be a whole number of GPUs, got {num_gpus}")
    name = (strategy or "").upper()
    if name not in PLACEMENT_STRATEGIES:
        raise ConfigError(f"placement_strategy must be one of {', '.join(PLACEMENT_STRATEGIES)}, got {strategy!r}")
    return InferencePlacement(resolved, actors, num_cpus, num_gpus if resolved == "cuda" else 0, name)


def inference_actor_options(placement: InferencePlacement, index: int, placement_group: Any = None) -> dict[str, Any]:
    """``ActorClass.options(**...)`` for inference actor ``index`` (0-based).

    With a PACK/STRICT_SPREAD strategy pass the group from :func:`create_placement_group`: actor ``index``
    takes bundle ``index``.
    """
    if not 0 <= index < placement.actors:
        raise ConfigError(f"inference actor index must be in 0..{placement.actors - 1}, got {index}")
    options: dict[str, Any] = {"num_cpus": placement.num_cpus, "num_gpus": placement.num_gpus}
    if placement.needs_placement_group:
        if placement_group is None:
            raise ConfigError(
                f"placement_strategy={placement.strategy!r} needs a placement group: call create_placement_group first"
            )
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
            placement_group=placement_group, placement_group_bundle_index=index
        )
    elif placement.strategy == "SPREAD":
        options["scheduling_strategy"] = "SPREAD"
    return options


def create_placement_group(placement: InferencePlacement, *, timeout_s: float = 60.0) -> Any:
    """Reserve one bundle per inference actor (PACK / STRICT_SPREAD); None for the other strategies.

    Raises :class:`ConfigError` naming the bundles and strategy when the cluster cannot hold them within
    ``timeout_s`` (e.g. STRICT_SPREAD with more actors than nodes). Needs ``ray.init``.
    """
    if not placement.needs_placement_group:
        return None
    import ray
    from ray.util import placement_group, remove_placement_group

    group = placement_group(placement.bundles, strategy=placement.strategy, name="")
    ready, _ = ray.wait([group.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(group)
        raise ConfigError(
            f"the Ray cluster cannot place {placement.actors} inference actors with {placement.bundles[0]} each "
            f"under placement_strategy={placement.strategy!r} within {timeout_s:g} s (cluster resources: "
            f"{ray.cluster_resources()}); add nodes, lower inference_actors/inference_cpus, or use SPREAD"
        )
    log.info("placement group for %d inference actors (%s) ready", placement.actors, placement.strategy)
    return group


def io_actor_options(num_cpus: float, *, spread: bool = False) -> dict[str, Any]:
    """Options of an I/O-bound actor (sink, verdict, ingest): a CPU share, no GPU; ``spread`` = Ray's SPREAD.

    >>> io_actor_options(0.25)
    {'num_cpus': 0.25, 'num_gpus': 0}
    >>> io_actor_options(0.25, spread=True)["scheduling_strategy"]
    'SPREAD'
    """
    if not num_cpus > 0:
        raise ConfigError(f"an I/O actor needs num_cpus > 0, got {num_cpus}")
    options: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": 0}
    if spread:
        options["scheduling_strategy"] = "SPREAD"
    return options


def check_ingest_loops(loops: int, partitions: int) -> int:
    """``loops`` if 1 <= loops <= ``partitions`` (LINESIGHT_FRAMES_PARTITIONS), else a ConfigError naming both.

    >>> check_ingest_loops(3, 6)
    3
    """
    if not 1 <= loops <= partitions:
        raise ConfigError(
            f"ingest loops must be between 1 and the frames topic's partitions ({partitions}, "
            f"LINESIGHT_FRAMES_PARTITIONS), got {loops}: a loop beyond the partitions is assigned none and idles"
        )
    return loops


def driver_node_options() -> dict[str, Any]:
    """Options that keep an actor on the driver's node (soft: elsewhere if that node cannot hold it). Needs ray.init."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node_id = ray.get_runtime_context().get_node_id()
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=True)}


def inference_placement_for(settings: Any, *, cluster_gpus: float | None = None) -> InferencePlacement:
    """:func:`inference_placement` from ``Settings`` (device, inference_actors/_cpus/_gpus, placement_strategy).

    On a Ray cluster pass ``cluster_gpus=ray.cluster_resources().get("GPU", 0)``; inside the actor, put the
    model on ``placement.device`` (Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU share).
    """
    return inference_placement(
        settings.device, actors=settings.inference_actors, num_cpus=settings.inference_cpus,
        num_gpus=settings.inference_gpus, strategy=settings.placement_strategy, cluster_gpus=cluster_gpus,
    )
