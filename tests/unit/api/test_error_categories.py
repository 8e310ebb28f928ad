"""HTTP status is chosen by error category (isinstance), never by class name.

Each category maps to its status, and representative errors of every package land in the right
category; a renamed or subclassed error keeps its status.
"""

from __future__ import annotations

import pytest

from connectors.dead_letter_reader import DeadLetterNotFound, NotReplayableError
from connectors.exceptions import BrokerError, CameraError, FrameError, ImageHeaderError
from linesight.api.errors import ApiError, status_for
from linesight.errors import (
    ERROR_CATEGORIES,
    ConfigError,
    ConflictError,
    InvalidInputError,
    LinesightError,
    NotFoundError,
    UnavailableError,
)
from model.exceptions import BankBuildError, BankFileError, ClassNameError, ModelError, ShapeError
from pipeline.exceptions import DialogueUnavailableError, InspectionNotFoundError, InvalidQuestionError
from storage.exceptions import DatabaseUnavailableError, InvalidRecordError
from storage.exceptions import NotFoundError as StorageNotFoundError


@pytest.mark.parametrize(
    ("category", "status"),
    [(NotFoundError, 404), (InvalidInputError, 400), (UnavailableError, 503), (ConflictError, 409)],
)
def test_each_category_maps_to_its_status(category, status):
    assert category in ERROR_CATEGORIES
    assert status_for(category("x")) == status


def test_a_renamed_subclass_keeps_its_category_status():
    renamed = type("SomethingElseEntirely", (NotFoundError,), {})
    assert status_for(renamed("no inspection with id 7")) == 404
    assert status_for(type("Gone", (UnavailableError,), {})("down")) == 503


def test_errors_without_a_category_are_bugs_and_api_errors_keep_their_own_status():
    assert status_for(LinesightError("bug")) == 500
    assert status_for(ModelError("bug")) == 500
    assert status_for(CameraError("no such folder")) == 500
    assert status_for(ApiError(418, "teapot")) == 418


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (StorageNotFoundError("no bank screw@3"), 404),
        (InspectionNotFoundError("no inspection 7"), 404),
        (DeadLetterNotFound("no dead letter at 0@5"), 404),
        (DatabaseUnavailableError("postgresql://***@db"), 503),
        (BrokerError("no broker at 127.0.0.1:9092"), 503),
        (DialogueUnavailableError("llm missing"), 503),
        (ConfigError("--shots must be >= 1, got 0"), 400),
        (ClassNameError("bad class 'A B'"), 400),
        (InvalidRecordError("naive timestamp"), 400),
        (InvalidQuestionError("empty question"), 400),
        (BankBuildError("too few images"), 400),
        (ShapeError("expected (3, H, W)"), 400),
        (FrameError("bad header"), 400),
        (ImageHeaderError("truncated PNG"), 400),
        (BankFileError("bank.safetensors does not match"), 409),
        (NotReplayableError("value dropped"), 409),
    ],
)
def test_package_errors_map_to_the_right_status(exc, status):
    assert status_for(exc) == status
