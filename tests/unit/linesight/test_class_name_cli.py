"""Every command argument that takes a product class refuses '.', '..' and separators in one line."""

from __future__ import annotations

import pytest

from linesight.cli import main

COMMANDS = [
    ["bank", "build", "--images", ".", "--class", "{}"],
    ["bank", "list", "--class", "{}"],
    ["bank", "activate", "{}", "1"],
    ["history", "--class", "{}"],
    ["inspect", __file__, "--class", "{}"],
    ["camera", "--class", "{}"],
    ["train", "--synthetic", "--classes", "{}"],
    ["eval", "--synthetic", "--classes", "{}"],
]


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b"])
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_bad_class_exits_2_naming_the_value(argv, name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([part.replace("{}", name) for part in argv])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(lines) == 1, lines
    assert f"invalid product class {name!r}" in lines[0]
