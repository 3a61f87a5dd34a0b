"""Annotation readers on tiny layouts written to tmp_path, image decoding errors, and the real data's sample counts.

Generated coordinates lie on a quarter-pixel grid, so they are exact in float32 and parsed values compare exactly.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facelm.annotations import WFLW_ATTRIBUTES, load_annotations, read_106_txt, read_pts
from facelm.errors import UserError
from facelm.faces import decode_all, read_rgb
from facelm.schemes import get_scheme

S68, S98, S106 = (get_scheme(n) for n in ("68", "98", "106"))
WFLW_IMAGE = "0--Parade/0_Parade_marchingband_1_116.jpg"


def user_error(call, *args, mentions=()) -> str:
    """Call, expect a one-line UserError that contains every item of `mentions`, and return its message."""
    with pytest.raises(UserError) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message
    for text in mentions:
        assert str(text) in message, f"{text!r} not in {message!r}"
    return message


def grid_points(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(4, 124, size=(n, 2)) / 4.0


def write_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def xy_lines(points: np.ndarray) -> list[str]:
    return [f"{x:g} {y:g}" for x, y in points]


def write_pts(folder: Path, points: np.ndarray, header: bool = True, declared: int | None = None) -> Path:
    """`face.pts` (1-based, as 300-W ships it) beside `face.jpg`."""
    write_image(folder / "face.jpg")
    lines = ["version: 1", f"n_points: {declared or len(points)}", "{", *xy_lines(points), "}"]
    return write_lines(folder / "face.pts", lines if header else xy_lines(points))


def csv_header(n: int) -> list[str]:
    return ["image"] + [f"{axis}{i}" for i in range(n) for axis in "xy"]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    return write_lines(path, [",".join(header)] + [",".join(row) for row in rows])


def csv_row(image: str, points: np.ndarray) -> list[str]:
    return [image] + [f"{v:g}" for v in points.ravel()]


def wflw_line(points: np.ndarray, box, attributes) -> str:
    return " ".join([*(f"{v:g}" for v in points.ravel()), *(f"{v:g}" for v in box), *map(str, attributes), WFLW_IMAGE])


def write_wflw(root: Path, lines: list[str]) -> Path:
    """WFLW's published layout: the list file two folders below the root that holds `WFLW_images/`."""
    write_image(root / "WFLW_images" / WFLW_IMAGE)
    lists = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    return write_lines(lists / "list_98pt_rect_attr_train.txt", lines)


LAYOUTS_106 = {"jd": ("picture", "landmark", "{name}.txt"), "lapa": ("images", "landmarks", "{stem}.txt")}


def write_106(root: Path, layout: str, name: str, points: np.ndarray, declared: int | None = None) -> Path:
    image_dir, landmark_dir, label = LAYOUTS_106[layout]
    write_image(root / image_dir / name)
    label_path = root / landmark_dir / label.format(name=name, stem=Path(name).stem)
    return write_lines(label_path, [str(declared or len(points)), *xy_lines(points)])


@pytest.mark.parametrize("header", [True, False], ids=["header", "bare"])
def test_pts_points_become_zero_based(tmp_path, header):
    points = grid_points(68)
    write_pts(tmp_path, points, header=header)
    [sample] = load_annotations(tmp_path, S68)
    assert sample.image == tmp_path / "face.jpg"
    assert sample.points.dtype == np.float32
    np.testing.assert_array_equal(sample.points, points - 1)


def test_pts_errors_name_the_file(tmp_path):
    pts = write_pts(tmp_path / "short", grid_points(67))
    user_error(load_annotations, pts.parent, S68, mentions=[pts, 67, 68])
    pts = write_pts(tmp_path / "header", grid_points(67), declared=68)
    user_error(load_annotations, pts.parent, S68, mentions=[pts, "n_points 68", 67])
    pts = write_pts(tmp_path / "text", grid_points(68))
    lines = pts.read_text().splitlines()
    lines[12] = "12.5 twelve"
    write_lines(pts, lines)
    user_error(load_annotations, pts.parent, S68, mentions=[f"{pts}:13", "twelve"])
    pts = write_pts(tmp_path / "no_image", grid_points(68))
    pts.with_suffix(".jpg").unlink()
    user_error(load_annotations, pts.parent, S68, mentions=[pts, "no image"])


