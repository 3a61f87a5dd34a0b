"""Label folders of face photos with an offline labeller, for the teacher to train a head of their own on.

    facelm pseudo-label --data $DATA --labeller dlib            # dlib's 68-point ERT on a 4x upscaled image
    facelm pseudo-label --data $DATA --labeller teacher         # the released teacher, mirror-averaged

Each folder becomes `<out>/<labeller>-<key>/<folder>/landmarks.csv` (the project's CSV layout, 0-based pixels, image
paths relative to the CSV) with `provenance.json` beside it: labeller and version, box rule, upscale and each
image's sha256. The key digests the labeller and every input, so a second call with the same inputs reuses the
labels. Train on them with `facelm train-teacher --source dlib68:68:<csv>[,<csv>...]`.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from facelm.checkpoint import load_model
from facelm.detect import read_calibration
from facelm.engine import torch_batch_fn
from facelm.errors import UserError
from facelm.faces import decode_all
from facelm.inference import flip_averaged
from facelm.labellers import (
    dlib_model_file,
    dlib_points,
    dlib_predictor,
    dlib_version,
    largest_hog_box,
    mapped_boxes,
    settled_outputs,
)
from facelm.models import SingleHead
from facelm.paths import RELEASED_CALIBRATION, RELEASED_TEACHER, RUNS, shown
from facelm.runs import file_sha256, provenance, write_json
from facelm.schemes import get_scheme
from facelm.student.pseudo import UnlabelledFolder, read_unlabelled

PHOTO_FOLDERS = ("unlabeled/lfw", "unlabeled/celeba", "unlabeled/utkface", "ytf68/unlabeled")
LABELLERS = ("dlib", "teacher")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm pseudo-label", add_help=add_help,
                                description="Put 68 landmarks on folders of face photos with an offline labeller.")
    p.add_argument("--data", type=Path, default=os.environ.get("DATA"), help="data root (default: $DATA)")
    p.add_argument("--images", type=Path, nargs="+", default=None,
                   help=f"photo folders, each with an optional boxes.csv (default: {', '.join(PHOTO_FOLDERS)} under --data)")
    p.add_argument("--labeller", default="dlib", choices=LABELLERS, help="dlib's ERT or a facelm teacher (default: dlib)")
    p.add_argument("--upscale", type=int, default=4,
                   help="dlib predicts on the photo upscaled this many times, then maps back (default: 4)")
    p.add_argument("--teacher", type=Path, default=RELEASED_TEACHER,
                   help=f"the teacher labeller's checkpoint (default: {shown(RELEASED_TEACHER)})")
    p.add_argument("--head", default="300w", help="the teacher head that labels (default: 300w)")
    p.add_argument("--calibration", type=Path, default=RELEASED_CALIBRATION,
                   help="maps boxes.csv (dlib HOG boxes) to the teacher's landmark box (default: "
                        f"{RELEASED_CALIBRATION})")
    p.add_argument("--out", type=Path, default=RUNS / "pseudo", help="label cache root (default: runs/pseudo)")
    return p


def photo_folders(args: argparse.Namespace) -> list[Path]:
    if args.images:
        return list(args.images)
    if not args.data:
        raise UserError("no photos: set DATA=/path/to/data or pass --images FOLDER [FOLDER ...]")
    return [Path(args.data) / rel for rel in PHOTO_FOLDERS]


def folder_name(folder: Path) -> str:
    """`lfw` for unlabeled/lfw, `ytf68` for ytf68/unlabeled: the dataset a folder of photos belongs to."""
    folder = folder.resolve()
    return folder.parent.name if folder.name.lower() in ("unlabeled", "unlabelled") else folder.name


class Labeller:
    """One labeller: its identity (what its labels depend on besides the photos) and a function from decoded photos
    and their folder to points (N, 68, 2) with a mask of the photos it labelled."""

    def __init__(self, args: argparse.Namespace):
        self.kind = args.labeller
        if self.kind == "dlib":
            self.predictor = dlib_predictor()
            self.upscale = args.upscale
            self.identity = {"labeller": "dlib ERT 68 (iBUG 300-W trained)", "dlib": dlib_version(),
                             "model": dlib_model_file().name, "model_sha256": file_sha256(dlib_model_file()),
                             "upscale": args.upscale,
                             "box_rule": "boxes.csv box (dlib HOG, dlib's convention) where given, else dlib's HOG "
                                         "detector's largest box; no label where it finds no face",
                             "licence": "dlib's 68-point model follows iBUG 300-W: non-commercial research only"}
            return
        model, payload = load_model(args.teacher)
        if args.head not in payload["spec"]["heads"]:
            raise UserError(f"{args.teacher}: no head {args.head!r}; it has {', '.join(payload['spec']['heads'])}")
        scheme = get_scheme(payload["spec"]["heads"][args.head])
        self.run = flip_averaged(torch_batch_fn(SingleHead(model, args.head)), scheme.flip_perm)
        self.size = payload["spec"]["input_size"]
        self.calibration = read_calibration(args.calibration, "hog")
        self.identity = {"labeller": f"facelm teacher {payload['spec']['arch']}, head {args.head}, mirror-averaged",
                         "checkpoint": shown(args.teacher), "checkpoint_sha256": file_sha256(args.teacher),
                         "calibration": asdict(self.calibration),
                         "box_rule": "boxes.csv box mapped by the hog calibration, then 3 passes re-cropped on the "
                                     "teacher's own points"}

    def label(self, folder: UnlabelledFolder, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "dlib":
            boxes = list(folder.boxes) if folder.boxes is not None else [largest_hog_box(image) for image in images]
            found = np.array([box is not None for box in boxes])
            points = np.zeros((len(images), 68, 2), np.float32)
            for i in np.flatnonzero(found):
                points[i] = dlib_points(self.predictor, images[i], boxes[i], self.upscale)
            return points, found
        if folder.boxes is None:
            raise UserError(f"{folder.path}: the teacher labeller needs a boxes.csv to place its first crop")
        outputs, _ = settled_outputs(self.run, images, mapped_boxes(folder.boxes, self.calibration), self.size)
        return outputs[..., :2], np.ones(len(images), bool)


def labels_key(identity: dict, image_hashes: list[str], folder: UnlabelledFolder) -> str:
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    for path, sha in zip(folder.images, image_hashes):
        digest.update(f"{path.name}:{sha}".encode())
    if folder.boxes is not None:
        digest.update(np.ascontiguousarray(folder.boxes, np.float32).tobytes())
    return digest.hexdigest()[:16]


def write_labels(csv_path: Path, folder: UnlabelledFolder, points: np.ndarray, found: np.ndarray) -> int:
    """The project's CSV layout, written whole or not at all (a temporary file renamed at the end)."""
    tmp = csv_path.with_suffix(".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image"] + [f"{axis}{i}" for i in range(points.shape[1]) for axis in "xy"])
        for path, row, ok in zip(folder.images, points, found):
            if ok:
                writer.writerow([os.path.relpath(path, csv_path.parent)] + [f"{v:.3f}" for v in row.ravel()])
    tmp.replace(csv_path)
    return int(found.sum())


