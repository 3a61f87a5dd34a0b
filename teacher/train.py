"""Train the multi-head ResNet teacher: one head per annotation source on a shared trunk.

    facelm train-teacher --data $DATA [--arch resnet18] [--epochs 40] [--loss l1] ...
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from facelm.augment import GeometryConfig
from facelm.checkpoint import model_spec, read_checkpoint, save_checkpoint
from facelm.dataset import LandmarkCrops, Source, data_fingerprint, default_teacher_sources, load_source, seed_worker
from facelm.errors import UserError
from facelm.evaluation import EvalSet, torch_batch_fn
from facelm.geometry import crop_to_normalised, eval_crop_matrix, transform_points
from facelm.losses import COORD_LOSSES, get_coord_loss, landmark_loss
from facelm.models import LandmarkNet, SingleHead, create_model, list_models
from facelm.plots import plot_ced, plot_training
from facelm.runs import jsonable_args, make_run_dir, provenance, run_logger, write_json
from facelm.training import cosine_with_warmup, fit, make_ema


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm train-teacher", add_help=add_help)
    p.add_argument("--data", type=Path, default=os.environ.get("DATA"), help="data root (default: $DATA)")
    p.add_argument("--source", action="append", default=None,
                   help="NAME:SCHEME:PATH, repeatable; one head per source (default: 300w and ytf68 under --data)")
    p.add_argument("--eval-data", type=Path, default=None, help="eval folder (default: DATA/300w/testset)")
    p.add_argument("--eval-head", default="300w", help="head evaluated on --eval-data (default: 300w)")
    p.add_argument("--arch", default="resnet18", choices=[m for m in list_models() if m.startswith("resnet")],
                   help="trunk (default: resnet18)")
    p.add_argument("--input-size", type=int, default=112, help="crop size in pixels (default: 112)")
    p.add_argument("--epochs", type=int, default=50, help="epochs (default: 50)")
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
    p.add_argument("--eval-every", type=int, default=2, help="evaluate every N epochs and at the end (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", type=Path, default=Path("runs/teacher"), help="runs root (default: runs/teacher)")
    p.add_argument("--name", default=None, help="run name (default: ARCH-LOSS)")
    p.add_argument("--resume", type=Path, default=None, help="resume from a run's last.pt, in that run's folder")
    p.add_argument("--max-steps", type=int, default=None, help="stop each epoch after N steps (smoke runs)")
    return p


def resolve_sources(args: argparse.Namespace) -> list[Source]:
    if args.source:
        return [Source.parse(text) for text in args.source]
    if args.data is None:
        raise UserError("no data: set DATA=/path/to/data (e.g. DATA=../shared/data) or pass --source NAME:SCHEME:PATH")
    return default_teacher_sources(Path(args.data))


def mean_shapes(loaded, size: int) -> dict[str, torch.Tensor]:
    """Mean crop-normalised shape of each source under the eval crop rule: the heads' starting point."""
    shapes = {}
    for item in loaded:
        pts = [crop_to_normalised(transform_points(s.points, eval_crop_matrix(s.points, size)), size) for s in item.samples]
        shapes[item.source.name] = torch.from_numpy(np.mean(pts, axis=0))
    return shapes


