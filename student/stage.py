"""`facelm student`: the pipeline's student stage (see facelm/stage.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from facelm.stage import has_training_data, run_stage
from student import train

RELEASED_STUDENT = Path("weights/student_mobilenetv2_050.pt")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm student", parents=[train.get_args_parser(add_help=False)], add_help=add_help)
    p.add_argument("--released", type=Path, default=RELEASED_STUDENT,
                   help=f"released student used when there is no data (default: {RELEASED_STUDENT})")
    return p


def main(args: argparse.Namespace) -> None:
    run_stage("student", train.main, args, bool(args.labelled) or has_training_data(args.data))
