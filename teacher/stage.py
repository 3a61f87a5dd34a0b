"""`facelm teacher`: the pipeline's teacher stage (see facelm/stage.py).

With `--pretrain LABELLER` it is two runs: a teacher trained on that labeller's points on the photos alone
(`facelm pseudo-label`, cached), then the recipe's own sources from its weights (`--init`), with `--epochs` split
between the two so the compute is the one-stage recipe's.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

from facelm.errors import UserError
from facelm.paths import RELEASED_TEACHER
from facelm.stage import has_training_data, run_stage, stage_args_parser
from facelm.teacher import pseudo_label, train

PRETRAIN = "none"  # the release recipe has one stage: pretraining on dlib's labels did not beat it (docs/teacher.md)
PRETRAIN_EPOCHS = 50
# The default sources' epoch at batch 64 (5,053 faces): the first stage's epochs are as long as the second's.
PRETRAIN_STEPS_PER_EPOCH = 78


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = stage_args_parser("teacher", train.get_args_parser(add_help=False), RELEASED_TEACHER, add_help)
    p.add_argument("--pretrain", default=PRETRAIN, choices=("none", *pseudo_label.LABELLERS),
                   help="first train on the photos labelled by this labeller alone, then on the sources from those "
                        "weights; none: one run (default: %(default)s)")
    p.add_argument("--pretrain-epochs", type=int, default=PRETRAIN_EPOCHS,
                   help="of --epochs, how many the first stage takes (default: %(default)s)")
    return p


def pretrained_weights(args: argparse.Namespace) -> Path:
    """The first stage's last.pt: a teacher trained on the --pretrain labeller's points on the photos alone."""
    labels = pseudo_label.main(pseudo_label.get_args_parser().parse_args(
        ["--data", str(args.data), "--labeller", args.pretrain]))
    head = f"{args.pretrain}68"
    first = copy.copy(args)
    first.source, first.source_share, first.eval_head = [f"{head}:68:" + ",".join(map(str, labels))], [], head
    first.epochs, first.init = args.pretrain_epochs, None
    first.steps_per_epoch = args.steps_per_epoch or PRETRAIN_STEPS_PER_EPOCH
    first.name = f"{train.run_name(args)}-pretrain"
    return Path(train.main(first)["run_dir"]) / "last.pt"


def train_in_stages(args: argparse.Namespace) -> dict:
    """One run, or with --pretrain the first stage and then the sources from its weights."""
    if args.pretrain == "none":
        return train.main(args)
    if args.init:
        raise UserError("--init and --pretrain both set where training starts; pass --pretrain none with --init")
    if not 0 < args.pretrain_epochs < args.epochs:
        raise UserError(f"--pretrain-epochs {args.pretrain_epochs}: it must be between 0 and --epochs ({args.epochs}), "
                        "as the first stage takes that many of them")
    args.init = str(pretrained_weights(args))
    args.epochs -= args.pretrain_epochs
    return train.main(args)


def main(args: argparse.Namespace) -> None:
    run_stage("teacher", train_in_stages, args, bool(args.source) or has_training_data(args.data))
