"""Train the multi-head ResNet teacher: one head per annotation source on a shared trunk.

    facelm train-teacher --data $DATA [--arch resnet18] [--epochs N] [--loss l1] ...

The defaults are the release recipe (RECIPE over the shared training defaults): the released teacher's card records
the same values, and the Makefile adds nothing to them.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler

from facelm.augment import PHOTOMETRIC_RULE, GeometryConfig
from facelm.checkpoint import model_spec, read_checkpoint
from facelm.dataset import (
    AUGMENTATION_SEEDS,
    LandmarkCrops,
    SeededBatches,
    Source,
    data_fingerprint,
    default_teacher_sources,
    load_source,
    set_loader_threads,
)
from facelm.distributed import RankShare, close_distributed, data_parallel, init_distributed, per_rank_batch, world_from_env
from facelm.engine import fit, test_once, torch_batch_fn
from facelm.errors import UserError
from facelm.losses import get_coord_loss, landmark_loss
from facelm.metrics import format_rho
from facelm.models import LandmarkNet, SingleHead, create_model, list_models
from facelm.paths import RUNS
from facelm.plots import plot_training
from facelm.precision import head_output, step_timer
from facelm.runs import jsonable_args, make_run_dir, provenance, run_logger, write_json
from facelm.training import (
    add_eval_args,
    add_training_args,
    auto_resume,
    check_held_out,
    check_resume,
    epoch_steps,
    eval_sets,
    group_share_sampler,
    init_from,
    make_optimization,
    note_seeding_change,
    restore,
    run_precision,
    save_run_checkpoint,
)

# the release recipe, over the shared training defaults
RECIPE = {"epochs": 60, "head_type": "integral", "input_size": 160}
DEFAULT_SOURCE_SHARE = ["300w=0.8"]  # how the release recipe draws its default sources


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm train-teacher", add_help=add_help)
    p.add_argument("--data", type=Path, default=os.environ.get("DATA"), help="data root (default: $DATA)")
    p.add_argument("--source", action="append", default=None,
                   help="NAME:SCHEME:PATH[,PATH...][:SPLIT], repeatable; one head per source; SPLIT train holds the "
                        "validation faces out (default: 300w = the HELEN and LFPW training split, and ytf68, under --data)")
    p.add_argument("--train-on", default="train", choices=["train", "train+val"],
                   help="the default 300w source's faces: train holds the validation faces out; train+val retrains a "
                        "recipe chosen on validation on all of them, and its in-loop eval is then on seen faces "
                        "(default: train)")
    p.add_argument("--source-share", nargs="*", default=None, metavar="NAME=SHARE",
                   help="source NAME makes SHARE of each epoch's draws (sampled with replacement); the other sources "
                        "share the rest in proportion to their size; with no value, every face once per epoch "
                        f"(default: {' '.join(DEFAULT_SOURCE_SHARE)} for the default sources, every face once per epoch "
                        "for --source)")
    add_eval_args(p)
    p.add_argument("--eval-head", default="300w", help="head evaluated on --eval-data and --test-data (default: 300w)")
    p.add_argument("--arch", default="resnet18", choices=[m for m in list_models() if m.startswith("resnet")],
                   help="trunk (default: resnet18)")
    add_training_args(p)
    p.add_argument("--out", type=Path, default=RUNS / "teacher", help="runs root (default: runs/teacher)")
    p.add_argument("--name", default=None, help="run name (default: ARCH-LOSS)")
    p.set_defaults(**RECIPE)
    return p


def resolve_sources(args: argparse.Namespace) -> list[Source]:
    if args.source:
        return [Source.parse(text) for text in args.source]
    if args.data is None:
        raise UserError("no data: set DATA=/path/to/data (e.g. DATA=../shared/data) or pass --source NAME:SCHEME:PATH")
    return default_teacher_sources(Path(args.data), "all" if args.train_on == "train+val" else "train")


def resolved_source_share(args: argparse.Namespace) -> list[str]:
    """--source-share as given, else the release recipe's for the default sources, else none (every face once)."""
    if args.source_share is not None:
        return args.source_share
    return [] if args.source else list(DEFAULT_SOURCE_SHARE)


