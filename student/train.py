"""Distil a depthwise student from the teacher, on labelled faces (ground truth + teacher) and unlabelled photos
(teacher only). `--mode labels` trains the same student on the labels alone: the A arm of the A/B.

    facelm train-student --data $DATA [--teacher weights/teacher_resnet18.pt] [--arch mobilenetv2_035] ...

The teacher sees every face once, un-augmented, on the eval-rule crop (mirror-averaged with `--teacher-flip`),
and its outputs are cached (student/pseudo.py). Each augmented student crop moves those points by its own affine
and mirroring, which is exact, so the student learns the teacher's best answer under every augmentation and a
distillation step costs what a label step costs: the teacher never runs inside the training loop.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler

from facelm.annotations import Sample, load_annotations
from facelm.augment import PHOTOMETRIC_RULE, GeometryConfig
from facelm.checkpoint import load_model, model_spec, read_checkpoint
from facelm.dataset import (
    AUGMENTATION_SEEDS,
    LandmarkCrops,
    LoadedSource,
    SeededBatches,
    Source,
    data_fingerprint,
    load_source,
    set_loader_threads,
)
from facelm.detect import BoxCalibration, read_calibration
from facelm.engine import fit, test_once, torch_batch_fn
from facelm.errors import UserError
from facelm.faces import EvalSet, decode_all
from facelm.inference import BatchFn, flip_averaged
from facelm.losses import distillation_loss, get_coord_loss, landmark_loss
from facelm.metrics import format_rho
from facelm.models import LandmarkNet, SingleHead, create_model, list_models
from facelm.paths import RELEASED_CALIBRATION, RELEASED_TEACHER, RUNS, shown
from facelm.plots import plot_ced, plot_training
from facelm.precision import head_output, step_timer
from facelm.runs import file_sha256, jsonable_args, make_run_dir, provenance, run_logger, write_json
from facelm.schemes import Scheme, get_scheme
from facelm.splits import hand_train_paths
from facelm.student.pseudo import frame_prior, labelled_outputs, pseudo_sample_points, read_unlabelled
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

UNLABELLED_DEFAULTS = ("unlabeled/lfw", "unlabeled/celeba", "unlabeled/utkface", "ytf68/unlabeled")
STUDENTS = [m for m in list_models() if not m.startswith("resnet")]
DEFAULT_STUDENT = "mobilenetv2_035"
# the release recipe, over the shared training defaults: the released student's card records these values
RECIPE = {"head_type": "integral", "batch_size": 128, "unlabelled_per_batch": 128, "steps_per_epoch": 500, "epochs": 20}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm train-student", add_help=add_help)
    p.add_argument("--data", type=Path, default=os.environ.get("DATA"), help="data root (default: $DATA)")
    p.add_argument("--teacher", type=Path, default=RELEASED_TEACHER,
                   help=f"teacher checkpoint (default: {shown(RELEASED_TEACHER)})")
    p.add_argument("--teacher-head", default="300w", help="teacher head the student learns and ships (default: 300w)")
    p.add_argument("--arch", default=DEFAULT_STUDENT, choices=STUDENTS, help=f"student (default: {DEFAULT_STUDENT})")
    p.add_argument("--mode", default="distill", choices=["distill", "labels"],
                   help="distill: ground truth + teacher, unlabelled photos too; labels: ground truth alone (default: distill)")
    p.add_argument("--labelled", action="append", default=None,
                   help="NAME:SCHEME:PATH[,PATH...][:SPLIT] of labelled faces, repeatable; SPLIT train holds the "
                        "validation faces out (default: the training split of "
                        "DATA/300w/trainset and DATA/lfpw/trainset, validation faces held out)")
    p.add_argument("--unlabelled", action="append", type=Path, default=None,
                   help=f"folder of unlabelled photos, repeatable (default: {', '.join(UNLABELLED_DEFAULTS)} under DATA)")
    p.add_argument("--prior-source", type=Path, default=None,
                   help="labelled frames that place first crops in box-less folders (default: DATA/ytf68/train)")
    add_eval_args(p)
    p.add_argument("--teacher-flip", action=argparse.BooleanOptionalAction, default=True,
                   help="teacher targets are the mean of the crop and its mirror image (default: on)")
    p.add_argument("--gt-weight", type=float, default=1.0, help="weight of the ground-truth loss (default: 1.0)")
    p.add_argument("--kd-weight", type=float, default=1.0, help="weight of the distillation loss (default: 1.0)")
    p.add_argument("--kd-labelled-weight", type=float, default=0.25,
                   help="distillation weight on labelled faces, relative to unlabelled photos; below --gt-weight the "
                        "L1 optimum stays on the label (default: 0.25)")
    p.add_argument("--kd-confidence-norm", action=argparse.BooleanOptionalAction, default=False,
                   help="divide the teacher's confidence weights by their mean over the distillation set, so a point of "
                        "average confidence pulls as hard as a labelled point (default: off)")
    p.add_argument("--kd-conf-weight", type=float, default=0.5,
                   help="weight of the student-confidence BCE inside the distillation loss (default: 0.5)")
    p.add_argument("--unlabelled-per-batch", type=int, default=0,
                   help="distill batches of --batch-size labelled faces, the draws the labels-alone arm makes on the "
                        "same seed, plus this many photos; 0 draws the photos in place of labelled faces at "
                        "--labelled-fraction (default: %(default)s)")
    p.add_argument("--labelled-fraction", type=float, default=0.75,
                   help="with --unlabelled-per-batch 0: share of each distill batch drawn from the labelled faces "
                        "(default: %(default)s)")
    p.add_argument("--labelled-limit", type=int, default=None,
                   help="keep only this many labelled faces per source, a seeded random subset (default: all); for "
                        "A/Bs where the student has too few labels to fit")
    p.add_argument("--cache", type=Path, default=RUNS / "cache", help="teacher-landmark cache (default: runs/cache)")
    p.add_argument("--box-calibration", type=Path, default=RELEASED_CALIBRATION,
                   help="detector calibration that maps the photos' boxes.csv (dlib HOG boxes) to landmark boxes "
                        f"(default: {shown(RELEASED_CALIBRATION)})")
    add_training_args(p)
    p.add_argument("--out", type=Path, default=RUNS / "student", help="runs root (default: runs/student)")
    p.add_argument("--name", default=None, help="run name (default: ARCH-MODE)")
    p.set_defaults(**RECIPE)
    return p


def labelled_sources(args: argparse.Namespace, scheme_name: str) -> list[Source]:
    if args.labelled:
        sources = [Source.parse(text) for text in args.labelled]
    elif args.data is not None:
        sources = [Source("300w", get_scheme(scheme_name), hand_train_paths(Path(args.data)), "train")]
    else:
        raise UserError("no data: set DATA=/path/to/data (e.g. DATA=../shared/data) or pass --labelled and --unlabelled")
    for source in sources:
        if source.scheme.name != scheme_name:
            raise UserError(f"labelled source {source.name} is scheme {source.scheme.name} but the teacher head is {scheme_name}")
    return sources


def teacher_confidence_mean(sources: list[LoadedSource]) -> float:
    """Mean sigmoid(confidence logit) of the teacher's cached outputs over every face the student distils from."""
    logits = np.concatenate([item.teacher[..., 2].ravel() for item in sources])
    return torch.sigmoid(torch.from_numpy(logits).double()).mean().item()


