"""Evaluate any model (as a batch function) on a folder in any supported layout; write the JSON report and CED."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from facelm.engine import model_batch_fn, summary_line
from facelm.errors import UserError
from facelm.faces import EvalSet
from facelm.inference import flip_averaged
from facelm.metrics import reference_report
from facelm.paths import RELEASED_STUDENT, shown
from facelm.plots import plot_ced
from facelm.schemes import get_scheme


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm eval", add_help=add_help,
                                description="Evaluate a checkpoint on a folder in any supported layout.")
    p.add_argument("--model", type=Path, default=RELEASED_STUDENT,
                   help=f"facelm checkpoint (.pt) or exported model with its sidecar (.onnx, ...) "
                        f"(default: {shown(RELEASED_STUDENT)})")
    p.add_argument("--data", type=Path, nargs="+", required=True,
                   help="annotated folders or files (300-W, CSV, WFLW, JD/LaPa); several are scored together and each "
                        "part alone, e.g. DATA/300w/testset DATA/lfpw/testset for 300-W common")
    p.add_argument("--report", type=Path, required=True, help="JSON report to write (a CED plot is written beside it)")
    p.add_argument("--head", default=None, help="head to evaluate (default: the checkpoint's first head)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    p.add_argument("--mirror", action="store_true",
                   help="average each crop's points with its mirror image's (test-time mirroring, two runs per face)")
    p.add_argument("--reference", type=Path, default=None,
                   help="a second model (e.g. the teacher) on the same crops: how far the model's points are from it")
    p.add_argument("--reference-mirror", action="store_true",
                   help="mirror-average the reference, as the distillation targets are (student --teacher-flip)")
    return p


def compared_to_reference(eval_set: EvalSet, pred: np.ndarray, path: Path, head: str, mirror: bool) -> dict:
    """The reference model's own NME on the same crops, and how the evaluated points `pred` sit against its points."""
    run, _, scheme, size, runtime = model_batch_fn(path, head)
    if scheme != eval_set.scheme.name:
        raise UserError(f"{path}: head {head!r} is scheme {scheme}, not {eval_set.scheme.name}; pick a reference with "
                        "the same scheme")
    if mirror:
        run = flip_averaged(run, eval_set.scheme.flip_perm)
        runtime += ", mirrored"
    _, reference, _ = eval_set.evaluate(run, size)
    return {"model": shown(path), "runtime": runtime, "mirror": mirror,
            **reference_report(pred, reference, eval_set.gt, eval_set.scheme)}


def main(args: argparse.Namespace) -> dict:
    run, head, scheme, size, runtime = model_batch_fn(args.model, args.head)
    eval_set = EvalSet(args.data, get_scheme(scheme))
    if args.mirror:
        run = flip_averaged(run, eval_set.scheme.flip_perm)
        runtime += ", mirrored"
    start = time.time()
    report, pred, _ = eval_set.evaluate(run, size, args.batch_size)
    report.update(model=shown(args.model), head=head, runtime=runtime, mirror=args.mirror, seconds=time.time() - start)
    if args.reference:
        report["reference"] = compared_to_reference(eval_set, pred, args.reference, head, args.reference_mirror)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    plot_ced({f"{args.model.name} [{head}, {runtime}]": np.asarray(report["per_image_nme"]) / 100},
             args.report.with_suffix(".ced.png"), title=f"CED on {eval_set.label}")
    for part, numbers in report.get("parts", {}).items():
        print(f"  {part}: {summary_line(numbers)}")
    print(f"{eval_set.label}: {summary_line(report)}  ({runtime}) -> {args.report}")
    if args.reference:
        ref = report["reference"]
        print(f"reference {args.reference} ({ref['runtime']}): NME {ref['nme']:.3f}%; the model's points lie "
              f"{ref['distance']:.3f}% (NME units) from it; the model is closer to the truth on {ref['model_closer_share']:.1f}% "
              f"of faces; per-face NME correlation {ref['nme_correlation']:.3f}")
    return report
