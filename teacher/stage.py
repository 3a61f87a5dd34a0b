"""`facelm teacher`: the pipeline's teacher stage (see facelm/stage.py)."""
from __future__ import annotations

import argparse

from facelm.paths import RELEASED_TEACHER
from facelm.stage import has_training_data, run_stage, stage_args_parser
from facelm.teacher import train


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    return stage_args_parser("teacher", train.get_args_parser(add_help=False), RELEASED_TEACHER, add_help)


def main(args: argparse.Namespace) -> None:
    run_stage("teacher", train.main, args, bool(args.source) or has_training_data(args.data))
