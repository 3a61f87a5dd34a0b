"""The training loop both stages share: schedule, EMA, one epoch, the epoch loop with eval, log and checkpoint."""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

StepFn = Callable[[dict], tuple[torch.Tensor, dict]]  # batch on device -> (loss, per-part floats)
EvalFn = Callable[[torch.nn.Module], dict]  # model -> report with nme, fr10, auc10
SaveFn = Callable[[int, list[dict]], None]  # epoch, history -> writes last.pt


def cosine_with_warmup(optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """EMA of weights and BN buffers (buffers too, or the averaged model keeps its initial BN statistics)."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True) if decay > 0 else None


def batch_to(batch: dict, device: str) -> dict:
    moved = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    for key in ("image", "teacher_image"):
        if key in moved:
            moved[key] = moved[key].contiguous(memory_format=torch.channels_last)
    return moved


def train_one_epoch(model, ema, loader, optimizer, scheduler, step: StepFn, device: str, max_steps: int | None,
                    progress: Progress, task) -> dict:
    """One pass; returns the epoch's mean loss, mean of each reported part, img/s and seconds."""
    model.train()
    losses, sums, counts, seen, start = [], {}, {}, 0, time.time()
    for index, batch in enumerate(loader):
        if max_steps is not None and index >= max_steps:
            break
        batch = batch_to(batch, device)
        loss, parts = step(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
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


def fit(model, ema, loader, optimizer, scheduler, step: StepFn, evaluate: EvalFn | None, save: SaveFn, *,
        epochs: int, start_epoch: int, history: list[dict], eval_every: int, device: str, max_steps: int | None,
        run_dir: Path, log: logging.Logger) -> tuple[list[dict], dict]:
    """Epochs with a progress bar; evaluates the EMA model (if any) every `eval_every` epochs and at the end;
    appends each epoch's row to metrics.jsonl and saves the resumable checkpoint. Returns history and last report."""
    steps = min(len(loader), max_steps or len(loader))
    columns = [TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.description}"), TimeElapsedColumn(), TimeRemainingColumn()]
    report: dict = {}
    with Progress(*columns) as progress:
        for epoch in range(start_epoch, epochs):
            task = progress.add_task("", total=steps, epoch=f"{epoch + 1}/{epochs}")
            row = {"epoch": epoch + 1,
                   **train_one_epoch(model, ema, loader, optimizer, scheduler, step, device, max_steps, progress, task)}
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
