"""Evaluate any model (as a batch function) on a folder in any supported layout; write the JSON report and CED."""
from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from facelm.checkpoint import load_model
from facelm.dataset import decode_all, load_samples
from facelm.errors import UserError
from facelm.inference import BatchFn, flip_averaged, predict_faces
from facelm.metrics import landmark_report, reference_report
from facelm.models import SingleHead
from facelm.plots import plot_ced
from facelm.runs import data_label
from facelm.schemes import Scheme, get_scheme
from facelm.splits import common_test_paths, hand_train_paths
from facelm.stage import RELEASED_STUDENT


class EvalSet:
    """Annotated faces decoded once, so a training run can evaluate every epoch without re-reading files. It may span
    several folders (the 300-W common test set is HELEN's and LFPW's); reports then give each part too."""

    def __init__(self, paths: Path | list[Path], scheme: Scheme, split: str = "all"):
        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        self.scheme = scheme
        self.split = split
        per_path = [load_samples([path], scheme, split) for path in self.paths]
        self.samples = [s for samples in per_path for s in samples]
        self.part = np.concatenate([np.full(len(samples), i) for i, samples in enumerate(per_path)])
        self.images = decode_all([s.image for s in self.samples])
        self.gt = np.stack([s.points for s in self.samples])

    @property
    def label(self) -> str:
        """The folders as cards and tables show them ('300w/testset + lfpw/testset'), with the split if not all."""
        names = " + ".join(data_label(p) for p in self.paths)
        return names if self.split == "all" else f"{names} [{self.split} split]"

    def take(self, indices: list[int]) -> EvalSet:
        """The same set restricted to some of its faces."""
        part = copy.copy(self)
        part.samples = [self.samples[i] for i in indices]
        part.images = [self.images[i] for i in indices]
        part.gt = self.gt[indices]
        part.part = self.part[indices]
        return part

    def parts_report(self, pred: np.ndarray, conf: np.ndarray) -> dict[str, dict]:
        """NME, FR@10 and AUC@10 on each folder's faces."""
        parts = {}
        for index, path in enumerate(self.paths):
            mask = self.part == index
            if mask.any():
                report = landmark_report(pred[mask], self.gt[mask], self.scheme, conf[mask])
                parts[data_label(path)] = {key: report[key] for key in ("n", "nme", "fr10", "auc10")}
        return parts

    def evaluate(self, run_batch: BatchFn, size: int, batch_size: int = 64) -> tuple[dict, np.ndarray, np.ndarray]:
        """The report, plus predicted points (N, K, 2) and confidences (N, K)."""
        pred, conf = predict_faces(run_batch, self.images, list(self.gt), size, batch_size)
        report = landmark_report(pred, self.gt, self.scheme, conf)
        report["data"] = self.label
        if len(self.paths) > 1:
            report["parts"] = self.parts_report(pred, conf)
        report["crop"] = "ground-truth landmark box, eval crop rule"
        return report, pred, conf


def add_eval_args(p: argparse.ArgumentParser) -> None:
    """A training stage's `--eval-data` (validation, every choice) and `--test-data` (the report, once)."""
    p.add_argument("--eval-data", type=Path, nargs="+", default=None,
                   help="in-loop eval folders, which every choice is made on (default: the validation split of "
                        "DATA/300w/trainset and DATA/lfpw/trainset, facelm/splits.py)")
    p.add_argument("--test-data", type=Path, nargs="+", default=None,
                   help="test folders, evaluated once when the run ends, for the report only (default: 300-W common, "
                        "DATA/300w/testset and DATA/lfpw/testset)")


def eval_sets(args: argparse.Namespace, scheme: Scheme) -> tuple[EvalSet | None, EvalSet | None]:
    """The in-loop validation set and the test set: as given, else the fixed splits under --data (None without)."""
    data = Path(args.data) if args.data else None
    if args.eval_data:
        validation = EvalSet(args.eval_data, scheme)
    else:
        validation = EvalSet(hand_train_paths(data), scheme, split="val") if data and hand_train_paths(data) else None
    test_paths = args.test_data or (common_test_paths(data) if data else [])
    return validation, EvalSet(test_paths, scheme) if test_paths else None


def test_once(model: torch.nn.Module, test_set: EvalSet, size: int, device: str, run_dir: Path,
              log: logging.Logger) -> dict:
    """A finished model (one head, tensor in, tensor out) on the test faces, once, for the report:
    `test_report.json` and `ced.png` in the run folder."""
    model.eval()
    report = test_set.evaluate(torch_batch_fn(model, device), size)[0]
    (run_dir / "test_report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot_ced({"final model": np.asarray(report["per_image_nme"]) / 100}, run_dir / "ced.png",
             title=f"CED on {test_set.label}")
    parts = "  ".join(f"{name} {part['nme']:.3f}%" for name, part in report.get("parts", {}).items())
    log.info(f"test on {test_set.label}: NME {report['nme']:.3f}%  FR@10 {report['fr10']:.2f}%  "
             f"AUC@10 {report['auc10']:.4f}  {parts}")
    return report


def summary_line(report: dict) -> str:
    return f"n={report['n']} NME {report['nme']:.3f}%  FR@10 {report['fr10']:.2f}%  AUC@10 {report['auc10']:.4f}"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm eval", add_help=add_help,
                                description="Evaluate a checkpoint on a folder in any supported layout.")
    p.add_argument("--model", type=Path, default=RELEASED_STUDENT,
                   help=f"facelm checkpoint (.pt) or exported model with its sidecar (.onnx, ...) (default: {RELEASED_STUDENT})")
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


def torch_batch_fn(model: torch.nn.Module, device: str = "cpu"):
    """Wrap a tensor->tensor module as the numpy batch function the evaluators take."""

    @torch.no_grad()
    def run(batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(device).contiguous(memory_format=torch.channels_last)
        return model(x).float().cpu().numpy()

    return run


def model_batch_fn(path: Path, head: str | None) -> tuple[BatchFn, str, str, int, str]:
    """Batch function, head, scheme, input size and a description, for a checkpoint or any exported model."""
    if Path(path).suffix == ".pt":
        model, payload = load_model(path)
        heads = payload["spec"]["heads"]
        head = head or next(iter(heads))
        if head not in heads:
            raise UserError(f"{path}: no head {head!r}; it has {', '.join(heads)}")
        return torch_batch_fn(SingleHead(model, head)), head, heads[head], payload["spec"]["input_size"], "PyTorch"
    from facelm.runtimes import load_exported

    run, meta = load_exported(path)
    if head is not None and head != meta["model"]["head"]:
        raise UserError(f"{path}: exported head is {meta['model']['head']!r}, not {head!r}")
    return run, meta["model"]["head"], meta["scheme"]["name"], meta["model"]["input_size"], meta["runtime"]


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
    return {"model": str(path), "runtime": runtime, "mirror": mirror,
            **reference_report(pred, reference, eval_set.gt, eval_set.scheme)}


def main(args: argparse.Namespace) -> dict:
    run, head, scheme, size, runtime = model_batch_fn(args.model, args.head)
    eval_set = EvalSet(args.data, get_scheme(scheme))
    if args.mirror:
        run = flip_averaged(run, eval_set.scheme.flip_perm)
        runtime += ", mirrored"
    start = time.time()
    report, pred, _ = eval_set.evaluate(run, size, args.batch_size)
    report.update(model=str(args.model), head=head, runtime=runtime, mirror=args.mirror, seconds=time.time() - start)
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