def parse_source_shares(texts: list[str], names: list[str]) -> dict[str, float]:
    """`--source-share NAME=SHARE` texts as {name: share}, checked against the sources' names."""
    named = name_values(texts, "--source-share", "300w=0.8")
    for name, share in named.items():
        if name not in names:
            raise UserError(f"--source-share {name}: no such source; sources are {', '.join(names)}")
        if not 0 < share <= 1:
            raise UserError(f"--source-share {name}={share}: the share must be in (0, 1]")
    rest, all_named = 1 - sum(named.values()), set(named) == set(names)
    if rest < -1e-9 or (all_named and rest > 1e-9) or (not all_named and rest <= 1e-9):
        raise UserError(f"--source-share {' '.join(texts)}: the shares must sum to 1 when every source is named, "
                        "and to less than 1 otherwise")
    return named


def source_shares(sizes: dict[str, int], named: dict[str, float]) -> list[float]:
    """Each source's share of the draws: as named, and the rest split over the other sources by their size."""
    rest = 1 - sum(named.values())
    others = sum(n for name, n in sizes.items() if name not in named)
    return [named[name] if name in named else rest * n / others for name, n in sizes.items()]


def epoch_sampling(group_sizes: list[int], shares: list[float] | None, batch_size: int, steps_per_epoch: int | None,
                   seed: int) -> Sampler:
    """One epoch's draws: each face once, shuffled, unless shares or a step count are set; then
    `steps_per_epoch * batch_size` draws with replacement (by the shares, else uniform)."""
    n = sum(group_sizes)
    draws = epoch_steps(steps_per_epoch, n // batch_size) * batch_size
    if shares is None and steps_per_epoch is None:
        return RandomSampler(range(n), generator=torch.Generator().manual_seed(seed))
    return group_share_sampler(group_sizes, shares or [g / n for g in group_sizes], draws, seed)


def multi_head_loss(model: LandmarkNet, batch: dict, head_names: list[str], args, coord_loss) -> tuple[torch.Tensor, dict]:
    """Each sample supervises only its own head; heads are run on their own samples' features."""
    features = model.forward_features(batch["image"])
    total, parts, count = 0.0, {}, len(batch["head"])
    for index, name in enumerate(head_names):
        mask = batch["head"] == index
        if not mask.any():
            continue
        k = model.heads[name].n_points
        pred = head_output(model, features[mask], name)
        loss, stats = landmark_loss(
            pred, batch["target"][mask][:, :k], batch["weight"][mask][:, :k], args.input_size, coord_loss,
            args.conf_weight, args.conf_tau,
        )
        total = total + loss * mask.sum() / count
        parts.update({f"{name}_{key}": value for key, value in stats.items()})
    return total, parts


def run_name(args: argparse.Namespace) -> str:
    """--name, or by default the arch and the loss."""
    return args.name or f"{args.arch}-{args.loss}"


def main(args: argparse.Namespace) -> dict:
    args.name = run_name(args)
    finished = auto_resume(args)
    if finished is not None:
        print(f"{finished['run_dir']}: finished already (--resume auto); nothing to do")
        return finished
    ranks = world_from_env()
    per_rank_batch(args.batch_size, ranks)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_loader_threads(args.workers)
    torch.manual_seed(args.seed)
    sources = resolve_sources(args)
    head_names = [s.name for s in sources]
    if args.eval_head not in head_names:
        raise UserError(f"--eval-head {args.eval_head!r} is not one of the sources' heads: {', '.join(head_names)}")
    args.source_share = resolved_source_share(args)
    shares = parse_source_shares(args.source_share, head_names)

    resume = read_checkpoint(args.resume) if args.resume else None
    loaded = [load_source(s) for s in sources]
    fingerprint = data_fingerprint(loaded)
    eval_scheme = next(s.scheme for s in sources if s.name == args.eval_head)
    args.device = init_distributed(args.device, ranks)
    eval_set, test_set = eval_sets(args, eval_scheme) if ranks.main else (None, None)
    check_held_out(loaded, eval_set, test_set, retrain_on_validation=args.train_on == "train+val" and not args.source)
    if ranks.main:
        run_dir = args.resume.parent if args.resume else make_run_dir(args.out, args.name)
    else:  # rank 0 alone writes the run folder
        run_dir = Path(tempfile.mkdtemp(prefix=f"facelm-rank{ranks.rank}-"))
    log = run_logger(run_dir, "train")
    for key, faces in (("eval", eval_set), ("test", test_set)):
        if faces is not None:
            fingerprint[key] = {"paths": [str(p) for p in faces.paths], "split": faces.split, "n_images": len(faces.samples)}
    for name, part in fingerprint["sources"].items():
        log.info(f"source {name}: {part['n_images']} images, {part['n_points_masked_out_of_frame']} out-of-frame points masked")

    model = create_model(args.arch, heads={s.name: s.scheme.n_points for s in sources}, input_size=args.input_size,
                         head=args.head_type)
    for item in loaded:
        model.heads[item.source.name].set_mean_shape(torch.from_numpy(item.mean_crop_shape(args.input_size)))
    if args.init:
        init_from(model, args.init, log)
    model = model.to(args.device).to(memory_format=torch.channels_last)
    spec = model_spec(model, args.arch, {s.name: s.scheme.name for s in sources})
    # every rank must train in the same precision, so only a single process times the candidates
    timer = step_timer(model, args.batch_size, args.input_size, args.device) if ranks.world == 1 else None
    precision, why = run_precision(args, timer)
    check_resume(args, fingerprint)
    note_seeding_change(args.resume, log)
    write_json(run_dir / "config.json", {"args": jsonable_args(args), "precision": precision,
                                         "photometric_rule": PHOTOMETRIC_RULE, "augmentation_seeds": AUGMENTATION_SEEDS,
                                         **provenance()})
    write_json(run_dir / "data_fingerprint.json", fingerprint)

    geometry = GeometryConfig(args.scale_min, args.scale_max, args.jitter, args.rotation)
    dataset = LandmarkCrops(loaded, args.input_size, train=True, geometry=geometry, photometric_strength=args.photometric)
    sizes = {item.source.name: len(item.samples) for item in loaded}
    sampler = epoch_sampling(list(sizes.values()), source_shares(sizes, shares) if args.source_share else None,
                             args.batch_size, args.steps_per_epoch, args.seed)
    batches = SeededBatches(RankShare(BatchSampler(sampler, args.batch_size, drop_last=True), ranks), args.seed + ranks.rank)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=args.workers, persistent_workers=args.workers > 0)
    steps_per_epoch = min(len(loader), args.max_steps or len(loader))
    optimizer, scheduler, ema = make_optimization(model, args, steps_per_epoch)
    start_epoch, history = restore(resume, model, optimizer, scheduler, ema, log) if resume else (0, [])

    coord_loss = get_coord_loss(args.loss)

    def step(batch: dict) -> tuple[torch.Tensor, dict]:
        return multi_head_loss(model, batch, head_names, args, coord_loss)

    step = data_parallel(model, step, ranks, args.device)

    def evaluate_head(eval_model: LandmarkNet) -> dict:
        return eval_set.evaluate(torch_batch_fn(SingleHead(eval_model, args.eval_head), args.device), args.input_size)[0]

    def save(epoch: int, history: list[dict]) -> None:
        if ranks.main:
            save_run_checkpoint(run_dir / "last.pt", model, spec, optimizer, scheduler, ema, epoch, history, args,
                                data_fingerprint=fingerprint)

    log.info(f"run folder {run_dir}; {len(dataset)} training faces, {steps_per_epoch} steps/epoch, device {args.device}, "
             f"precision {precision} ({why})" + (f", rank {ranks.rank} of {ranks.world}" if ranks.world > 1 else ""))
    if eval_set is not None:
        log.info(f"in-loop eval on {eval_set.label} ({len(eval_set.samples)} faces)"
                 + ("; these faces are trained on (--train-on train+val)" if args.train_on == "train+val" else ""))
    history, report = fit(model, ema, loader, optimizer, scheduler, step, evaluate_head if eval_set else None, save,
                          epochs=args.epochs, start_epoch=start_epoch, history=history, eval_every=args.eval_every,
                          device=args.device, max_steps=args.max_steps, run_dir=run_dir, log=log, precision=precision)

    plot_training(history, run_dir / "training_curves.png")
    metrics = {"epochs": args.epochs, "precision": precision,
               "train_img_per_s": float(np.mean([h["train_img_per_s"] for h in history])),
               "train_wall_seconds": history[-1]["elapsed_seconds"]}
    if report:
        metrics.update({k: v for k, v in report.items() if k != "per_image_nme"})
        write_json(run_dir / "eval_report.json", report)
        log.info(f"final on {eval_set.label}: NME {report['nme']:.3f}%  FR@10 {report['fr10']:.2f}%  "
                 f"AUC@10 {report['auc10']:.4f}  Spearman(conf, err) {format_rho(report['spearman_conf_error'])}")
    if test_set is not None:
        test = test_once(SingleHead(ema.module if ema is not None else model, args.eval_head), test_set,
                         args.input_size, args.device, run_dir, log)
        metrics["test"] = {k: v for k, v in test.items() if k != "per_image_nme"}
    write_json(run_dir / "metrics.json", metrics)
    close_distributed(ranks)
    return {"run_dir": str(run_dir), **metrics}


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
