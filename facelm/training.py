"""What both training stages set up the same way: their options, the validation and test faces, the sampler, the
schedule, EMA, the resumable checkpoint and the warm start. The loop itself is facelm.engine."""
from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import Sampler, WeightedRandomSampler

from facelm.checkpoint import read_checkpoint, save_checkpoint
from facelm.dataset import AUGMENTATION_SEEDS, LoadedSource
from facelm.errors import UserError
from facelm.faces import EvalSet
from facelm.losses import COORD_LOSSES
from facelm.models import HEADS
from facelm.precision import PRECISIONS, resolve_precision
from facelm.runs import current_args, jsonable_args
from facelm.schemes import Scheme
from facelm.splits import common_test_paths, hand_train_paths


def add_training_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options every training stage shares: input, schedule, loss, EMA, augmentation, loader, device, resume. A stage
    sets its release recipe over these defaults (`p.set_defaults(**RECIPE)`); the help shows the result."""
    p.add_argument("--input-size", type=int, default=112, help="crop size in pixels (default: %(default)s)")
    p.add_argument("--head-type", default="fc", choices=list(HEADS),
                   help="landmark head type: fc (flatten + linear) or integral (heatmap soft-argmax) (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=50, help="epochs (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default: %(default)s)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default: %(default)s)")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warm-up before cosine decay (default: %(default)s)")
    p.add_argument("--loss", default="l1", choices=list(COORD_LOSSES), help="coordinate loss (default: %(default)s)")
    p.add_argument("--conf-weight", type=float, default=0.5, help="weight of the confidence BCE (default: %(default)s)")
    p.add_argument("--conf-tau", type=float, default=2.0,
                   help="confidence target exp(-err/tau), tau in crop px (default: %(default)s)")
    p.add_argument("--ema-decay", type=float, default=0.995,
                   help="EMA decay of weights and BN buffers, 0 disables (default: %(default)s)")
    p.add_argument("--scale-min", type=float, default=1.0, help="min crop scale x landmark box (default: %(default)s)")
    p.add_argument("--scale-max", type=float, default=1.5, help="max crop scale x landmark box (default: %(default)s)")
    p.add_argument("--jitter", type=float, default=0.15, help="max centre jitter, fraction of box (default: %(default)s)")
    p.add_argument("--rotation", type=float, default=20.0, help="max rotation in degrees (default: %(default)s)")
    p.add_argument("--photometric", type=float, default=1.0, help="photometric strength, 0 disables (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1,
                   help="data loader workers; one feeds a CPU run with room to spare, raise it on a GPU (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda if present)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="forward-pass precision, fp32 master weights: auto picks bf16 on a CPU with native bf16 "
                        "(avx512_bf16/amx_bf16) or a CUDA GPU with bf16, fp16 on an older GPU, else fp32 (default: %(default)s)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this checkpoint's weights (trunk, and every head of the same name and size): the "
                        "second stage of a two-stage recipe (default: random weights)")
    p.add_argument("--eval-every", type=int, default=2, help="evaluate every N epochs and at the end (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--resume", type=Path, default=None,
                   help="resume from a run's last.pt, in that run's folder; `auto`: the newest run named --name under "
                        "--out goes on if it is unfinished and is left alone if it finished, else a new run starts, so "
                        "one command can be repeated until a long run is done")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="optimizer steps per epoch, none for one pass over the stage's images (images // batch); long "
                        "runs use it to evaluate and save every N steps (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=None, help="stop each epoch after N steps (smoke runs)")
    return p


def run_precision(args: argparse.Namespace, seconds_per_step=None) -> tuple[str, str]:
    """`--precision` resolved for this run; a resumed run keeps the precision its folder records, so it goes on as it
    started even where `auto` would time the candidates differently now."""
    if args.resume and args.precision == "auto":
        recorded = json.loads((args.resume.parent / "config.json").read_text()).get("precision")
        if recorded:
            return recorded, "as the resumed run recorded"
    return resolve_precision(args.precision, args.device, seconds_per_step)


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


def named_run(out: Path, name: str) -> Path | None:
    """The newest run folder `<time>-<name>` under `out`."""
    runs = [run for run in Path(out).glob(f"*-{name}") if run.is_dir() and run.name.split("-", 2)[-1] == name]
    return max(runs, default=None)


def auto_resume(args: argparse.Namespace) -> dict | None:
    """`--resume auto`: point args.resume at the newest unfinished run of --name (or at none, to start one); the
    finished run's metrics when there is nothing left to do."""
    if args.resume is None or str(args.resume) != "auto":
        return None
    run = named_run(args.out, args.name)
    if run is not None and (run / "metrics.json").is_file():
        return {"run_dir": str(run), **json.loads((run / "metrics.json").read_text())}
    args.resume = run / "last.pt" if run is not None and (run / "last.pt").is_file() else None
    return None


