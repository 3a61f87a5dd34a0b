"""A pipeline stage's front door: train when the data is there; otherwise say what was skipped and check that the
released weights load and run, so the next stage can start from them."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import torch

from facelm.checkpoint import load_model
from facelm.errors import UserError


def stage_args_parser(stage: str, train_parser: argparse.ArgumentParser, released: Path,
                      add_help: bool = True) -> argparse.ArgumentParser:
    """The training options plus `--released`, the weights the stage falls back on without data."""
    p = argparse.ArgumentParser(f"facelm {stage}", parents=[train_parser], add_help=add_help)
    p.add_argument("--released", type=Path, default=released,
                   help=f"released {stage} used when there is no data (default: {released})")
    return p


def check_released(path: Path) -> None:
    model, payload = load_model(path)
    size = payload["spec"]["input_size"]
    with torch.no_grad():
        out = model(torch.zeros(1, 3, size, size))
    shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in out.items())
    print(f"released {path} loads and runs ({payload['spec']['arch']}, heads {shapes})")


def run_stage(stage: str, train: Callable[[argparse.Namespace], dict], args: argparse.Namespace, data_present: bool) -> None:
    if data_present:
        train(args)
        return
    print(f"SKIPPED {stage} training: DATA is not set. Set DATA to the data root to train (e.g. DATA=../shared/data); "
          "using the released weights instead.")
    if not args.released.is_file():
        raise UserError(f"no released {stage} at {args.released}; set DATA to train one")
    check_released(args.released)


def has_training_data(data: Path | str | None, needs: str = "300w/trainset") -> bool:
    """True when the data root holds the data; False when it is unset, the released-weights-only run. A root that is
    named but missing or without `needs` is a mistake, never a silent skip."""
    if data is None or str(data) == "":
        return False
    if not Path(data).is_dir():
        raise UserError(f"DATA={data}: no such folder; set DATA to the data root (the folder holding 300w/), or leave it "
                        "unset to check the released weights only")
    if not (Path(data) / needs).is_dir():
        raise UserError(f"DATA={data}: no {needs} under it; set DATA to the data root (see the README's data table), or "
                        "leave it unset to check the released weights only")
    return True
