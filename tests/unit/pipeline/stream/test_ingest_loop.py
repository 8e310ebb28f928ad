"""The ingest loop's guarantees on in-memory fakes (no Kafka, no Ray): commit only a finished prefix,
dead letters before the commit, a poison frame isolated, infrastructure faults held back and retried."""

from __future__ import annotations

import pytest

from pipeline.stream.ingest import IngestLoop
from pipeline.stream.ports import IngestConfig
from tests.unit.pipeline.stream.fakes import (
    BANKS,
    TOPIC,
    Events,
    FakeClock,
    FakeDeadLetters,
    FakeDispatcher,
    FakeSource,
    bad_record,
    frame_record,
)

CONFIG = IngestConfig(max_batch_size=4, batch_wait_timeout_s=0.05, max_inflight_batches=3, bank_poll_interval_s=1.0,
                      retry_initial_s=0.05, retry_max_s=0.5)


class Rig:
    """One ingest loop on fakes; ``source``, ``dead`` and ``ledger`` may be a crashed loop's (a restart)."""

    def __init__(self, records, *, config=CONFIG, dispatcher=None, bank_lookup=None, ledger=None, source=None,
                 dead=None):
        self.events = Events()
        self.source = source or FakeSource(records, self.events)
        self.dead = dead or FakeDeadLetters(self.events)
        self.ledger = ledger
        self.dispatcher = dispatcher or FakeDispatcher()
        self.clock = FakeClock()
        self.reports: list[dict] = []
        self.loop = IngestLoop(
            config, self.source, self.dead, bank_lookup or (lambda: dict(BANKS)), self.dispatcher, name="ingest-t",
            report=lambda name, state, latencies, running: self.reports.append(state), clock=self.clock,
            ledger=ledger,
        )

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.loop.step()
            self.clock.advance(0.1)

    def committed(self) -> int:
        return self.source.committed.get((TOPIC, 0), 0)


def test_every_good_frame_is_stored_once_and_committed():
    rig = Rig([frame_record(i) for i in range(10)])
    rig.steps(10)
    assert sorted(rig.dispatcher.stored) == sorted(f"f-0-{i}" for i in range(10))
    assert rig.committed() == 10
    assert rig.loop.counters.stored == 10
    assert rig.dead.written == []


def test_only_a_finished_prefix_is_committed():
    rig = Rig([frame_record(i) for i in range(8)], dispatcher=FakeDispatcher(auto=False))
    rig.steps(2)  # two batches of 4 in flight
    first, second = rig.dispatcher.submitted
    rig.dispatcher.finish(second)
    rig.steps(2)
    assert rig.committed() == 0  # the later batch is done, the earlier one is not: nothing committed
    rig.dispatcher.finish(first)
    rig.steps(1)
    assert rig.committed() == 8


def test_dead_letters_are_flushed_before_their_offsets_are_committed():
    rig = Rig([frame_record(0), bad_record(1), frame_record(2)])
    rig.steps(3)
    assert rig.dead.reasons() == ["not_an_image"]
    flush_at = rig.events.index(("flush", 1))
    commit_at = next(i for i, e in enumerate(rig.events) if e[0] == "commit" and e[1][(TOPIC, 0)] == 3)
    assert flush_at < commit_at


def test_a_failed_dead_letter_flush_holds_the_commit_and_resends():
    rig = Rig([bad_record(0), frame_record(1)])
    rig.dead.flush_fault = True
    rig.steps(5)
    assert rig.committed() == 0
    assert "dead_letter" in rig.loop.faults_active
    polls = rig.source.polls
    rig.source.add(frame_record(2))
    rig.steps(3)
    assert rig.source.polls == polls  # back-pressure: no polling while the dead letters are not durable
    rig.dead.flush_fault = False
    rig.steps(8)
    assert rig.dead.reasons() == ["not_an_image"]  # re-sent, written once
    assert rig.committed() == 3
    assert rig.loop.faults_active == {}
    assert rig.loop.counters.dead_lettered == 1