# where and how a run computes, and paths that differ between machines: a resume may change these; the data and the
# teacher are checked by content instead
RESUME_FREE = {"resume", "threads", "workers", "device", "precision", "eval_every", "out", "name", "data", "cache", "init",
               "teacher", "labelled", "unlabelled", "prior_source", "source", "eval_data", "test_data", "box_calibration"}


def check_resume(args: argparse.Namespace, fingerprint: dict, teacher_sha256: str | None = None) -> None:
    """A resumed run goes on as it began: the same options (but for RESUME_FREE) and the same training data and
    teacher by content; else one line says what differs and what to do."""
    if not args.resume:
        return
    run = args.resume.parent
    recorded, now = current_args(json.loads((run / "config.json").read_text())["args"]), jsonable_args(args)
    changed = [f"--{key.replace('_', '-')} was {recorded[key]!r}, now {now[key]!r}"
               for key in sorted(recorded.keys() & now.keys()) if key not in RESUME_FREE and recorded[key] != now[key]]
    if json.loads((run / "data_fingerprint.json").read_text())["sha256"] != fingerprint["sha256"]:
        changed.append("the training data differ from data_fingerprint.json")
    teacher = run / "teacher_fingerprint.json"
    if teacher_sha256 and teacher.is_file() and json.loads(teacher.read_text())["sha256"] != teacher_sha256:
        changed.append("the teacher differs from teacher_fingerprint.json")
    if changed:
        raise UserError(f"--resume {run}: {'; '.join(changed)}; resume with the options in its config.json, or start a "
                        "new run")


def note_seeding_change(resume: Path | None, log: logging.Logger) -> None:
    """A run begun before per-batch augmentation seeds (its config has no augmentation_seeds) goes on with them, so its
    resumed epochs do not repeat the augmentation streams an uninterrupted run of that version would have drawn."""
    if resume and "augmentation_seeds" not in json.loads((resume.parent / "config.json").read_text()):
        log.info("this run began before per-batch augmentation seeds: its index draws go on exactly, its augmentations "
                 f"are seeded {AUGMENTATION_SEEDS} from here on, not the streams its loader workers had")


def restore(checkpoint: dict, model, optimizer, scheduler, ema, log: logging.Logger) -> tuple[int, list[dict]]:
    """Load a `last.pt` payload into the live objects; returns the epoch to start from and the history so far."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if ema is not None and checkpoint.get("ema_module"):
        ema.load_state_dict(checkpoint["ema_module"])
    log.info(f"resumed at epoch {checkpoint['epoch'] + 2}")
    return checkpoint["epoch"] + 1, checkpoint["history"]


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


def add_eval_args(p: argparse.ArgumentParser) -> None:
    """A training stage's `--eval-data` (validation, every choice) and `--test-data` (the report, once)."""
    p.add_argument("--eval-data", type=Path, nargs="+", default=None,
                   help="in-loop eval folders, which every choice is made on (default: the validation split of "
                        "DATA/300w/trainset and DATA/lfpw/trainset, facelm/splits.py)")
    p.add_argument("--test-data", type=Path, nargs="+", default=None,
                   help="test folders, evaluated once when the run ends, for the report only (default: 300-W common, "
                        "DATA/300w/testset and DATA/lfpw/testset)")


def check_held_out(sources: list[LoadedSource], eval_set: EvalSet | None, test_set: EvalSet | None,
                   retrain_on_validation: bool = False) -> None:
    """Refuse a run that trains on its own validation or test faces: every choice made on them, or the report, would
    measure memory rather than accuracy. A release retrained on train + validation (a recipe already chosen) may
    train on its in-loop eval faces, never on its test faces."""
    for role, faces in (("validation (in-loop eval)", None if retrain_on_validation else eval_set), ("test", test_set)):
        held = {s.image.resolve() for s in faces.samples} if faces is not None else set()
        for item in sources:
            shared = sum(s.image.resolve() in held for s in item.samples)
            if shared:
                raise UserError(f"source {item.source.name}: {shared} of its faces are {role} faces ({faces.label}); "
                                "keep its training split with a :train suffix (NAME:SCHEME:PATH[,PATH...]:train) or "
                                "pass --eval-data/--test-data with other faces")


def eval_sets(args: argparse.Namespace, scheme: Scheme) -> tuple[EvalSet | None, EvalSet | None]:
    """The in-loop validation set and the test set: as given, else the fixed splits under --data (None without)."""
    data = Path(args.data) if args.data else None
    if args.eval_data:
        validation = EvalSet(args.eval_data, scheme)
    else:
        validation = EvalSet(hand_train_paths(data), scheme, split="val") if data and hand_train_paths(data) else None
    test_paths = args.test_data or (common_test_paths(data) if data else [])
    return validation, EvalSet(test_paths, scheme) if test_paths else None
