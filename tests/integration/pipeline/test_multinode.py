"""The stream on a real two-node Ray cluster on this machine, and a worker node lost mid-stream.

``ray.cluster_utils.Cluster`` (what Ray's own tests use) starts real node processes: a head (GCS, raylet,
object store) and a second node with its own raylet, object store and a custom resource ``node_b``, joined
by address as ``ray start --address=...`` would. The stream (6 frame partitions, one line per partition,
3 ingest loops, 2 inference actors, SQLite, the real Tansu broker) is spread over both nodes; then every
process of the second node (raylet, agents, the actors' workers) is SIGKILLed at once, as when a machine
is lost. Checked frame by frame: every frame sent is stored exactly once (no dead letter: none is at
fault), every flagged frame alerted once, and frames published after the loss are stored by the node left.

Ray detects a lost node by missed health checks (~15-30 s by default); the head here checks every 0.5 s
so the test stays short. Ray's cluster helper records its address as this machine's default cluster
(``ray.init()`` anywhere on the machine would join it): that is switched off for the test.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import pytest

from tests.integration.pipeline.test_faults import _alert_frame
from tests.integration.pipeline.test_stream import CLASSES, _prepare, _repository, _settings, _wait_rows

pytestmark = pytest.mark.integration

PARTITIONS = 6
INGEST_LOOPS = 3
HEAD_CPUS = 3  # after the loss the head alone holds every actor: 2 x 0.5 inference + 3 x (0.25 ingest + 0.25 sink)
NODE_B_CPUS = 2
FAST_NODE_DEATH = {  # the head's GCS marks a node dead after 3 missed checks 0.5 s apart (default: ~15-30 s)
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


def _processes(node) -> list:
    """Every live process of a Ray node: its raylet and agents and all their descendants (the actors' workers)."""
    import psutil

    found = []
    for infos in node.all_processes.values():
        for info in infos:
            try:
                process = psutil.Process(info.process.pid)
                found += [process, *process.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
    return found


def _sigkill(processes: list) -> None:
    import psutil

    for process in processes:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=10)


def _crash(cluster, node) -> None:
    """Lose ``node`` as a machine is lost: SIGKILL all its processes at once, no drain, no goodbye to the GCS."""
    _sigkill(_processes(node))
    cluster.remove_node(node, allow_graceful=False)  # the helper's bookkeeping; everything is dead already


@pytest.fixture(scope="module")
def encoder():
    from model.encoders import build_encoder

    return build_encoder("efficientnet-lite0")


@pytest.fixture
def two_nodes(monkeypatch):
    """A head (the driver's node) and node B (``node_b`` resource); torn down even when the test fails.

    The session's local Ray (``ray_session``) is shut down for the test and started again afterwards.
    """
    import ray
    import ray._common.utils
    import ray._private.utils
    from ray.cluster_utils import Cluster

    from tests.integration.conftest import start_local_ray

    had_local_ray = ray.is_initialized()
    if had_local_ray:
        ray.shutdown()
    # not this machine's default cluster: other processes' ray.init() must not join it (or lose their own file)
    monkeypatch.setattr(ray._private.utils, "write_ray_address", lambda *args, **kwargs: None)
    monkeypatch.setattr(ray._common.utils, "reset_ray_address", lambda *args, **kwargs: None)
    cluster = Cluster(shutdown_at_exit=True)
    started: list = []
    try:
        started.append(cluster.add_node(num_cpus=HEAD_CPUS, include_dashboard=False, _system_config=FAST_NODE_DEATH))
        started.append(cluster.add_node(num_cpus=NODE_B_CPUS, resources={"node_b": 1}))
        yield cluster, started[1]
    finally:
        ray.shutdown()
        leftovers = [p for node in started for p in _processes(node)]
        try:
            cluster.shutdown()
        finally:
            _sigkill(leftovers)  # workers outlive their raylet for a moment: none may stay behind
            if had_local_ray:
                start_local_ray()


def _node_of(actor) -> str:
    """The node id (hex) an actor runs on, from the GCS's actor table."""
    import ray

    info = ray._private.state.actors(actor_id=actor._actor_id.hex())
    return info["Address"]["NodeID"]


def _one_line_per_partition(partitions: int) -> list[str]:
    """Line ids (the record key) that kafka-python's default partitioner puts on partitions 0..n-1, one each."""
    from kafka.partitioner.default import murmur2

    by_partition: dict[int, str] = {}
    number = 0
    while len(by_partition) < partitions:
        number += 1
        line = f"line-{number}"
        by_partition.setdefault((murmur2(line.encode()) & 0x7FFFFFFF) % partitions, line)
    return [by_partition[p] for p in range(partitions)]


def _read_topic(broker, topic: str, expected: int, quiet_s: float = 1.0, timeout_s: float = 30.0) -> list:
    """Every record of ``topic`` with a group-less consumer (no group join): until ``expected`` came and
    a poll ``quiet_s`` long brought nothing more."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = [r for rs in consumer.poll(timeout_ms=int(quiet_s * 1000)).values() for r in rs]
            records += batch
            if not batch and len(records) >= expected:
                break
        return records
    finally:
        consumer.close()


def _publish_lines(settings, broker, lines: list[str], count: int, *, fps: float | None, seed: int) -> list:
    """``count`` synthetic frames round-robin over ``lines`` (``fps`` per line), one publisher; the manifest."""
    from connectors.camera import CameraPublisher
    from connectors.kafka import make_producer
    from training.synthetic import SyntheticLine

    line = SyntheticLine(product_classes=CLASSES, defect_rate=0.3, seed=seed)
    frames = ((lines[i % len(lines)], "cam-1", f.product_class, f.image, {"is_defective": f.is_defective})
              for i, f in enumerate(line.next_frame() for _ in range(count)))
    producer = make_producer(broker.bootstrap_servers, max_request_size=settings.max_frame_bytes)
    try:
        return CameraPublisher(producer, settings.frames_topic).publish(frames, fps=fps, progress=False)
    finally:
        producer.close()


def _stuck(repository, sent: list, pipeline) -> dict:
    """What a stalled run looks like: frames missing per partition, and each ingest loop's own account."""
    import ray

    stored = {r.frame_id for r in repository.iter_history()}
    missing = Counter(m.partition for m in sent if m.frame_id not in stored)
    loops = []
    for service in pipeline.ingest:
        try:
            state = ray.get(service.stats.remote(), timeout=10)
            loops.append({k: state.get(k) for k in ("running", "error", "assigned_partitions", "polled", "stored",
                                                      "redelivered", "commit_failures", "source_reconnects",
                                                      "faults_active", "holding")})
        except Exception as exc:  # noqa: BLE001 - a diagnostic: report what the loop answered
            loops.append({"error": repr(exc)})
    return {"missing_per_partition": dict(missing), "ingest_loops": loops,
            "restarts": dict(pipeline.restarts_by_role)}


def test_losing_a_worker_node_mid_stream_loses_and_duplicates_nothing(broker, encoder, tmp_path, two_nodes):
    import ray

    from connectors.dead_letter_reader import read_dead_letters
    from pipeline.stream.job import Pipeline, wait_for

    cluster, node_b = two_nodes
    started_s = time.monotonic()
    settings = _settings(
        f"sqlite:///{tmp_path / 'multinode.db'}", tmp_path, ray_address=cluster.address,
        frames_partitions=PARTITIONS, inference_actors=2, supervise_interval_s=0.5, fault_retry_max_s=1.0,
        engine="torch",  # no engine compile per actor start: the test is about nodes, not engines
    )
    _prepare(settings, broker, encoder)
    repository = _repository(settings)
    lines = _one_line_per_partition(PARTITIONS)
    phases_s: dict[str, float] = {}

    def phase(name: str) -> None:
        phases_s[name] = round(time.monotonic() - started_s, 1)

    phase("prepared")
    with Pipeline(settings, broker.bootstrap_servers, ingest_loops=INGEST_LOOPS) as pipeline:
        phase("started")
        head = ray.get_runtime_context().get_node_id()
        assert head == cluster.head_node.node_id != node_b.node_id  # the driver is on the head, not on B
        pipeline.wait_until_consuming(60)
        phase("consuming")
        ingest_nodes = [_node_of(a) for a in pipeline.ingest]
        placed = {"ingest": ingest_nodes, "sink": [_node_of(a) for a in pipeline.sinks],
                  "inference": [_node_of(a) for a in pipeline.inference]}
        assert set(ingest_nodes) == {head, node_b.node_id}, f"ingest loops not spread over both nodes: {placed}"
        lost_loops = ingest_nodes.count(node_b.node_id)

        manifest: list = []
        publisher = threading.Thread(target=lambda: manifest.extend(
            _publish_lines(settings, broker, lines, 60, fps=2.0, seed=11)))
        publisher.start()
        _wait_rows(repository, 12, timeout_s=60)
        _crash(cluster, node_b)
        phase("node_b_lost")
        stored_at_crash = repository.count_inspections()
        assert wait_for(lambda: sum(n["Alive"] for n in ray.nodes()) == 1, 20), "Ray did not mark node B dead"
        phase("marked_dead")
        publisher.join(60)
        after = _publish_lines(settings, broker, lines, 24, fps=None, seed=12)  # only the head is left
        sent = manifest + after
        phase("published_after")
        _wait_rows(repository, len(sent), timeout_s=180,  # 16-67 s measured (load 4-25 on 2 cores)
                   explain=lambda: _stuck(repository, sent, pipeline))
        phase("all_stored")
        survivors = [_node_of(a) for a in [*pipeline.ingest, *pipeline.sinks, *pipeline.inference]]
        stats = pipeline.stop()
        phase("stopped")

    rows = list(repository.iter_history())
    stored = [r.frame_id for r in rows]
    assert {m.partition for m in sent} == set(range(PARTITIONS))  # every partition carried frames
    assert stored_at_crash < len(manifest)  # the loss happened mid-stream
    assert len(stored) == len(set(stored)), f"{len(stored) - len(set(stored))} duplicate rows"
    assert set(stored) == {m.frame_id for m in sent}, f"{len({m.frame_id for m in sent} - set(stored))} frames lost"
    assert {m.frame_id for m in after} <= set(stored)  # the stream went on without node B
    dead = read_dead_letters(broker.bootstrap_servers, settings.dead_letter_topic, limit=100)
    assert dead == [], f"dead-lettered for no fault of their own: {[(d.frame_id, d.reason) for d in dead]}"
    flagged = {r.frame_id for r in rows if r.is_anomalous}
    alerts = _read_topic(broker, settings.alerts_topic, len(flagged))
    alerted = [_alert_frame(a) for a in alerts]
    assert flagged, "the synthetic lines at 30 % defects flagged nothing"
    assert set(alerted) == flagged, f"{len(flagged - set(alerted))} flagged frames not alerted"
    assert len(alerted) == len(set(alerted)), f"{len(alerted) - len(set(alerted))} duplicate alerts"
    assert set(survivors) == {head}  # what node B held was recreated (or restarted by Ray) on the head
    assert stats["restarts_by_role"]["ingest"] >= lost_loops  # the supervisor recreated B's ingest loops
    if node_b.node_id in placed["inference"]:  # Ray restarted it on the head (max_restarts): not given up on
        assert stats["restarts_by_role"]["inference"] == 0
    assert stats["errors"] == []
    assert stats["dead_lettered"] == 0
    print(f"multi-node: placed {placed}; {len(sent)} sent, {len(rows)} stored ({stored_at_crash} before the loss), "
          f"{len(flagged)} alerts, restarts {stats['restarts_by_role']}, redelivered {stats['redelivered']}, "
          f"phases (s) {phases_s}, {time.monotonic() - started_s:.0f} s")
