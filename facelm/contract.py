"""The contract every exported model carries: a metadata sidecar `<artefact>.json` (also embedded where the format
allows). A mobile developer needs nothing else to feed the model and read its output. numpy-free and torch-free."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from facelm import __version__
from facelm.errors import UserError
from facelm.geometry import EVAL_CROP_SCALE
from facelm.preprocess import INPUT_MEAN, INPUT_STD
from facelm.runs import file_sha256
from facelm.schemes import get_scheme

if TYPE_CHECKING:  # the format records name their runtimes, whose loader reads sidecars from here
    from facelm.formats import Format

CONTRACT_VERSION = 1


def input_shape(size: int, layout: str) -> list[int]:
    return [1, 3, size, size] if layout == "NCHW" else [1, size, size, 3]


def artefact_meta(spec: dict, head: str, checkpoint_sha256: str, training: dict) -> dict:
    """Everything about inputs and outputs that does not depend on the format; `format_meta` adds the rest."""
    scheme = get_scheme(spec["heads"][head])
    size = spec["input_size"]
    return {
        "facelm_contract": CONTRACT_VERSION,
        "facelm_version": __version__,
        "input": {
            "name": "image", "shape": input_shape(size, "NCHW"), "layout": "NCHW", "dtype": "float32", "channel_order": "RGB",
            "mean": list(INPUT_MEAN), "std": list(INPUT_STD),
            "normalisation": "x = (pixel - mean) / std per channel, pixel in 0..255",
        },
        "crop": {
            "scale": EVAL_CROP_SCALE,
            "rule": f"square of side {EVAL_CROP_SCALE} x max(width, height) of the landmark box (or a detector box "
                    "mapped to it), centred on that box, resampled bilinearly to the input size; outside the image is 0",
        },
        "output": {
            "name": "landmarks", "shape": [1, scheme.n_points, 3], "layout": "per point: x, y, confidence logit",
            "coordinates": "crop-normalised: u = (x_crop + 0.5) / size, so 0 and 1 are the crop's outer edges",
            "to_image": "x_crop = u * size - 0.5, then the inverse of the image-to-crop affine",
            "confidence": "sigmoid(logit): predicted point quality, exp(-error / 2 px at 112) in training",
        },
        "scheme": {"name": scheme.name, "n_points": scheme.n_points, "flip_perm": list(scheme.flip_perm),
                   "eye_corners": list(scheme.eye_corners)},
        "model": {"arch": spec["arch"], "head": head, "input_size": size, "checkpoint_sha256": checkpoint_sha256,
                  "training": training},
    }


def format_meta(meta: dict, fmt: Format) -> dict:
    """The contract of one format before it is written: what is embedded in the model where the format allows."""
    layout = {"layout": fmt.layout, "shape": input_shape(meta["model"]["input_size"], fmt.layout)}
    return {**meta, "input": {**meta["input"], **layout}, "format": fmt.name, "precision": fmt.precision,
            "notes": fmt.notes}


def artefact_files(artefact: Path, fmt: Format) -> list[Path]:
    """The artefact and the companion files that must sit beside it (an NCNN .param and its .bin)."""
    artefact = Path(artefact)
    stem = artefact.name[: -len(fmt.suffix)]
    return [artefact] + [artefact.with_name(stem + suffix) for suffix in fmt.companions]


def artefact_sha256(path: Path) -> str:
    """sha256 of a file; of a directory (an .mlpackage), over its files' POSIX relative paths and sha256s in order."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for item in sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()):
        digest.update(f"{item}\0{file_sha256(path / item)}\n".encode())
    return digest.hexdigest()


def finalise_meta(meta: dict, artefact: Path, fmt: Format, converter: str) -> dict:
    """`format_meta` plus what is known once the file exists: converter, runtime, and every file's sha256."""
    files = {p.name: artefact_sha256(p) for p in artefact_files(artefact, fmt)}
    return {**meta, "converter": converter, "runtime": fmt.runtime.name, "file": Path(artefact).name,
            "sha256": files[Path(artefact).name], "files": files}


def sidecar_path(artefact: Path) -> Path:
    artefact = Path(artefact)
    return artefact.with_name(artefact.name + ".json")


def write_sidecar(artefact: Path, meta: dict) -> Path:
    path = sidecar_path(artefact)
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def read_sidecar(artefact: Path, check_hash: bool = True) -> dict:
    """The sidecar of an exported model, checked against this facelm's contract version and the file's hash."""
    path = sidecar_path(artefact)
    if not path.is_file():
        raise UserError(f"{artefact}: no metadata sidecar {path.name} beside it; re-export with 'facelm export'")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if meta.get("facelm_contract") != CONTRACT_VERSION:
        raise UserError(f"{path}: contract v{meta.get('facelm_contract')} but this facelm reads v{CONTRACT_VERSION}; "
                        "re-export the model with this version")
    if check_hash:
        _check_files(Path(artefact), meta)
    return meta


def _check_files(artefact: Path, meta: dict) -> None:
    for name, sha256 in meta.get("files", {artefact.name: meta.get("sha256")}).items():
        path = artefact.with_name(name) if name != meta.get("file") else artefact
        if not path.exists():
            raise UserError(f"{artefact}: {name} is missing beside it; copy every file listed in its sidecar")
        if sha256 != artefact_sha256(path):
            raise UserError(f"{path}: sha256 does not match its sidecar; the file was changed or is corrupt")
