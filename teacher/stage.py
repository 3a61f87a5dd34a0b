"""`facelm teacher`: the pipeline's teacher stage. Trains when the data is there; otherwise says what it skipped
and checks the released weights, so the later stages can run from them."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from facelm.checkpoint import load_model
from facelm.errors import UserError
from teacher import train

RELEASED_TEACHER = Path("weights/teacher_resnet18.pt")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm teacher", parents=[train.get_args_parser(add_help=False)], add_help=add_help)
    p.add_argument("--released", type=Path, default=RELEASED_TEACHER,
                   help=f"released teacher used when there is no data (default: {RELEASED_TEACHER})")
    return p


def data_present(args: argparse.Namespace) -> bool:
    return bool(args.source) or (args.data is not None and (Path(args.data) / "300w" / "trainset").is_dir())


def check_released(path: Path) -> None:
    model, payload = load_model(path)
    size = payload["spec"]["input_size"]
    with torch.no_grad():
        out = model(torch.zeros(1, 3, size, size))
    shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in out.items())
    print(f"released teacher {path} loads and runs ({payload['spec']['arch']}, heads {shapes})")


def main(args: argparse.Namespace) -> None:
    if data_present(args):
        train.main(args)
        return
    print(f"SKIPPED teacher training: no data at DATA={args.data} (expected 300w/trainset under it). "
          "Set DATA to the data root to train; using the released weights instead.")
    if not args.released.is_file():
        raise UserError(f"no released teacher at {args.released}; set DATA to train one")
    check_released(args.released)
