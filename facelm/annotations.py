"""Readers for the published annotation layouts. Every reader returns `Sample`s with 0-based pixel-centre points.

Layouts:
- 300-W: `<name>.pts` beside `<name>.jpg|png`, 1-based, with or without the `version`/`n_points` header.
- CSV: one row per image, columns `image, x0, y0, ... x{K-1}, y{K-1}`, 0-based.
- WFLW: `list_98pt_rect_attr_*.txt`, 196 coordinates, a box, 6 attributes and an image path per line.
- JD-landmark / LaPa (106): `landmark(s)/<image>.txt` with a point-count line then `x y` lines, 0-based.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facelm.errors import UserError
from facelm.schemes import Scheme

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make_up", "occlusion", "blur")


@dataclass
class Sample:
    image: Path
    points: np.ndarray  # (K, 2) float32, 0-based pixel centres
    box: np.ndarray | None = None  # (4,) x0, y0, x1, y1 where the layout gives one
    attributes: dict[str, int] = field(default_factory=dict)


def _check_count(points: np.ndarray, scheme: Scheme, where: str) -> None:
    if len(points) != scheme.n_points:
        raise UserError(
            f"{where}: has {len(points)} points but scheme '{scheme.name}' expects {scheme.n_points}; "
            "pass the scheme that matches the file"
        )


def read_pts(path: Path) -> np.ndarray:
    """Points of a 300-W `.pts` file, converted from 1-based to 0-based."""
    rows: list[tuple[float, float]] = []
    declared = None
    for line_no, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line in "{}":
            continue
        if line.startswith("version"):
            continue
        if line.startswith("n_points"):
            try:
                declared = int(line.split(":")[1])
            except (ValueError, IndexError):
                raise UserError(f"{path}:{line_no}: bad header {raw!r}; expected 'n_points: N'") from None
            continue
        parts = line.split()
        try:
            x, y = float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            raise UserError(f"{path}:{line_no}: expected 'x y', got {raw!r}; fix or remove the line") from None
        rows.append((x - 1.0, y - 1.0))
    points = np.asarray(rows, dtype=np.float32).reshape(-1, 2)
    if declared is not None and declared != len(points):
        raise UserError(f"{path}: header says n_points {declared} but the file has {len(points)} points")
    return points


def _image_beside(annotation: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        candidate = annotation.with_suffix(suffix)
        if candidate.exists():
            return candidate
    raise UserError(f"{annotation}: no image beside it (looked for {', '.join(IMAGE_SUFFIXES)})")


def load_pts_folder(folder: Path, scheme: Scheme) -> list[Sample]:
    files = sorted(folder.glob("*.pts"))
    if not files:
        raise UserError(f"{folder}: no .pts files; point the data setting at a 300-W style folder")
    samples = []
    for pts in files:
        points = read_pts(pts)
        _check_count(points, scheme, str(pts))
        samples.append(Sample(image=_image_beside(pts), points=points))
    return samples


def load_csv(path: Path, scheme: Scheme) -> list[Sample]:
    """One row per image: `image, x0, y0, ...`; image paths are relative to the CSV's folder."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise UserError(f"{path}: empty CSV; expected a header 'image, x0, y0, ...'")
        expected = ["image"] + [f"{axis}{i}" for i in range(scheme.n_points) for axis in "xy"]
        missing = [name for name in expected if name not in header]
        if missing:
            raise UserError(
                f"{path}:1: missing column(s) {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''} "
                f"for scheme '{scheme.name}'; the header must be 'image, x0, y0, ... "
                f"x{scheme.n_points - 1}, y{scheme.n_points - 1}'"
            )
        if len(header) != len(expected):
            raise UserError(
                f"{path}:1: {(len(header) - 1) // 2} points per row but scheme '{scheme.name}' expects {scheme.n_points}"
            )
        columns = [header.index(name) for name in expected[1:]]
        image_col = header.index("image")
        samples = []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise UserError(f"{path}:{line_no}: {len(row)} fields, header has {len(header)}")
            try:
                coords = np.asarray([float(row[c]) for c in columns], dtype=np.float32)
            except ValueError:
                raise UserError(f"{path}:{line_no}: a coordinate is not a number") from None
            samples.append(Sample(image=path.parent / row[image_col], points=coords.reshape(-1, 2)))
    return samples