def multi_head_loss(model: LandmarkNet, batch: dict, head_names: list[str], args, coord_loss) -> tuple[torch.Tensor, dict]:
    """Each sample supervises only its own head; heads are run on their own samples' features."""
    features = model.forward_features(batch["image"])
    total, parts, count = 0.0, {}, len(batch["head"])
    for index, name in enumerate(head_names):
        mask = batch["head"] == index
        if not mask.any():
            continue
        k = model.heads[name].n_points
        pred = model.forward_head(features[mask], name)
        loss, stats = landmark_loss(
            pred, batch["target"][mask][:, :k], batch["weight"][mask][:, :k], args.input_size, coord_loss,
            args.conf_weight, args.conf_tau,
        )
        total = total + loss * mask.sum() / count
        parts.update({f"{name}_{key}": value for key, value in stats.items()})
    return total, parts


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    sources = resolve_sources(args)
    eval_path = args.eval_data or (Path(args.data) / "300w" / "testset" if args.data else None)
    head_names = [s.name for s in sources]
    if args.eval_head not in head_names:
        raise UserError(f"--eval-head {args.eval_head!r} is not one of the sources' heads: {', '.join(head_names)}")

    resume = read_checkpoint(args.resume) if args.resume else None
    loaded = [load_source(s) for s in sources]
    fingerprint = data_fingerprint(loaded)
    eval_scheme = next(s.scheme for s in sources if s.name == args.eval_head)
    eval_set = EvalSet(eval_path, eval_scheme) if eval_path else None
    run_dir = args.resume.parent if args.resume else make_run_dir(args.out, args.name or f"{args.arch}-{args.loss}")
    log = run_logger(run_dir, "train")
    if eval_set is not None:
        fingerprint["eval"] = {"path": str(eval_path), "n_images": len(eval_set.samples)}
    write_json(run_dir / "config.json", {"args": jsonable_args(args), **provenance()})
    write_json(run_dir / "data_fingerprint.json", fingerprint)
    for name, part in fingerprint["sources"].items():
        log.info(f"source {name}: {part['n_images']} images, {part['n_points_masked_out_of_frame']} out-of-frame points masked")

    model = create_model(args.arch, heads={s.name: s.scheme.n_points for s in sources}, input_size=args.input_size)
    for name, shape in mean_shapes(loaded, args.input_size).items():
        model.heads[name].set_mean_shape(shape)
    model = model.to(args.device).to(memory_format=torch.channels_last)
    spec = model_spec(model, args.arch, {s.name: s.scheme.name for s in sources})

    geometry = GeometryConfig(args.scale_min, args.scale_max, args.jitter, args.rotation)
    dataset = LandmarkCrops(loaded, args.input_size, train=True, geometry=geometry, photometric_strength=args.photometric)
    loader = DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
        worker_init_fn=seed_worker if args.workers else None, persistent_workers=args.workers > 0,
        generator=torch.Generator().manual_seed(args.seed),
    )
    if args.workers == 0:
        dataset.reseed(args.seed)
    steps_per_epoch = min(len(loader), args.max_steps or len(loader))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = cosine_with_warmup(optimizer, int(args.warmup_epochs * steps_per_epoch), args.epochs * steps_per_epoch)
    ema = make_ema(model, args.ema_decay)
    start_epoch, history = 0, []
    if resume:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        if ema is not None and resume.get("ema_module"):
            ema.load_state_dict(resume["ema_module"])
        start_epoch, history = resume["epoch"] + 1, resume["history"]
        log.info(f"resumed from {args.resume} at epoch {start_epoch}")

    coord_loss = get_coord_loss(args.loss)

    def step(batch: dict) -> tuple[torch.Tensor, dict]:
        return multi_head_loss(model, batch, head_names, args, coord_loss)

    def evaluate_head(eval_model: LandmarkNet) -> dict:
        return eval_set.evaluate(torch_batch_fn(SingleHead(eval_model, args.eval_head), args.device), args.input_size)[0]

    def save(epoch: int, history: list[dict]) -> None:
        save_checkpoint(run_dir / "last.pt", model, spec, optimizer=optimizer.state_dict(),
                        scheduler=scheduler.state_dict(), ema=ema.module.state_dict() if ema is not None else None,
                        ema_module=ema.state_dict() if ema is not None else None, epoch=epoch, history=history,
                        args=vars(args), data_fingerprint=fingerprint)

    log.info(f"run folder {run_dir}; {len(dataset)} training faces, {steps_per_epoch} steps/epoch, device {args.device}")
    history, report = fit(model, ema, loader, optimizer, scheduler, step, evaluate_head if eval_set else None, save,
                          epochs=args.epochs, start_epoch=start_epoch, history=history, eval_every=args.eval_every,
                          device=args.device, max_steps=args.max_steps, run_dir=run_dir, log=log)

    plot_training(history, run_dir / "training_curves.png")
    if report:
        plot_ced({f"{args.arch} ({args.eval_head} head)": np.asarray(report["per_image_nme"]) / 100}, run_dir / "ced.png",
                 title=f"CED on {eval_path}")
        metrics = {k: v for k, v in report.items() if k != "per_image_nme"}
        metrics.update(train_img_per_s=float(np.mean([h["train_img_per_s"] for h in history])),
                       train_wall_seconds=history[-1]["elapsed_seconds"], epochs=args.epochs)
        write_json(run_dir / "metrics.json", metrics)
        write_json(run_dir / "eval_report.json", report)
        log.info(f"final: NME {report['nme']:.3f}%  FR@10 {report['fr10']:.2f}%  AUC@10 {report['auc10']:.4f}  "
                 f"Spearman(conf, err) {report['spearman_conf_error']:.3f}")
    return {"run_dir": str(run_dir), **report}