def subset_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """Which of n labelled faces a run keeps under --labelled-limit: a seeded random `limit`, in file order."""
    if limit is not None and limit < 1:
        raise UserError(f"--labelled-limit {limit}: keep at least one labelled face")
    if limit is None or limit >= n:
        return list(range(n))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n, limit, replace=False))


def labelled_subset(item: LoadedSource, limit: int | None, seed: int) -> LoadedSource:
    """The source with only the faces `subset_indices` keeps (the source itself without a limit)."""
    keep = subset_indices(len(item.samples), limit, seed)
    if len(keep) == len(item.samples):
        return item
    return replace(item, samples=[item.samples[i] for i in keep], images=[item.images[i] for i in keep],
                   weights=[item.weights[i] for i in keep])


def unlabelled_folders(args: argparse.Namespace) -> list[Path]:
    if args.unlabelled:
        return list(args.unlabelled)
    return [Path(args.data) / rel for rel in UNLABELLED_DEFAULTS] if args.data else []


def unlabelled_source_name(folder: Path) -> str:
    """`unlabelled-<folder>`, named for the dataset above a folder that is itself called unlabeled
    (`ytf68/unlabeled` is `unlabelled-ytf68`), so every photo source in a run's records says where it came from."""
    folder = folder.resolve()
    generic = folder.name.lower() in ("unlabeled", "unlabelled") and folder.parent.name
    return f"unlabelled-{folder.parent.name if generic else folder.name}"