def label_folder(labeller: Labeller, path: Path, out: Path) -> Path:
    """Label one photo folder (or reuse the labels of the same labeller and photos); returns its landmarks.csv."""
    folder = read_unlabelled(path)
    images = decode_all(folder.images)  # every photo decodes before anything is written
    hashes = [file_sha256(p) for p in folder.images]
    target = out / f"{labeller.kind}-{labels_key(labeller.identity, hashes, folder)}" / folder_name(path)
    csv_path = target / "landmarks.csv"
    if csv_path.is_file() and (target / "provenance.json").is_file():
        print(f"{path}: labels cached in {csv_path}")
        return csv_path
    points, found = labeller.label(folder, images)
    target.mkdir(parents=True, exist_ok=True)
    labelled = write_labels(csv_path, folder, points, found)
    write_json(target / "provenance.json", {
        **labeller.identity, "photos": str(path), "n_images": len(images), "n_labelled": labelled,
        "no_face": [p.name for p, ok in zip(folder.images, found) if not ok],
        "image_sha256": {p.name: sha for p, sha in zip(folder.images, hashes)}, **provenance()})
    print(f"{path}: {labelled} of {len(images)} photos labelled by {labeller.kind} -> {csv_path}")
    return csv_path


def main(args: argparse.Namespace) -> list[Path]:
    if args.upscale < 1:
        raise UserError(f"--upscale {args.upscale}: use 1 (no upscaling) or more")
    folders = photo_folders(args)
    for folder in folders:
        read_unlabelled(folder)  # a missing folder or a bad boxes.csv stops the run before any labelling
    labeller = Labeller(args)
    paths = [label_folder(labeller, folder, args.out) for folder in folders]
    print("train on them with: --source " + f"{args.labeller}68:68:" + ",".join(str(p) for p in paths))
    return paths
