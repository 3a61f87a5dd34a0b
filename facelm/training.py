"""The training loop both stages share: schedule, EMA, one epoch, the epoch loop with eval, log and checkpoint."""
from __future__ import annotations

import argparse
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
from torch.utils.data import DataLoader, Sampler, WeightedRandomSampler

from facelm.checkpoint import read_checkpoint, save_checkpoint
from facelm.errors import UserError
from facelm.losses import COORD_LOSSES
from facelm.models import HEADS
from facelm.precision import PRECISIONS, autocast, grad_scaler

StepFn = Callable[[dict], tuple[torch.Tensor, dict]]  # batch on device -> (loss, per-part floats)
EvalFn = Callable[[torch.nn.Module], dict]  # model -> report with nme, fr10, auc10
SaveFn = Callable[[int, list[dict]], None]  # epoch, history -> writes last.pt


def add_training_args(p: argparse.ArgumentParser, epochs: int) -> argparse.ArgumentParser:
    """Options every training stage shares: input, schedule, loss, EMA, augmentation, loader, device, resume."""
    p.add_argument("--input-size", type=int, default=112, help="crop size in pixels (default: 112)")
    p.add_argument("--head", default="fc", choices=list(HEADS),
                   help="landmark head: fc (flatten + linear) or integral (heatmap soft-argmax) (default: fc)")
    p.add_argument("--epochs", type=int, default=epochs, help=f"epochs (default: {epochs})")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (default: 2e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default: 1e-4)")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up before cosine decay (default: 1)")
    p.add_argument("--loss", default="l1", choices=list(COORD_LOSSES), help="coordinate loss (default: l1)")
    p.add_argument("--conf-weight", type=float, default=0.5, help="weight of the confidence BCE (default: 0.5)")
    p.add_argument("--conf-tau", type=float, default=2.0, help="confidence target exp(-err/tau), tau in crop px (default: 2)")
    p.add_argument("--ema-decay", type=float, default=0.995,
                   help="EMA decay of weights and BN buffers, 0 disables (default: 0.995)")
    p.add_argument("--scale-min", type=float, default=1.0, help="min crop scale x landmark box (default: 1.0)")
    p.add_argument("--scale-max", type=float, default=1.5, help="max crop scale x landmark box (default: 1.5)")
    p.add_argument("--jitter", type=float, default=0.15, help="max centre jitter, fraction of box (default: 0.15)")
    p.add_argument("--rotation", type=float, default=20.0, help="max rotation in degrees (default: 20)")
    p.add_argument("--photometric", type=float, default=1.0, help="photometric strength, 0 disables (default: 1.0)")
    p.add_argument("--workers", type=int, default=1,
                   help="data loader workers; one feeds a CPU run with room to spare, raise it on a GPU (default: 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda if present)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="forward-pass precision, fp32 master weights: auto picks bf16 on a CPU with native bf16 "
                        "(avx512_bf16/amx_bf16) or a CUDA GPU with bf16, fp16 on an older GPU, else fp32 (default: auto)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this checkpoint's weights (trunk, and every head of the same name and size): the "
                        "second stage of a two-stage recipe (default: random weights)")
    p.add_argument("--eval-every", type=int, default=2, help="evaluate every N epochs and at the end (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--resume", type=Path, default=None, help="resume from a run's last.pt, in that run's folder")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="optimizer steps per epoch; long runs use it to evaluate and save every N steps (default: one "
                        "pass over the stage's images, images // batch)")
    p.add_argument("--max-steps", type=int, default=None, help="stop each epoch after N steps (smoke runs)")
    return p


def epoch_steps(requested: int | None, one_pass: int) -> int:
    """Steps per epoch: `--steps-per-epoch` when given, else one pass over the images."""
    if requested is not None and requested < 1:
        raise UserError(f"--steps-per-epoch {requested}: an epoch needs at least one step")
    return requested or one_pass