@pytest.mark.parametrize("name", ["labels.csv", "landmarks.csv"])
def test_csv_reads_values_exactly_relative_to_its_folder(tmp_path, name):
    first, second = grid_points(68, 1) - 1, grid_points(68, 2) - 1
    rows = [csv_row("frames/a.jpg", first), csv_row("b.jpg", second)]
    path = write_csv(tmp_path / "data" / name, csv_header(68), rows)
    # A folder is detected through the name landmarks.csv; any .csv file can be given directly.
    for source in (path, path.parent) if name == "landmarks.csv" else (path,):
        samples = load_annotations(source, S68)
        assert [s.image for s in samples] == [path.parent / "frames" / "a.jpg", path.parent / "b.jpg"]
        np.testing.assert_array_equal(samples[0].points, first)
        np.testing.assert_array_equal(samples[1].points, second)
        assert samples[0].points.dtype == np.float32


def test_csv_errors_name_file_and_line(tmp_path):
    good = csv_row("a.jpg", grid_points(68))
    header = [name for name in csv_header(68) if name != "y5"]
    path = write_csv(tmp_path / "missing.csv", header, [good[:-1]])
    user_error(load_annotations, path, S68, mentions=[path, "y5"])
    path = write_csv(tmp_path / "short.csv", csv_header(68), [good, good[:-3]])
    user_error(load_annotations, path, S68, mentions=[f"{path}:3"])
    path = write_csv(tmp_path / "text.csv", csv_header(68), [good[:7] + ["n/a"] + good[8:]])
    user_error(load_annotations, path, S68, mentions=[f"{path}:2", "not a number"])


def test_wflw_points_box_and_attributes(tmp_path):
    points, box, attributes = grid_points(98), (1.5, 2.0, 30.25, 31.0), (1, 0, 1, 0, 0, 1)
    path = write_wflw(tmp_path, [wflw_line(points, box, attributes)])
    for source in (path, path.parent):
        [sample] = load_annotations(source, S98)
        assert sample.image == tmp_path / "WFLW_images" / WFLW_IMAGE
        np.testing.assert_array_equal(sample.points, points)
        np.testing.assert_array_equal(sample.box, box)
        assert sample.attributes == dict(zip(WFLW_ATTRIBUTES, attributes))


def test_wflw_wrong_field_count_names_the_line(tmp_path):
    good = wflw_line(grid_points(98), (0, 0, 9, 9), (0,) * 6)
    path = write_wflw(tmp_path, [good, good.replace(" 0 0 0 0 0 0 ", " 0 0 0 0 0 ")])
    user_error(load_annotations, path, S98, mentions=[f"{path}:2"])


@pytest.mark.parametrize("layout", LAYOUTS_106)
def test_106_layouts_are_read(tmp_path, layout):
    first, second = grid_points(106, 1), grid_points(106, 2)
    write_106(tmp_path, layout, "b.jpg", second)
    write_106(tmp_path, layout, "a.jpg", first)
    samples = load_annotations(tmp_path, S106)
    assert [s.image.name for s in samples] == ["a.jpg", "b.jpg"]
    np.testing.assert_array_equal(samples[0].points, first)
    np.testing.assert_array_equal(samples[1].points, second)


