"""Whose fault a failed sink write is: the database, the broker, the sink, or a record of the batch."""

from __future__ import annotations

import pytest
import sqlalchemy.exc
from kafka.errors import KafkaTimeoutError

from pipeline.exceptions import BatchFailed, InfrastructureFault
from pipeline.stream.dispatch import classify_sink_error
from storage.exceptions import InvalidRecordError


@pytest.mark.parametrize(("error", "kind"), [
    (sqlalchemy.exc.OperationalError("INSERT", {}, ConnectionRefusedError("refused")), "database"),
    (ConnectionResetError("reset by peer"), "database"),
    (KafkaTimeoutError("alerts not delivered"), "broker"),
    (RuntimeError("something else"), "sink"),
])
def test_infrastructure_errors_of_the_sink_are_faults_not_frames(error, kind):
    fault = classify_sink_error(error)
    assert isinstance(fault, InfrastructureFault)
    assert fault.kind == kind


def test_a_record_the_sink_refuses_is_the_batch_s_problem():
    failed = classify_sink_error(InvalidRecordError("anomaly map of shape (8, 8) contains NaN"))
    assert isinstance(failed, BatchFailed)
    assert "NaN" in failed.detail


def test_an_unknown_fault_kind_is_refused_by_name():
    with pytest.raises(ValueError, match="'disk'"):
        InfrastructureFault("disk", "full")


def test_a_bank_file_that_cannot_load_is_an_infrastructure_fault_of_the_inference_actor(tmp_path):
    from types import SimpleNamespace

    from pipeline.exceptions import BankUnavailableError
    from pipeline.stream.bank_cache import BankCache
    from pipeline.stream.inference import InferenceWorker
    from pipeline.stream.messages import BankRef

    def load(ref):
        raise FileNotFoundError(ref.path)

    worker = SimpleNamespace(banks=BankCache(2, load))
    ref = BankRef("brick", 3, str(tmp_path / "gone.safetensors"))
    with pytest.raises(BankUnavailableError, match="brick@v3"):
        InferenceWorker._bank(worker, ref)