def load_wflw(annotation: Path, images_root: Path, scheme: Scheme) -> list[Sample]:
    """WFLW's `list_98pt_rect_attr_{train,test}.txt`: 196 coords, x_min y_min x_max y_max, 6 attributes, path."""
    n_coords = 2 * scheme.n_points
    samples = []
    for line_no, raw in enumerate(annotation.read_text().splitlines(), start=1):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) != n_coords + 4 + len(WFLW_ATTRIBUTES) + 1:
            raise UserError(
                f"{annotation}:{line_no}: {len(parts)} fields, a WFLW line for scheme '{scheme.name}' has "
                f"{n_coords + 4 + len(WFLW_ATTRIBUTES) + 1} (coords, box, 6 attributes, image path)"
            )
        try:
            values = np.asarray(parts[: n_coords + 4], dtype=np.float32)
            attributes = [int(v) for v in parts[n_coords + 4 : -1]]
        except ValueError:
            raise UserError(f"{annotation}:{line_no}: a coordinate or attribute is not a number") from None
        samples.append(
            Sample(
                image=images_root / parts[-1],
                points=values[:n_coords].reshape(-1, 2),
                box=values[n_coords:],
                attributes=dict(zip(WFLW_ATTRIBUTES, attributes)),
            )
        )
    if not samples:
        raise UserError(f"{annotation}: no annotation lines")
    return samples


def read_106_txt(path: Path) -> np.ndarray:
    """A JD-landmark / LaPa landmark file: first line the point count, then one `x y` line per point."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise UserError(f"{path}: empty landmark file")
    start = 1 if len(lines[0]) == 1 else 0
    try:
        points = np.asarray([[float(v) for v in parts[:2]] for parts in lines[start:]], dtype=np.float32)
        declared = int(float(lines[0][0])) if start else len(points)
    except ValueError:
        raise UserError(f"{path}: a point count or coordinate is not a number") from None
    if declared != len(points):
        raise UserError(f"{path}:1: declares {declared} points but the file has {len(points)}")
    return points.reshape(-1, 2)


def _landmark_file_for(image: Path, landmark_dir: Path) -> Path | None:
    for candidate in (landmark_dir / f"{image.name}.txt", landmark_dir / f"{image.stem}.txt"):
        if candidate.exists():
            return candidate
    return None


def load_106_folder(root: Path, scheme: Scheme) -> list[Sample]:
    """JD-landmark (`picture/` + `landmark/<img>.jpg.txt`) or LaPa (`images/` + `landmarks/<img>.txt`)."""
    for image_dir_name, landmark_dir_name in (("picture", "landmark"), ("images", "landmarks")):
        image_dir, landmark_dir = root / image_dir_name, root / landmark_dir_name
        if image_dir.is_dir() and landmark_dir.is_dir():
            break
    else:
        raise UserError(f"{root}: expected picture/+landmark/ (JD-landmark) or images/+landmarks/ (LaPa)")
    samples = []
    for image in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        annotation = _landmark_file_for(image, landmark_dir)
        if annotation is None:
            raise UserError(f"{image}: no landmark file in {landmark_dir}")
        points = read_106_txt(annotation)
        _check_count(points, scheme, str(annotation))
        samples.append(Sample(image=image, points=points))
    if not samples:
        raise UserError(f"{image_dir}: no images")
    return samples


def load_annotations(path: Path, scheme: Scheme) -> list[Sample]:
    """Read any supported layout, detected from what `path` holds."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: does not exist; set DATA to the folder that holds the datasets")
    if path.is_file():
        if path.suffix == ".csv":
            return load_csv(path, scheme)
        if path.name.startswith("list_") and path.suffix == ".txt":
            return load_wflw(path, _wflw_images_root(path), scheme)
        raise UserError(f"{path}: not a supported annotation file (.csv or WFLW list_98pt_rect_attr_*.txt)")
    if (path / "landmarks.csv").exists():
        return load_csv(path / "landmarks.csv", scheme)
    if any(path.glob("*.pts")):
        return load_pts_folder(path, scheme)
    if (path / "landmark").is_dir() or (path / "landmarks").is_dir():
        return load_106_folder(path, scheme)
    wflw_lists = sorted(path.glob("list_98pt_rect_attr_*.txt"))
    if len(wflw_lists) == 1:
        return load_wflw(wflw_lists[0], _wflw_images_root(wflw_lists[0]), scheme)
    if len(wflw_lists) > 1:
        raise UserError(f"{path}: several WFLW lists ({', '.join(p.name for p in wflw_lists)}); pass one of them")
    raise UserError(
        f"{path}: no supported layout found (300-W .pts, landmarks.csv, WFLW list file, JD-landmark/LaPa folders)"
    )


def _wflw_images_root(annotation: Path) -> Path:
    """WFLW ships `WFLW_annotations/list_98pt_rect_attr_train_test/` beside `WFLW_images/`."""
    for parent in annotation.parents:
        if (parent / "WFLW_images").is_dir():
            return parent / "WFLW_images"
    return annotation.parent
