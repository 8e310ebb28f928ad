"""Dead letters are written once (the dead-letter ledger) and a reconnected source commits only what it
read: the ingest loop on in-memory fakes (no Kafka, no SQL, no Ray)."""

from __future__ import annotations

from tests.unit.pipeline.stream.fakes import (
    TOPIC,
    Events,
    FakeDispatcher,
    FakeLedger,
    FakeSource,
    Record,
    bad_record,
    frame_record,
)
from tests.unit.pipeline.stream.test_ingest_loop import Rig


def _crash_after_the_dead_letters_before_the_commit(records, ledger):
    """Run until the dead letters are flushed (and recorded), with every commit refused; then 'crash'."""
    rig = Rig(records, ledger=ledger)
    rig.source.commit_fault = True
    rig.steps(6)
    assert rig.committed() == 0
    return rig


def _restart(crashed: Rig, ledger) -> Rig:
    """A new loop on the same topic, dead-letter topic, ledger and database, from the committed offset."""
    crashed.source.commit_fault = False
    crashed.source.replay_from_committed()
    return Rig([], ledger=ledger, source=crashed.source, dead=crashed.dead,
               dispatcher=FakeDispatcher(stored=crashed.dispatcher.stored))


def test_a_replay_after_a_crash_between_dead_letter_flush_and_commit_sends_no_dead_letter_twice():
    ledger = FakeLedger(Events())
    crashed = _crash_after_the_dead_letters_before_the_commit(
        [frame_record(0), bad_record(1), frame_record(2), bad_record(3)], ledger)
    assert crashed.dead.per_offset() == {1: 1, 3: 1}
    assert len(ledger.rows) == 2  # recorded after the flush, before the (refused) commit
    again = _restart(crashed, ledger)
    again.steps(6)
    assert again.dead.per_offset() == {1: 1, 3: 1}  # replayed, not sent again
    assert again.loop.counters.dead_letters_replayed == 2
    assert again.loop.counters.dead_lettered == 0
    assert again.committed() == 4  # and their offsets committed
    assert again.loop.counters.redelivered == 2


def test_without_the_ledger_the_same_replay_sends_them_twice():
    crashed = _crash_after_the_dead_letters_before_the_commit([frame_record(0), bad_record(1)], None)
    again = _restart(crashed, None)
    again.steps(6)
    assert again.dead.per_offset() == {1: 2}  # what the ledger prevents


def test_a_reused_frame_id_found_again_on_replay_is_not_dead_lettered_twice():
    ledger = FakeLedger(Events())
    records = [frame_record(0, "dup"), frame_record(1, "dup", shade=7)]
    crashed = _crash_after_the_dead_letters_before_the_commit(records, ledger)
    assert crashed.dead.reasons() == ["frame_id_conflict"]
    again = _restart(crashed, ledger)
    again.steps(6)
    assert again.dead.per_offset() == {1: 1}
    assert again.committed() == 2


def test_another_record_at_a_reused_offset_is_dead_lettered():
    """A memory-only broker restarted (or a topic recreated) numbers offsets from 0 again."""
    ledger = FakeLedger(Events())
    first = Rig([bad_record(0)], ledger=ledger)
    first.steps(4)
    other = Record(TOPIC, 0, 0, b"line-1", b"other junk", bad_record(0).headers)
    second = Rig([other], ledger=ledger, dead=first.dead)
    second.steps(4)
    assert first.dead.per_offset() == {0: 2}
    assert len(ledger.rows) == 2


def test_a_partly_failed_flush_resends_only_the_unconfirmed_dead_letters():
    ledger = FakeLedger(Events())
    rig = Rig([bad_record(0), bad_record(1), bad_record(2)], ledger=ledger)
    rig.dead.flush_fault, rig.dead.deliver_on_fault = True, 1
    rig.steps(3)
    assert rig.committed() == 0
    assert "dead_letter" in rig.loop.faults_active
    rig.dead.flush_fault = False
    rig.steps(8)
    assert rig.dead.per_offset() == {0: 1, 1: 1, 2: 1}
    assert rig.loop.counters.dead_lettered == 3
    assert rig.committed() == 3
    assert rig.loop.faults_active == {}


def test_a_ledger_outage_holds_the_commit_and_never_sends_twice():
    ledger = FakeLedger(Events())
    ledger.down = True
    rig = Rig([frame_record(0), bad_record(1)], ledger=ledger)
    rig.steps(5)
    assert rig.dead.written == []  # not looked up: not sent
    assert rig.committed() == 0
    assert "dead_letter_ledger" in rig.loop.faults_active
    ledger.down, ledger.fail_writes = False, True  # looked up and sent; not recorded
    rig.steps(8)
    assert rig.dead.per_offset() == {1: 1}
    assert rig.committed() == 0
    ledger.fail_writes = False
    rig.steps(8)
    assert rig.dead.per_offset() == {1: 1}  # recorded late, never sent again
    assert len(ledger.rows) == 1
    assert rig.committed() == 2
    assert rig.loop.faults_active == {}


def test_after_a_reconnect_batches_read_before_are_not_committed_but_replayed():
    rig = Rig([frame_record(i) for i in range(4)], dispatcher=FakeDispatcher(auto=False))
    rig.steps(1)
    old = rig.dispatcher.submitted[0]
    rig.source.reconnect()  # the broker was away: a new consumer, from the committed offset (0)
    rig.dispatcher.finish(old)
    rig.steps(2)
    assert rig.source.events == []  # the batch read by the old consumer is not committed...
    assert rig.loop.counters.commit_failures == 1
    for handle in rig.dispatcher.submitted[1:]:
        rig.dispatcher.finish(handle)
    rig.steps(3)
    assert rig.committed() == 4  # ...the new consumer read it again and commits it
    assert rig.loop.counters.redelivered == 4


def test_a_broker_fault_while_filling_a_batch_keeps_the_records_read():
    class Flaky(FakeSource):
        def poll(self, timeout_ms, max_records):
            if self.polls == 1:
                from pipeline.exceptions import InfrastructureFault

                self.polls += 1
                raise InfrastructureFault("broker", "poll failed")
            return super().poll(timeout_ms, 2)

    events = Events()
    dispatcher = FakeDispatcher(busy=True)  # busy actors: the loop polls more to fill the batch
    rig = Rig([], dispatcher=dispatcher, source=Flaky([frame_record(i) for i in range(4)], events))
    rig.steps(6)
    assert sorted(dispatcher.stored) == [f"f-0-{i}" for i in range(4)]
    assert rig.committed() == 4
    assert rig.loop.counters.fault_kinds["broker"] == 1


def test_stop_while_the_broker_is_away_does_not_wait_for_the_drain_timeout():
    rig = Rig([frame_record(i) for i in range(4)])
    rig.source.commit_fault = True
    rig.steps(2)
    assert "broker" in rig.loop.faults_active
    started = rig.clock.now
    rig.loop.stop()
    rig.loop.run()
    assert rig.clock.now - started < 5  # not the 60 s drain timeout
    assert rig.source.closed
    assert rig.committed() == 0  # replayed and deduplicated after the restart