def load_unlabelled(folders: list[Path], teacher_fn, teacher_size: int, teacher_key: str, prior_path: Path | None,
                    scheme, cache: Path, calibration: BoxCalibration | None, log) -> tuple[list[LoadedSource], list[dict]]:
    """Unlabelled folders as sources with teacher outputs; their points (the teacher's) only place the crop, and
    their label weights are 0."""
    prior = None
    if prior_path is not None and prior_path.exists():
        prior_samples = load_annotations(prior_path, scheme)
        prior = frame_prior(prior_samples, decode_all([s.image for s in prior_samples]))
    loaded, summaries = [], []
    for path in folders:
        folder = read_unlabelled(path)
        images, outputs, summary = pseudo_sample_points(folder, teacher_fn, teacher_size, teacher_key, prior, cache,
                                                        calibration)
        log.info(f"unlabelled {path}: {len(images)} photos, box-centre move per teacher pass "
                 f"{', '.join(f'{m:.3f}' for m in summary['box_centre_move_per_pass'])}")
        samples = [Sample(image=p, points=out[:, :2]) for p, out in zip(folder.images, outputs)]
        zeros = [np.zeros(scheme.n_points, np.float32) for _ in samples]
        loaded.append(LoadedSource(Source(unlabelled_source_name(path), scheme, path), samples, images, zeros, outputs))
        summaries.append(summary)
    return loaded, summaries


def make_sampler(n_labelled: int, n_unlabelled: int, labelled_fraction: float, num_samples: int, seed: int) -> Sampler:
    """Draws over a dataset of labelled faces followed by unlabelled photos. With photos mixed in, the labelled faces
    make `labelled_fraction` of the draws: uniform draws would make them 4% of each batch, and the student then
    learnt the blurry 128 px photos first and trailed the labels-only arm by 7 NME points after 4 epochs (measured)."""
    if n_unlabelled == 0:
        return RandomSampler(range(n_labelled), num_samples=num_samples, generator=torch.Generator().manual_seed(seed))
    return group_share_sampler([n_labelled, n_unlabelled], [labelled_fraction, 1 - labelled_fraction], num_samples, seed)


class LabelledPlusUnlabelled(Sampler[list[int]]):
    """Batches over a dataset of labelled faces followed by photos: `labelled` draws that are exactly those a
    labels-alone run on the same seed makes (`make_sampler` with no photos), then `photos` uniform draws of photos.
    The distilled arm then sees every labelled view the labels arm sees, and the photos on top."""

    def __init__(self, n_labelled: int, n_photos: int, labelled: int, photos: int, steps: int, seed: int):
        if n_photos == 0:
            raise UserError(f"--unlabelled-per-batch {photos} needs unlabelled photos: pass --unlabelled or set DATA, or "
                            "--unlabelled-per-batch 0 to distil on the labelled faces alone")
        self.labelled_draws = make_sampler(n_labelled, 0, 1.0, steps * labelled, seed)
        self.photo_generator = torch.Generator().manual_seed(seed + 1)
        self.n_labelled, self.n_photos, self.labelled, self.photos, self.steps = n_labelled, n_photos, labelled, photos, steps

    def __iter__(self):
        faces = iter(self.labelled_draws)
        for _ in range(self.steps):
            photos = self.n_labelled + torch.randint(self.n_photos, (self.photos,), generator=self.photo_generator)
            yield [next(faces) for _ in range(self.labelled)] + photos.tolist()

    def __len__(self) -> int:
        return self.steps


