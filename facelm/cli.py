"""The `facelm` command: one entry point, one subcommand per stage or tool. The table names each command's module,
imported only when that command runs; this is the one place above the stages."""
from __future__ import annotations

import importlib
import sys

from facelm import __version__
from facelm.errors import UserError
from facelm.quiet import configure_output

# subcommand -> (module with get_args_parser() and main(args), help)
COMMANDS = {
    "teacher": ("facelm.teacher.stage", "teacher stage: train when DATA is present, else check the released weights"),
    "train-teacher": ("facelm.teacher.train", "train the multi-head ResNet teacher"),
    "ablation-report": ("facelm.teacher.ablation", "compare teacher runs that differ only in the loss"),
    "loader-bench": ("facelm.teacher.loader_bench", "augmented images per second of the training loader"),
    "pseudo-label": ("facelm.teacher.pseudo_label", "label face photos with dlib's ERT or the teacher, for a teacher head"),
    "student": ("facelm.student.stage", "student stage: distil when DATA is present, else check the released weights"),
    "train-student": ("facelm.student.train", "distil a depthwise student from the teacher (or train it on labels alone)"),
    "student-report": ("facelm.student.report", "A/B (labels alone vs distilled) and family table from student runs"),
    "pareto": ("facelm.student.pareto", "every student family: common NME against int8 TFLite latency and size, with dlib"),
    "release": ("facelm.reports.release", "copy a teacher or student run's weights to weights/ with a model card"),
    "export": ("facelm.export.run", "export a student to every deployment format and verify each against PyTorch"),
    "bench": ("facelm.bench.run", "latency, size and accuracy of every exported model, each through its own runtime"),
    "gate": ("facelm.bench.gate", "CI regression gates: accuracy and latency ratios against bench/baseline.json"),
    "calibrate-detector": ("facelm.photos.calibrate", "fit the detector-box-to-crop mapping; detector vs ground-truth crop NME"),
    "predict": ("facelm.photos.predict", "landmarks on photos: detect faces, crop, run any model; JSON + overlay images"),
    "sample-photos": ("facelm.photos.samples", "write the real photos that installed packages ship (for trying predict)"),
    "track": ("facelm.video.track", "track landmarks through a video: annotated video + JSON track"),
    "stability": ("facelm.video.stability", "tracking NME and jitter (NMJ) with/without One-Euro smoothing on synthetic clips"),
    "peer": ("facelm.reports.peer", "dlib's 68-point ERT beside our models on 300-W common, under two box protocols"),
    "eval": ("facelm.reports.evaluate", "evaluate a model on any annotated folder; JSON report + CED plot"),
    "figures": ("facelm.reports.figures", "CED of every model, training curves, per-region NME, worst/best faces (docs/figures)"),
    "plot-losses": ("facelm.reports.losses", "draw every coordinate loss against the error"),
    "model-stats": ("facelm.models.stats", "parameters, MMACs and fp32 size of every registered model"),
    "readme": ("facelm.reports.readme", "fill the README's result tables from the committed reports"),
}


def usage() -> str:
    width = max(map(len, COMMANDS)) + 2
    lines = "\n".join(f"  {name:<{width}}{help_}" for name, (_, help_) in COMMANDS.items())
    return (f"usage: facelm [-v] [--version] COMMAND [options]\n\n"
            f"  -v, --verbose  every library's log lines and warnings too\n  --version      print the version and exit\n\n"
            f"commands (facelm COMMAND --help for a command's options):\n{lines}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verbose = bool(argv) and argv[0] in ("-v", "--verbose")
    argv = argv[verbose:]
    configure_output(verbose)
    if argv and argv[0] == "--version":
        print(f"facelm {__version__}")
        return 0
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        unknown = f"facelm: unknown command {argv[0]!r}\n" if argv else ""
        print(unknown + usage(), file=sys.stderr)
        return 2
    name = argv[0]
    try:
        module = importlib.import_module(COMMANDS[name][0])
        if module.main(module.get_args_parser().parse_args(argv[1:])) is False:  # a gate that did not pass
            return 1
    except UserError as exc:
        print(f"facelm {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"facelm {name}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
