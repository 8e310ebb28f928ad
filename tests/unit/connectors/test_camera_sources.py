"""Camera sources: image folders, videos, interleaving lines."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from connectors.camera import (
    folder_frames,
    interleave,
    iter_folder,
    iter_video,
    video_frames,
)
from connectors.exceptions import CameraError


def write_rgb(path, image_rgb) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture
def image_folder(tmp_path):
    red = np.zeros((20, 30, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((20, 30, 3), np.uint8)
    blue[..., 2] = 255
    write_rgb(tmp_path / "b.png", blue)
    write_rgb(tmp_path / "a.bmp", red)
    (tmp_path / "c.jpg").write_bytes(b"this is not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def test_folder_yields_sorted_rgb_images_and_reports_unreadable_files(image_folder):
    unreadable = []
    items = list(iter_folder(image_folder, on_unreadable=lambda path, reason: unreadable.append((path.name, reason))))
    assert [path.name for path, _ in items] == ["a.bmp", "b.png"]
    assert items[0][1][0, 0].tolist() == [255, 0, 0]  # red stays red: BGR was converted
    assert items[1][1][0, 0].tolist() == [0, 0, 255]
    assert [name for name, _ in unreadable] == ["c.jpg"]


def test_folder_default_report_is_a_warning_naming_the_file(image_folder, caplog):
    with caplog.at_level("WARNING", logger="connectors.camera"):
        assert len(list(iter_folder(image_folder))) == 2
    assert "c.jpg" in caplog.text


def test_missing_or_empty_folder_is_an_error(tmp_path):
    with pytest.raises(CameraError, match="no such folder"):
        next(iter_folder(tmp_path / "nope"))
    with pytest.raises(CameraError, match="has no"):
        next(iter_folder(tmp_path))


def test_folder_frames_loop_and_carry_the_file(image_folder):
    frames = list(itertools.islice(folder_frames(image_folder, "line-2", "cam-2", "brick"), 5))
    assert [f[4]["path"].rsplit("/", 1)[-1] for f in frames] == ["a.bmp", "b.png", "a.bmp", "b.png", "a.bmp"]
    assert {f[:3] for f in frames} == {("line-2", "cam-2", "brick")}


def test_folder_with_only_unreadable_files_does_not_loop_forever(tmp_path):
    (tmp_path / "x.png").write_bytes(b"broken")
    with pytest.raises(CameraError, match="no readable image"):
        list(itertools.islice(folder_frames(tmp_path, "line-1", "cam-1", "brick"), 3))


def test_video_frames_are_read_and_looped(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    assert writer.isOpened()
    for level in (0, 120, 240):
        writer.write(np.full((24, 32, 3), level, np.uint8))
    writer.release()
    images = list(iter_video(path))
    assert len(images) == 3
    assert images[0].shape == (24, 32, 3)
    assert [round(float(i.mean()) / 40) for i in images] == [0, 3, 6]
    looped = list(itertools.islice(video_frames(path, "line-1", "cam-1", "washer"), 7))
    assert [f[4]["video_frame"] for f in looped] == [0, 1, 2, 0, 1, 2, 0]


def test_video_that_cannot_open_names_the_file(tmp_path):
    with pytest.raises(CameraError, match="missing.mp4"):
        next(iter_video(tmp_path / "missing.mp4"))


def test_interleave_round_robins_until_all_are_done():
    assert list(interleave([iter([1, 2, 3]), iter([]), iter(["a"])])) == [1, "a", 2, 3]
