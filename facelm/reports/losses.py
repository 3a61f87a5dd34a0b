"""`facelm plot-losses`: every coordinate loss drawn against the error (docs/losses.png)."""
from __future__ import annotations

import argparse
from pathlib import Path

from facelm.paths import DOCS
from facelm.plots import plot_losses


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm plot-losses", add_help=add_help, description=__doc__.split(": ", 1)[1])
    p.add_argument("--out", type=Path, default=DOCS / "losses.png", help="PNG to write (default: docs/losses.png)")
    return p


def main(args: argparse.Namespace) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"wrote {plot_losses(args.out)}")
