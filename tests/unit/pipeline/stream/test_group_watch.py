"""The supervisor's group watch: which ingest loop rejoins its consumer group, and when (no Kafka, no Ray)."""

from __future__ import annotations

import pytest

from pipeline.stream.group_watch import OrphanedPartitionWatch
from tests.unit.pipeline.stream.fakes import FakeClock


def _loop(partitions, *, total=6, running=True, faults=None):
    return {"running": running, "partitions": list(partitions), "topic_partitions": total,
            "faults_active": faults or {}}


@pytest.fixture
def clock():
    return FakeClock()


def test_every_partition_owned_asks_for_nothing(clock):
    watch = OrphanedPartitionWatch(grace_s=10, clock=clock)
    for _ in range(5):
        assert watch.check([_loop([0, 1, 2]), _loop([3, 4, 5])]) is None
        clock.advance(10)
    assert watch.orphaned == []


def test_partitions_unowned_past_the_grace_make_the_loop_holding_fewest_rejoin(clock):
    watch = OrphanedPartitionWatch(grace_s=10, clock=clock)
    loops = [_loop([4, 5]), _loop([]), _loop([0, 1])]
    assert watch.check(loops) is None
    clock.advance(9.9)
    assert watch.check(loops) is None  # a rebalance may still be under way
    clock.advance(0.1)
    assert watch.check(loops) == 1
    assert watch.orphaned == [2, 3]


def test_one_rejoin_per_grace_period(clock):
    watch = OrphanedPartitionWatch(grace_s=10, clock=clock)
    loops = [_loop([0]), _loop([1, 2])]
    watch.check(loops)
    clock.advance(10)
    assert watch.check(loops) == 0
    clock.advance(5)
    assert watch.check(loops) is None  # the wait starts again after a rejoin
    clock.advance(5)
    assert watch.check(loops) is None
    clock.advance(5)
    assert watch.check(loops) == 0


def test_a_partition_owned_again_resets_the_wait(clock):
    watch = OrphanedPartitionWatch(grace_s=10, clock=clock)
    watch.check([_loop([0, 1, 2]), _loop([3, 4])])
    clock.advance(8)
    watch.check([_loop([0, 1, 2]), _loop([3, 4, 5])])
    clock.advance(8)
    assert watch.check([_loop([0, 1, 2]), _loop([3, 4])]) is None


@pytest.mark.parametrize("loops", [
    [_loop([0, 1]), _loop([], faults={"broker": "the broker does not answer"})],  # an outage, not the group
    [_loop([0, 1]), _loop([], running=False)],  # a loop being restarted joins anew anyway
    [_loop([], total=0), _loop([], total=0)],  # nobody knows the topic yet
])
def test_no_rejoin_while_the_cause_is_elsewhere(clock, loops):
    watch = OrphanedPartitionWatch(grace_s=10, clock=clock)
    for _ in range(4):
        assert watch.check(loops) is None
        clock.advance(10)


def test_a_grace_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match="grace_s must be > 0, got 0"):
        OrphanedPartitionWatch(grace_s=0)
