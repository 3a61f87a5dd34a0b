"""The engine both stages and every report run on: one training epoch, the epoch loop with eval, log and checkpoint,
the test-once report, and the batch functions that put any model (checkpoint or export) behind one numpy interface."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.data import DataLoader

from facelm.checkpoint import load_model
from facelm.errors import UserError
from facelm.faces import EvalSet
from facelm.inference import BatchFn
from facelm.models import SingleHead
from facelm.plots import plot_ced
from facelm.precision import autocast, grad_scaler

StepFn = Callable[[dict], tuple[torch.Tensor, dict]]  # batch on device -> (loss, per-part floats)
EvalFn = Callable[[torch.nn.Module], dict]  # model -> report with nme, fr10, auc10
SaveFn = Callable[[int, list[dict]], None]  # epoch, history -> writes last.pt


def batch_to(batch: dict, device: str) -> dict:
    moved = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    moved["image"] = moved["image"].contiguous(memory_format=torch.channels_last)
    return moved


def train_one_epoch(model, ema, loader, optimizer, scheduler, step: StepFn, device: str, max_steps: int | None,
                    progress: Progress, task, precision: str = "fp32", scaler: torch.amp.GradScaler | None = None) -> dict:
    """One pass, the forward pass under `precision`'s autocast; returns the epoch's mean loss, mean of each reported
    part, img/s and seconds."""
    model.train()
    scaler = scaler or grad_scaler(precision, device)
    losses, sums, counts, seen, start = [], {}, {}, 0, time.time()
    for index, batch in enumerate(loader):
        if max_steps is not None and index >= max_steps:
            break
        batch = batch_to(batch, device)
        with autocast(precision, device):
            loss, parts = step(batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss.float()).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        losses.append(loss.item())
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
        seen += len(batch["image"])
        progress.update(task, advance=1, description=f"loss {np.mean(losses[-20:]):.3f}")
    elapsed = time.time() - start
    means = {key: total / counts[key] for key, total in sums.items()}
    return {"train_loss": float(np.mean(losses)), "train_img_per_s": seen / elapsed, "train_seconds": elapsed, **means}


def skip_trained_draws(loader: DataLoader, epochs: int) -> None:
    """Replay the index draws of the epochs a resumed run has already trained, so that it goes on exactly as an
    uninterrupted run would: for an A/B, both arms keep seeing the same crops in the same order. The augmentations
    need no replay: each batch carries its seed (facelm.dataset.SeededBatches), so no image is touched."""
    for _ in range(epochs):
        for _ in loader.batch_sampler:
            pass


def fit(model, ema, loader, optimizer, scheduler, step: StepFn, evaluate: EvalFn | None, save: SaveFn, *,
        epochs: int, start_epoch: int, history: list[dict], eval_every: int, device: str, max_steps: int | None,
        run_dir: Path, log: logging.Logger, precision: str = "fp32") -> tuple[list[dict], dict]:
    """Epochs with a progress bar; evaluates the EMA model (if any) every `eval_every` epochs and at the end;
    appends each epoch's row to metrics.jsonl and saves the resumable checkpoint. Returns history and last report."""
    steps = min(len(loader), max_steps or len(loader))
    columns = [TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.description}"), TimeElapsedColumn(), TimeRemainingColumn()]
    report: dict = {}
    scaler = grad_scaler(precision, device)
    skip_trained_draws(loader, start_epoch)
    with Progress(*columns) as progress:
        for epoch in range(start_epoch, epochs):
            task = progress.add_task("", total=steps, epoch=f"{epoch + 1}/{epochs}")
            row = {"epoch": epoch + 1,
                   **train_one_epoch(model, ema, loader, optimizer, scheduler, step, device, max_steps, progress, task,
                                     precision, scaler)}
            if evaluate is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
                eval_model = ema.module if ema is not None else model
                eval_model.eval()
                report = evaluate(eval_model)
                row.update(eval_nme=report["nme"], eval_fr10=report["fr10"], eval_auc10=report["auc10"])
            row["elapsed_seconds"] = sum(h["train_seconds"] for h in history) + row["train_seconds"]
            history.append(row)
            with (run_dir / "metrics.jsonl").open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            log.info(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                              if k in ("epoch", "train_loss", "train_img_per_s", "eval_nme", "eval_fr10", "eval_auc10")))
            save(epoch, history)
    return history, report


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
