"""The product-class name rule (model.names) and every place a class name enters linesight."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from linesight.errors import ConfigError, LinesightError
from model.exceptions import ClassNameError
from model.names import CLASS_NAME_PATTERN, check_class_name, is_class_name

BAD_NAMES = ["..", ".", "a/b", "a\\b", "/etc", ".hidden", "", "x" * 65, "a b", "bad\n", "käse", "a\x00b"]
GOOD_NAMES = ["brick", "washer-m8", "pcb1", "a", "A.b", "ns:screw_2", "a..b", "x" * 64, "0"]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names_pass_unchanged(name):
    assert check_class_name(name) == name
    assert is_class_name(name)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_raise_naming_the_value(name):
    with pytest.raises(ClassNameError) as info:
        check_class_name(name)
    assert repr(name[:80]) in str(info.value)
    assert "never '.' or '..'" in str(info.value)
    assert not is_class_name(name)


def test_non_strings_are_refused():
    for value in (None, 3, b"brick"):
        with pytest.raises(ClassNameError, match="invalid product class"):
            check_class_name(value)


def test_error_is_a_config_error_and_a_value_error():
    assert issubclass(ClassNameError, ConfigError)
    assert issubclass(ClassNameError, LinesightError)
    assert issubclass(ClassNameError, ValueError)  # pydantic validators report it


def test_pattern_agrees_with_the_check():
    for name in GOOD_NAMES + BAD_NAMES:
        assert (re.fullmatch(CLASS_NAME_PATTERN, name) is not None) == is_class_name(name), name


# --- where names enter: settings, frame headers, bank paths -------------------------------------
@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b"])
def test_settings_refuse_bad_zero_shot_class(name, tmp_path):
    from linesight.settings import load_settings

    with pytest.raises(ConfigError, match=r"zero_shot_classes=.*invalid product class " + re.escape(repr(name))):
        load_settings(zero_shot_classes=f"brick,{name}", checkpoint_dir=tmp_path)


def test_settings_keep_good_zero_shot_classes(tmp_path):
    from linesight.settings import load_settings

    settings = load_settings(zero_shot_classes=" brick , washer ", checkpoint_dir=tmp_path)
    assert settings.zero_shot_class_names == ("brick", "washer")


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b"])
def test_frame_header_with_bad_class_is_an_invalid_header(name):
    import numpy as np

    from connectors.schema import BadFrame, encode_image, parse_record

    class Record:
        topic, partition, offset, key = "linesight.frames", 0, 5, b"line-1"
        value = encode_image(np.full((32, 32, 3), 90, np.uint8))
        headers = [("frame_id", b"f-1"), ("line_id", b"line-1"), ("camera_id", b"cam-1"),
                   ("product_class", name.encode()),
                   ("captured_at", datetime.now(UTC).isoformat().encode())]

    bad = parse_record(Record(), max_frame_bytes=1 << 20)
    assert isinstance(bad, BadFrame)
    assert bad.reason == "invalid_header"
    assert "product_class" in bad.detail
    assert repr(name) in bad.detail


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b"])
def test_bank_file_path_refuses_bad_names(name, tmp_path):
    from storage.banks import bank_file_path

    with pytest.raises(ClassNameError, match="invalid product class"):
        bank_file_path(tmp_path / "banks", name, 1)


def test_bank_file_path_stays_inside_the_banks_folder(tmp_path):
    from storage.banks import bank_file_path
    from storage.exceptions import InvalidRecordError

    banks = tmp_path / "banks"
    assert bank_file_path(banks, "brick", 2) == (banks / "brick" / "v2.safetensors").resolve()
    banks.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (banks / "deep").symlink_to(tmp_path / "elsewhere")  # a class folder that points elsewhere
    with pytest.raises(InvalidRecordError, match="outside"):
        bank_file_path(banks, "deep", 1)