def cosine_with_warmup(optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def group_share_sampler(group_sizes: list[int], shares: list[float], num_samples: int, seed: int) -> Sampler:
    """Draws with replacement over a dataset made of consecutive groups, group g making `shares[g]` of the draws in
    expectation and its items equally likely within it."""
    weights = torch.cat([torch.full((n,), share / n) for n, share in zip(group_sizes, shares) if n])
    return WeightedRandomSampler(weights, num_samples, replacement=True, generator=torch.Generator().manual_seed(seed))


def make_ema(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """EMA of weights and BN buffers (buffers too, or the averaged model keeps its initial BN statistics)."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True) if decay > 0 else None


def make_optimization(model: torch.nn.Module, args: argparse.Namespace, steps_per_epoch: int):
    """AdamW, warm-up + cosine schedule over the whole run, and the EMA model (None when disabled)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = cosine_with_warmup(optimizer, int(args.warmup_epochs * steps_per_epoch), args.epochs * steps_per_epoch)
    return optimizer, scheduler, make_ema(model, args.ema_decay)


def save_run_checkpoint(path: Path, model, spec: dict, optimizer, scheduler, ema, epoch: int, history: list[dict],
                        args: argparse.Namespace, **extra) -> Path:
    """The resumable `last.pt`: model, EMA weights (what `load_model` serves), optimizer, schedule, history."""
    return save_checkpoint(path, model, spec, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                           ema=ema.module.state_dict() if ema is not None else None,
                           ema_module=ema.state_dict() if ema is not None else None, epoch=epoch, history=history,
                           args=vars(args), **extra)


def restore(checkpoint: dict, model, optimizer, scheduler, ema, log: logging.Logger) -> tuple[int, list[dict]]:
    """Load a `last.pt` payload into the live objects; returns the epoch to start from and the history so far."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if ema is not None and checkpoint.get("ema_module"):
        ema.load_state_dict(checkpoint["ema_module"])
    log.info(f"resumed at epoch {checkpoint['epoch'] + 2}")
    return checkpoint["epoch"] + 1, checkpoint["history"]


def head_output(model: torch.nn.Module, features: torch.Tensor, head: str) -> torch.Tensor:
    """One head's (B, K, 3) output in fp32 even inside a bf16/fp16 autocast: the trunk carries the compute, while
    the heads' read-outs (the mean-shape add, the soft-argmax over cell positions) would round points to about half a
    pixel in bf16."""
    with torch.autocast(features.device.type, enabled=False):
        return model.forward_head(features.float(), head)


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
    """Replay the batches of the epochs a resumed run has already trained, index draws and augmentations alike, so that
    it goes on exactly as an uninterrupted run would: for an A/B, both arms keep seeing the same crops in the same order.
    Replaying the index draws alone would restart the augmentation streams from the seed. Costs one pass of the loader
    (no training) per trained epoch."""
    for _ in range(epochs):
        for _ in loader:
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


def init_from(model: torch.nn.Module, path: Path, log: logging.Logger) -> None:
    """Copy a checkpoint's EMA (else plain) weights into `model` wherever a tensor of the same name and shape exists:
    the trunk, and the heads both share. Heads only the new model has keep their fresh start."""
    payload = read_checkpoint(path)
    source = payload.get("ema") or payload["model"]
    target = model.state_dict()
    loaded = {k: v.float() if v.is_floating_point() else v for k, v in source.items()
              if k in target and v.shape == target[k].shape}
    if not any(k.startswith("trunk.") for k in loaded):
        raise UserError(f"--init {path}: its trunk ({payload['spec']['arch']}) does not fit this model; pass a "
                        "checkpoint of the same --arch")
    model.load_state_dict(loaded, strict=False)
    fresh = sorted({k.split(".")[1] for k in target if k.startswith("heads.") and k not in loaded})
    log.info(f"initialised from {path}: {len(loaded)} of {len(target)} tensors"
             + (f"; heads with a fresh start: {', '.join(fresh)}" if fresh else ""))
