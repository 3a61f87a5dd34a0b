"""`facelm student`: the pipeline's student stage (see facelm/stage.py)."""
from __future__ import annotations

import argparse

from facelm.paths import RELEASED_STUDENT
from facelm.stage import has_training_data, run_stage, stage_args_parser
from facelm.student import train


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    return stage_args_parser("student", train.get_args_parser(add_help=False), RELEASED_STUDENT, add_help)


def main(args: argparse.Namespace) -> None:
    run_stage("student", train.main, args, bool(args.labelled) or has_training_data(args.data))
