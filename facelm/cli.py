"""The `facelm` command: one entry point, one subcommand per stage or tool. Modules are imported lazily."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from facelm.errors import UserError
from facelm.quiet import configure_output

# subcommand -> (module with get_args_parser() and main(args), help)
COMMANDS = {
    "teacher": ("teacher.stage", "teacher stage: train when DATA is present, else check the released weights"),
    "train-teacher": ("teacher.train", "train the multi-head ResNet teacher"),
    "ablation-report": ("teacher.ablation", "compare teacher runs that differ only in the loss"),
    "loader-bench": ("teacher.loader_bench", "augmented images per second of the training loader"),
    "pseudo-label": ("teacher.pseudo_label", "label face photos with dlib's ERT or the teacher, for a teacher head"),
    "student": ("student.stage", "student stage: distil when DATA is present, else check the released weights"),
    "train-student": ("student.train", "distil a depthwise student from the teacher (or train it on labels alone)"),
    "student-report": ("student.report", "A/B (labels alone vs distilled) and family table from student runs"),
    "release": ("facelm.release", "copy a teacher or student run's weights to weights/ with a model card"),
    "export": ("export.run", "export a student to every deployment format and verify each against PyTorch"),
    "calibrate-detector": ("facelm.calibrate", "fit the detector-box-to-crop mapping; detector vs ground-truth crop NME"),
    "predict": ("facelm.predict", "landmarks on photos: detect faces, crop, run any model; JSON + overlay images"),
    "sample-photos": ("facelm.samples", "write the real photos that installed packages ship (for trying predict)"),
    "track": ("facelm.track", "track landmarks through a video: annotated video + JSON track"),
    "stability": ("facelm.stability", "tracking NME and jitter (NMJ) with/without One-Euro smoothing on synthetic clips"),
    "peer": ("facelm.peer", "dlib's 68-point ERT beside our models on 300-W common, under two box protocols"),
    "eval": ("facelm.evaluation", "evaluate a model on any annotated folder; JSON report + CED plot"),
    "figures": ("facelm.figures", "CED of every model, training curves, per-region NME, worst/best faces (docs/figures)"),
    "plot-losses": ("facelm.cli", "draw every coordinate loss against the error"),
    "model-stats": ("facelm.models.stats", "parameters, MMACs and fp32 size of every registered model"),
    "readme": ("facelm.readme", "fill the README's result tables from the committed reports"),
}


def name_values(texts: list[str], option: str, example: str) -> dict[str, float]:
    """Repeated `NAME=NUMBER` option values as {name: number}; a malformed one is a one-line user error."""
    values = {}
    for text in texts:
        name, _, value = text.partition("=")
        try:
            values[name] = float(value)
        except ValueError:
            raise UserError(f"{option} {text!r}: expected NAME=NUMBER, e.g. {example}") from None
    return values


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm plot-losses", add_help=add_help)
    p.add_argument("--out", type=Path, default=Path("docs/losses.png"), help="PNG to write (default: docs/losses.png)")
    return p


def main_plot_losses(args: argparse.Namespace) -> None:
    from facelm.plots import plot_losses

    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"wrote {plot_losses(args.out)}")


def usage() -> str:
    lines = "\n".join(f"  {name:17s}{help_}" for name, (_, help_) in COMMANDS.items())
    return (f"usage: facelm [-v] COMMAND [options]   (facelm COMMAND --help for its options; -v: every library's "
            f"log lines and warnings too)\n\ncommands:\n{lines}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verbose = bool(argv) and argv[0] in ("-v", "--verbose")
    argv = argv[verbose:]
    configure_output(verbose)
    if not argv or argv[0] not in COMMANDS:
        print(usage(), file=sys.stderr)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    name = argv[0]
    try:
        if name == "plot-losses":
            main_plot_losses(get_args_parser().parse_args(argv[1:]))
        else:
            module = importlib.import_module(COMMANDS[name][0])
            module.main(module.get_args_parser().parse_args(argv[1:]))
    except UserError as exc:
        print(f"facelm {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"facelm {name}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