def student_loss(model: LandmarkNet, batch: dict, args: argparse.Namespace, coord_loss,
                 confidence_mean: float = 1.0) -> tuple[torch.Tensor, dict]:
    """Ground-truth loss where labels exist (label weight 0 elsewhere), plus the distillation loss on the cached
    teacher targets when the batch carries them (distill mode)."""
    pred = head_output(model, model.forward_features(batch["image"]), args.teacher_head)
    k = pred.shape[1]
    gt, parts = landmark_loss(pred, batch["target"][:, :k], batch["weight"][:, :k], args.input_size, coord_loss,
                              args.conf_weight, args.conf_tau)
    if "teacher" not in batch:
        return gt, parts
    labelled = batch["weight"][:, :k].sum(-1) > 0
    per_face = torch.where(labelled, args.kd_labelled_weight, 1.0)
    kd, kd_parts = distillation_loss(pred, batch["teacher"][:, :k], args.input_size, coord_loss, args.kd_conf_weight,
                                     per_face, confidence_mean)
    return args.gt_weight * gt + args.kd_weight * kd, {**parts, **kd_parts}


@dataclass
class Teacher:
    """The teacher as the student sees it: one head, plain and (with --teacher-flip) mirror-averaged, keyed for the
    target cache by its file, head and averaging."""
    payload: dict
    scheme: Scheme
    size: int
    plain: BatchFn
    targets: BatchFn
    sha256: str
    key: str


def load_teacher(args: argparse.Namespace) -> Teacher:
    model, payload = load_model(args.teacher)
    heads = payload["spec"]["heads"]
    if args.teacher_head not in heads:
        raise UserError(f"{args.teacher}: no head {args.teacher_head!r}; it has {', '.join(heads)}")
    scheme = get_scheme(heads[args.teacher_head])
    head = SingleHead(model, args.teacher_head).to(args.device).to(memory_format=torch.channels_last).eval()
    plain = torch_batch_fn(head, args.device)
    sha256 = file_sha256(args.teacher)
    return Teacher(payload, scheme, payload["spec"]["input_size"], plain,
                   flip_averaged(plain, scheme.flip_perm) if args.teacher_flip else plain, sha256,
                   f"{sha256}-{args.teacher_head}-{'flip' if args.teacher_flip else 'plain'}")


def sources_with_targets(args: argparse.Namespace, teacher: Teacher, log) -> tuple[list[LoadedSource], list[LoadedSource], dict]:
    """The labelled sources and the unlabelled folders, each face with its cached teacher output; and the record of
    where the photos' pseudo-landmarks (their first crops) came from."""
    labelled = [labelled_subset(load_source(s), args.labelled_limit, args.seed)
                for s in labelled_sources(args, teacher.scheme.name)]
    folders = unlabelled_folders(args)
    prior_path = args.prior_source or (Path(args.data) / "ytf68" / "train" if args.data else None)
    started = time.time()
    for item in labelled:
        item.teacher = labelled_outputs(item, teacher.targets, teacher.size, teacher.key, args.cache)
    calibration = read_calibration(args.box_calibration, "hog") if any((f / "boxes.csv").exists() for f in folders) else None
    unlabelled, pseudo = load_unlabelled(folders, teacher.targets, teacher.size, teacher.key, prior_path, teacher.scheme,
                                         args.cache, calibration, log)
    log.info(f"teacher targets for {sum(len(i.samples) for i in labelled + unlabelled)} faces in "
             f"{time.time() - started:.0f} s (cached in {args.cache})")
    return labelled, unlabelled, {"pseudo_landmarks": pseudo, "seconds": time.time() - started}


