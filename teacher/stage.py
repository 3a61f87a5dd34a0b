"""`facelm teacher`: the pipeline's teacher stage (see facelm/stage.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from facelm.stage import has_training_data, run_stage
from teacher import train

RELEASED_TEACHER = Path("weights/teacher_resnet18.pt")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm teacher", parents=[train.get_args_parser(add_help=False)], add_help=add_help)
    p.add_argument("--released", type=Path, default=RELEASED_TEACHER,
                   help=f"released teacher used when there is no data (default: {RELEASED_TEACHER})")
    return p


def main(args: argparse.Namespace) -> None:
    run_stage("teacher", train.main, args, bool(args.source) or has_training_data(args.data))