def test_a_commit_the_broker_refuses_is_retried_and_nothing_read_meanwhile():
    rig = Rig([frame_record(i) for i in range(4)])
    rig.source.commit_fault = True
    rig.steps(4)
    assert rig.committed() == 0
    assert "broker" in rig.loop.faults_active
    rig.source.add(frame_record(4))
    polls = rig.source.polls
    rig.steps(4)
    assert rig.source.polls == polls  # held: no new work while offsets cannot be committed
    rig.source.commit_fault = False
    rig.steps(6)
    assert rig.committed() == 5
    assert rig.loop.faults_active == {}
    assert rig.dead.written == []


def test_a_poison_frame_is_isolated_and_its_batch_retried_elsewhere_first():
    dispatcher = FakeDispatcher(poison={"f-0-2"})
    rig = Rig([frame_record(i) for i in range(4)], dispatcher=dispatcher)
    rig.steps(8)
    attempts = [h for h in dispatcher.submitted if len(h.tasks) == 4]
    assert len(attempts) == 2
    assert attempts[0].slot != attempts[1].slot  # the whole batch on another actor first
    assert sorted(dispatcher.stored) == ["f-0-0", "f-0-1", "f-0-3"]
    assert rig.dead.reasons() == ["inference_error"]
    assert rig.dead.written[0][0].offset == 2
    assert rig.loop.counters.inference_errors == 1
    assert rig.committed() == 4


def test_a_database_outage_is_retried_never_dead_lettered_nor_committed():
    dispatcher = FakeDispatcher(database_down=True)
    rig = Rig([frame_record(i) for i in range(8)], dispatcher=dispatcher)
    rig.steps(20)
    assert dispatcher.stored == {}
    assert rig.dead.written == []
    assert rig.committed() == 0
    assert "database" in rig.loop.faults_active
    assert rig.reports[-1]["faults_active"]["database"].startswith("OperationalError")
    assert rig.source.cursor == 4  # polling stopped after the first failed batch: back-pressure
    dispatcher.database_down = False
    rig.steps(20)
    assert len(dispatcher.stored) == 8
    assert rig.committed() == 8
    assert rig.dead.written == []
    assert rig.loop.faults_active == {}
    assert rig.loop.counters.fault_kinds["database"] >= 1


def test_a_dead_actor_sends_the_batch_to_a_live_one_without_blaming_frames():
    dispatcher = FakeDispatcher(slots=2, dead_slots={0})
    dispatcher._next = 0
    rig = Rig([frame_record(i) for i in range(8)], dispatcher=dispatcher)
    rig.steps(10)
    assert len(dispatcher.stored) == 8
    assert rig.dead.written == []
    assert rig.committed() == 8


def test_all_actors_dead_holds_the_stream_until_one_is_back():
    dispatcher = FakeDispatcher(slots=2, dead_slots={0, 1})
    rig = Rig([frame_record(i) for i in range(4)], dispatcher=dispatcher)
    rig.steps(30)
    assert dispatcher.stored == {}
    assert rig.dead.written == []  # no actor up is no frame's fault...
    assert "no_actor" in rig.loop.faults_active
    dispatcher.dead_slots = set()  # ...the supervisor recreated them
    rig.steps(10)
    assert len(dispatcher.stored) == 4
    assert rig.committed() == 4


def test_a_frame_that_keeps_killing_actors_alone_is_dead_lettered():
    class Killer(FakeDispatcher):
        def _run(self, handle):
            if any(t.frame_id == "f-0-1" for t in handle.tasks):
                from pipeline.exceptions import InfrastructureFault

                return InfrastructureFault("inference_actor", "worker crashed", actor_slot=handle.slot)
            return super()._run(handle)

    dispatcher = Killer()  # the frame kills whichever actor scores it; the supervisor replaces it each time
    rig = Rig([frame_record(i) for i in range(3)], dispatcher=dispatcher)
    rig.steps(60)
    assert sorted(dispatcher.stored) == ["f-0-0", "f-0-2"]
    assert rig.dead.reasons() == ["inference_error"]
    assert "killed its inference actor 3 times" in rig.dead.written[0][2]
    assert rig.committed() == 3


