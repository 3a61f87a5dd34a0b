"""Evaluate any model (as a batch function) on a folder in any supported layout; write the JSON report and CED."""
from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from facelm.annotations import load_annotations
from facelm.checkpoint import load_model
from facelm.dataset import decode_all
from facelm.errors import UserError
from facelm.inference import BatchFn, predict_faces
from facelm.metrics import landmark_report
from facelm.models import SingleHead
from facelm.plots import plot_ced
from facelm.schemes import Scheme, get_scheme
from facelm.stage import RELEASED_STUDENT


class EvalSet:
    """Annotated faces decoded once, so a training run can evaluate every epoch without re-reading files."""

    def __init__(self, path: Path, scheme: Scheme):
        self.path = Path(path)
        self.scheme = scheme
        self.samples = load_annotations(self.path, scheme)
        self.images = decode_all([s.image for s in self.samples])
        self.gt = np.stack([s.points for s in self.samples])

    def take(self, indices: list[int]) -> EvalSet:
        """The same set restricted to some of its faces."""
        part = copy.copy(self)
        part.samples = [self.samples[i] for i in indices]
        part.images = [self.images[i] for i in indices]
        part.gt = self.gt[indices]
        return part

    def evaluate(self, run_batch: BatchFn, size: int) -> tuple[dict, np.ndarray, np.ndarray]:
        """The report, plus predicted points (N, K, 2) and confidences (N, K)."""
        pred, conf = predict_faces(run_batch, self.images, list(self.gt), size)
        report = landmark_report(pred, self.gt, self.scheme, conf)
        report["data"] = str(self.path)
        report["crop"] = "ground-truth landmark box, eval crop rule"
        return report, pred, conf


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm eval", add_help=add_help,
                                description="Evaluate a checkpoint on a folder in any supported layout.")
    p.add_argument("--model", type=Path, default=RELEASED_STUDENT,
                   help=f"facelm checkpoint (.pt) or exported model with its sidecar (.onnx, ...) (default: {RELEASED_STUDENT})")
    p.add_argument("--data", type=Path, required=True, help="annotated folder or file (300-W, CSV, WFLW, JD/LaPa)")
    p.add_argument("--report", type=Path, required=True, help="JSON report to write (a CED plot is written beside it)")
    p.add_argument("--head", default=None, help="head to evaluate (default: the checkpoint's first head)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
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


def main(args: argparse.Namespace) -> dict:
    run, head, scheme, size, runtime = model_batch_fn(args.model, args.head)
    eval_set = EvalSet(args.data, get_scheme(scheme))
    start = time.time()
    report, _, _ = eval_set.evaluate(run, size)
    report.update(model=str(args.model), head=head, runtime=runtime, seconds=time.time() - start)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    plot_ced({f"{args.model.name} [{head}, {runtime}]": np.asarray(report["per_image_nme"]) / 100},
             args.report.with_suffix(".ced.png"), title=f"CED on {args.data}")
    print(f"{args.data}: n={report['n']} NME {report['nme']:.3f}%  FR@10 {report['fr10']:.2f}%  AUC@10 {report['auc10']:.4f}  "
          f"({runtime}) -> {args.report}")
    return report
