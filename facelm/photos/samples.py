"""Real photos that installed packages ship, for trying `facelm predict` without any data: scikit-image's
`astronaut` and the group photo `t1.jpg` inside the `insightface` wheel (installed with --no-deps by `make setup`;
only its files are read, the package is never imported).

    facelm sample-photos --out runs/photos
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import cv2

from facelm.errors import UserError


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm sample-photos", add_help=add_help)
    p.add_argument("--out", type=Path, required=True, help="folder to write the photos into")
    return p


def astronaut(out: Path) -> Path:
    try:
        from skimage import data
    except ImportError:
        raise UserError("the astronaut photo comes with scikit-image: pip install 'facelm[predict]'") from None
    path = out / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def insightface_group_photo() -> Path:
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the group photo comes with the insightface wheel: pip install --no-deps insightface==2.1")
    path = Path(spec.submodule_search_locations[0]) / "data" / "images" / "t1.jpg"
    if not path.exists():
        raise UserError(f"{path}: not in this insightface version; pip install --no-deps insightface==2.1")
    return path


def write_sample_photos(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    group = out / "t1.jpg"
    group.write_bytes(insightface_group_photo().read_bytes())
    return [astronaut(out), group]


def main(args: argparse.Namespace) -> list[Path]:
    paths = write_sample_photos(args.out)
    print("wrote " + ", ".join(str(p) for p in paths))
    return paths