def training_loader(args: argparse.Namespace, dataset: LandmarkCrops, n_labelled: int, steps_per_epoch: int) -> DataLoader:
    """Distil batches of labelled faces plus --unlabelled-per-batch photos, or batches that draw the photos at
    --labelled-fraction; the labels arm draws labelled faces alone."""
    if args.mode == "distill" and args.unlabelled_per_batch:
        batches = LabelledPlusUnlabelled(n_labelled, len(dataset) - n_labelled, args.batch_size,
                                         args.unlabelled_per_batch, steps_per_epoch, args.seed)
    else:
        draws = make_sampler(n_labelled, len(dataset) - n_labelled, args.labelled_fraction,
                             steps_per_epoch * args.batch_size, args.seed)
        batches = BatchSampler(draws, args.batch_size, drop_last=True)
    return DataLoader(dataset, batch_sampler=SeededBatches(batches, args.seed), num_workers=args.workers,
                      persistent_workers=args.workers > 0)


def final_metrics(args: argparse.Namespace, report: dict, eval_set: EvalSet, teacher: Teacher, history: list[dict],
                  run_dir: Path) -> dict:
    """The run's metrics.json: the student's and the teacher's NME on the validation faces, speed and schedule."""
    teacher_report = eval_set.evaluate(teacher.plain, teacher.size)[0]
    targets_report = eval_set.evaluate(teacher.targets, teacher.size)[0]
    plot_ced({f"student {args.arch} ({args.mode})": np.asarray(report["per_image_nme"]) / 100,
              f"teacher {teacher.payload['spec']['arch']}": np.asarray(teacher_report["per_image_nme"]) / 100},
             run_dir / "ced.png", title=f"CED on {eval_set.label}")
    metrics = {key: value for key, value in report.items() if key != "per_image_nme"}
    metrics.update(mode=args.mode, arch=args.arch, teacher_nme=teacher_report["nme"],
                   teacher_fr10=teacher_report["fr10"], teacher_auc10=teacher_report["auc10"],
                   teacher_targets_nme=targets_report["nme"],
                   train_img_per_s=float(np.mean([h["train_img_per_s"] for h in history])),
                   train_wall_seconds=history[-1]["elapsed_seconds"], epochs=args.epochs)
    return metrics