def test_the_bank_poll_survives_sql_down_and_keeps_the_last_banks():
    state = {"down": True}

    def lookup():
        if state["down"]:
            raise ConnectionError("connection refused")
        return dict(BANKS)

    rig = Rig([frame_record(i) for i in range(4)], bank_lookup=lookup)
    rig.steps(10)
    assert rig.source.polls == 0  # no bank list yet: nothing can be validated, so nothing is read
    assert "bank_lookup" in rig.loop.faults_active
    state["down"] = False
    rig.steps(10)
    assert len(rig.dispatcher.stored) == 4
    state["down"] = True  # later outages keep the last known banks
    rig.source.add(frame_record(4))
    rig.steps(30)
    assert len(rig.dispatcher.stored) == 5


def test_a_reused_frame_id_with_other_bytes_is_a_conflict_and_same_bytes_a_redelivery():
    records = [frame_record(0, "dup"), frame_record(1, "dup"), frame_record(2, "dup", shade=7)]
    rig = Rig(records)
    rig.steps(5)
    assert rig.dispatcher.stored.keys() == {"dup"}
    assert rig.loop.counters.redelivered == 2
    assert rig.dead.reasons() == ["frame_id_conflict"]
    assert rig.dead.written[0][0].offset == 2
    assert rig.committed() == 3


def test_a_replay_after_a_crash_stores_nothing_twice():
    rig = Rig([frame_record(i) for i in range(6)], dispatcher=FakeDispatcher(auto=False))
    rig.steps(2)
    for handle in rig.dispatcher.submitted:
        rig.dispatcher.finish(handle)  # stored in SQL, but the loop "crashes" before committing
    dispatcher = FakeDispatcher(stored=rig.dispatcher.stored)
    source = rig.source
    source.replay_from_committed()
    again = Rig([], dispatcher=dispatcher)
    again.source = source
    again.loop.source = source
    again.steps(6)
    assert again.loop.counters.stored == 0
    assert again.loop.counters.redelivered == 6
    assert again.dead.written == []


@pytest.mark.parametrize("busy", [False, True])
def test_adaptive_batching_dispatches_at_once_when_actors_are_idle(busy):
    config = IngestConfig(max_batch_size=8, batch_wait_timeout_s=30.0)
    dispatcher = FakeDispatcher(busy=busy)
    rig = Rig([frame_record(i) for i in range(3)], config=config, dispatcher=dispatcher)
    rig.loop.step()
    if busy:  # waits (on the fake clock) to fill the batch
        assert rig.source.polls > 2
    else:  # idle actors: the 3 frames that arrived go now, after a single poll
        assert rig.source.polls == 1
    assert [len(h.tasks) for h in dispatcher.submitted] == [3]


def test_a_busy_actor_finishing_ends_the_wait_to_fill_a_batch():
    """All actors busy: the loop fills a batch, but sends what it has the moment a running batch finishes."""
    config = IngestConfig(max_batch_size=8, batch_wait_timeout_s=30.0)
    dispatcher = FakeDispatcher(auto=False, busy=True)
    rig = Rig([frame_record(i) for i in range(2)], config=config, dispatcher=dispatcher)
    rig.loop.step()  # nothing runs yet: waits (fake clock) for the whole timeout, then sends the 2 frames
    assert [len(h.tasks) for h in dispatcher.submitted] == [2]
    waited = rig.source.polls
    rig.source.add(*(frame_record(i) for i in range(2, 5)))
    real_poll = rig.source.poll

    def poll_then_finish(timeout_ms, max_records):  # the first batch finishes while the loop fills the next
        out = real_poll(timeout_ms, max_records)
        dispatcher.finish(dispatcher.submitted[0])
        return out

    rig.source.poll = poll_then_finish
    rig.loop.step()
    assert [len(h.tasks) for h in dispatcher.submitted] == [2, 3]
    assert rig.source.polls - waited <= 2  # not the ~3000 polls of a 30 s wait
    assert rig.loop.counters.stored == 2  # the finished batch was settled before the new one went out


def test_stop_drains_in_flight_batches_and_commits():
    rig = Rig([frame_record(i) for i in range(4)], dispatcher=FakeDispatcher(auto=False))
    rig.steps(1)
    rig.dispatcher.finish(rig.dispatcher.submitted[0])
    rig.loop.stop()
    rig.loop.run()
    assert rig.committed() == 4
    assert rig.source.closed
