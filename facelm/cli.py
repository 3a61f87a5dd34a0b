"""The `facelm` command: one entry point, one subcommand per stage or tool."""
from __future__ import annotations

import argparse
import sys

from facelm.errors import UserError


def _train_teacher(argv: list[str]) -> None:
    from teacher.train import get_args_parser, main

    main(get_args_parser().parse_args(argv))


COMMANDS = {
    "train-teacher": (_train_teacher, "train the multi-head ResNet teacher"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        lines = "\n".join(f"  {name:16s}{help_}" for name, (_, help_) in COMMANDS.items())
        print(f"usage: facelm COMMAND [options]\n\ncommands:\n{lines}", file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        COMMANDS[argv[0]][0](argv[1:])
    except UserError as exc:
        print(f"facelm {argv[0]}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