def main(args: argparse.Namespace) -> dict:
    args.name = args.name or f"{args.arch}-{args.mode}"
    finished = auto_resume(args)
    if finished is not None:
        print(f"{finished['run_dir']}: finished already (--resume auto); nothing to do")
        return finished
    if args.threads:
        torch.set_num_threads(args.threads)
    set_loader_threads(args.workers)
    torch.manual_seed(args.seed)
    teacher = load_teacher(args)
    scheme = teacher.scheme
    resume = read_checkpoint(args.resume) if args.resume else None
    run_dir = args.resume.parent if args.resume else make_run_dir(args.out, args.name)
    log = run_logger(run_dir, "train")
    labelled, unlabelled, targets = sources_with_targets(args, teacher, log)
    eval_set, test_set = eval_sets(args, scheme)
    check_held_out(labelled + unlabelled, eval_set, test_set)

    sources = labelled + unlabelled if args.mode == "distill" else labelled
    confidence_mean = teacher_confidence_mean(sources) if args.kd_confidence_norm else 1.0
    fingerprint = data_fingerprint(labelled + unlabelled)
    fingerprint["used_in_this_mode"] = [item.source.name for item in sources]
    teacher_fingerprint = {"path": shown(args.teacher), "sha256": teacher.sha256, "spec": teacher.payload["spec"],
                           "head": args.teacher_head, "flip_averaged": args.teacher_flip,
                           "view": "un-augmented eval-rule crop, cached; moved by each augmented crop's affine",
                           "pseudo_landmarks": targets["pseudo_landmarks"], "kd_confidence_mean": confidence_mean}
    model = create_model(args.arch, heads={args.teacher_head: scheme.n_points}, input_size=args.input_size,
                         head=args.head_type)
    model.heads[args.teacher_head].set_mean_shape(torch.from_numpy(labelled[0].mean_crop_shape(args.input_size)))
    if args.init:
        init_from(model, args.init, log)
    model = model.to(args.device).to(memory_format=torch.channels_last)
    spec = model_spec(model, args.arch, {args.teacher_head: scheme.name})
    step_batch = args.batch_size + (args.unlabelled_per_batch if args.mode == "distill" else 0)
    precision, why = run_precision(args, step_timer(model, step_batch, args.input_size, args.device))
    check_resume(args, fingerprint, teacher.sha256)
    note_seeding_change(args.resume, log)
    write_json(run_dir / "config.json", {"args": jsonable_args(args), "precision": precision,
                                         "photometric_rule": PHOTOMETRIC_RULE, "augmentation_seeds": AUGMENTATION_SEEDS,
                                         **provenance()})
    write_json(run_dir / "data_fingerprint.json", fingerprint)
    write_json(run_dir / "teacher_fingerprint.json", teacher_fingerprint)

    geometry = GeometryConfig(args.scale_min, args.scale_max, args.jitter, args.rotation)
    if args.mode == "labels":
        sources = [replace(item, teacher=None) for item in sources]
    dataset = LandmarkCrops(sources, args.input_size, train=True, geometry=geometry, photometric_strength=args.photometric)
    all_images = sum(len(item.samples) for item in labelled + unlabelled)
    steps_per_epoch = epoch_steps(args.steps_per_epoch, all_images // args.batch_size)
    n_labelled = sum(len(item.samples) for item in labelled)
    loader = training_loader(args, dataset, n_labelled, steps_per_epoch)
    steps_per_epoch = min(steps_per_epoch, args.max_steps or steps_per_epoch)
    optimizer, scheduler, ema = make_optimization(model, args, steps_per_epoch)
    start_epoch, history = restore(resume, model, optimizer, scheduler, ema, log) if resume else (0, [])
    coord_loss = get_coord_loss(args.loss)

    def step(batch: dict) -> tuple[torch.Tensor, dict]:
        return student_loss(model, batch, args, coord_loss, confidence_mean)

    def evaluate(eval_model) -> dict:
        return eval_set.evaluate(torch_batch_fn(SingleHead(eval_model, args.teacher_head), args.device), args.input_size)[0]

    def save(epoch: int, history: list[dict]) -> None:
        save_run_checkpoint(run_dir / "last.pt", model, spec, optimizer, scheduler, ema, epoch, history, args,
                            data_fingerprint=fingerprint, teacher_fingerprint=teacher_fingerprint)

    log.info(f"run folder {run_dir}; mode {args.mode}; {len(dataset)} faces ({n_labelled} labelled), {steps_per_epoch} "
             f"steps/epoch, teacher {args.teacher} ({teacher.sha256[:12]}), device {args.device}, precision {precision} "
             f"({why})")
    history, report = fit(model, ema, loader, optimizer, scheduler, step, evaluate if eval_set else None, save,
                          epochs=args.epochs, start_epoch=start_epoch, history=history, eval_every=args.eval_every,
                          device=args.device, max_steps=args.max_steps, run_dir=run_dir, log=log, precision=precision)
    plot_training(history, run_dir / "training_curves.png")
    if not report:
        return {"run_dir": str(run_dir)}
    metrics = final_metrics(args, report, eval_set, teacher, history, run_dir)
    metrics.update(teacher_seconds=targets["seconds"], steps_per_epoch=steps_per_epoch, precision=precision)
    if test_set is not None:
        test = test_once(SingleHead(ema.module if ema is not None else model, args.teacher_head), test_set,
                         args.input_size, args.device, run_dir, log)
        metrics["test"] = {k: v for k, v in test.items() if k != "per_image_nme"}
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "eval_report.json", report)
    log.info(f"final: NME {report['nme']:.3f}% (teacher {metrics['teacher_nme']:.3f}%)  FR@10 {report['fr10']:.2f}%  "
             f"AUC@10 {report['auc10']:.4f}  Spearman(conf, err) {format_rho(report['spearman_conf_error'])}")
    return {"run_dir": str(run_dir), **metrics}