@pytest.mark.parametrize("layout", LAYOUTS_106)
def test_106_errors(tmp_path, layout):
    label = write_106(tmp_path / "count", layout, "a.jpg", grid_points(106), declared=105)
    user_error(load_annotations, tmp_path / "count", S106, mentions=[f"{label}:1", 105, 106])
    write_106(tmp_path / "orphan", layout, "a.jpg", grid_points(106))
    orphan = write_image(tmp_path / "orphan" / LAYOUTS_106[layout][0] / "c.jpg")
    user_error(load_annotations, tmp_path / "orphan", S106, mentions=[orphan])


def test_unsupported_or_missing_paths_are_rejected(tmp_path):
    write_image(tmp_path / "a.jpg")
    write_lines(tmp_path / "notes.txt", ["1 2"])
    user_error(load_annotations, tmp_path, S68, mentions=[tmp_path, "no supported layout"])
    user_error(load_annotations, tmp_path / "notes.txt", S68, mentions=[tmp_path / "notes.txt"])
    user_error(load_annotations, tmp_path / "absent", S68, mentions=[tmp_path / "absent", "does not exist"])


MISMATCHES = {  # layout writer, point count written, scheme it is read as
    "pts": (lambda root: write_pts(root, grid_points(68)).parent, 68, S98),
    "jd": (lambda root: write_106(root, "jd", "a.jpg", grid_points(106)).parents[1], 106, S98),
    "csv": (lambda root: write_csv(root / "a.csv", csv_header(98), [csv_row("a.jpg", grid_points(98))]), 98, S68),
}


@pytest.mark.parametrize("write, written, read_as", MISMATCHES.values(), ids=list(MISMATCHES))
def test_scheme_mismatch_names_both_counts(tmp_path, write, written, read_as):
    message = user_error(load_annotations, write(tmp_path), read_as)
    assert f"{written} points" in message and f"expects {read_as.n_points}" in message


def test_unreadable_image_is_a_user_error(tmp_path):
    good = write_image(tmp_path / "good.jpg")
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not a jpeg " * 20)
    assert read_rgb(good).shape == (32, 32, 3)
    user_error(read_rgb, garbage, mentions=[garbage])
    user_error(decode_all, [good, garbage], mentions=[garbage])


def test_truncated_jpeg_is_a_user_error(tmp_path):
    truncated = tmp_path / "truncated.jpg"
    whole = write_image(tmp_path / "whole.jpg").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    user_error(read_rgb, truncated, mentions=[truncated])


def test_malformed_headers_and_layouts_are_user_errors(tmp_path):
    bad_header = tmp_path / "h" / "a.pts"
    bad_header.parent.mkdir()
    bad_header.write_text("version: 1\nn_points: sixty\n{\n1 1\n}\n")
    user_error(read_pts, bad_header, mentions=[bad_header])
    bad_count = tmp_path / "c.txt"
    bad_count.write_text("many\n1 2\n")
    user_error(read_106_txt, bad_count, mentions=[bad_count])
    wflw = tmp_path / "wflw"
    wflw.mkdir()
    for split in ("train", "test"):
        (wflw / f"list_98pt_rect_attr_{split}.txt").write_text("")
    user_error(load_annotations, wflw, S98, mentions=["several WFLW lists"])


@pytest.mark.parametrize("folder, count", [("300w/testset", 330), ("300w/trainset", 870), ("ytf68/train", 3531)])
def test_real_sources_load(data_root, folder, count):
    samples = load_annotations(data_root / folder, S68)
    assert len(samples) == count
    assert all(s.points.shape == (68, 2) and s.points.dtype == np.float32 for s in samples)
    assert all(s.image.is_file() for s in samples)


def test_real_pts_matches_a_manual_parse(data_root):
    folder = data_root / "300w" / "testset"
    first = sorted(folder.glob("*.pts"))[0]
    body = first.read_text().split("{")[1].split("}")[0]
    expected = (np.asarray(body.split(), dtype=np.float64).reshape(68, 2) - 1).astype(np.float32)
    sample = load_annotations(folder, S68)[0]
    assert sample.image == first.with_suffix(".jpg")
    np.testing.assert_array_equal(sample.points, expected)
