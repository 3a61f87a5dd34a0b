"""Student reports from finished run folders: the A/B (labels alone vs distilled, same student, schedule and data)
and the family table (params, MFLOPs, size and accuracy of every student distilled on one, possibly shorter, schedule).

    facelm student-report --runs runs/student --out docs/results
"""
from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

import numpy as np

from facelm.checkpoint import load_model
from facelm.engine import torch_batch_fn
from facelm.errors import UserError
from facelm.faces import EvalSet
from facelm.inference import flip_averaged
from facelm.metrics import landmark_report
from facelm.models import SingleHead
from facelm.models.stats import model_stats
from facelm.paths import RESULTS, RUNS
from facelm.reports.tables import STUDENT_MAX_MB, ab_markdown, families_markdown, fit_sentence, pick_sentence
from facelm.runs import current_args, file_sha256, read_history, write_json
from facelm.schemes import Scheme, get_scheme
from facelm.student.train import DEFAULT_STUDENT, STUDENTS, subset_indices
from facelm.training import add_training_args

AUGMENTATION_KEYS = ("scale_min", "scale_max", "jitter", "rotation", "photometric")
SCHEDULE_ARGS = ("input_size", "head_type", "epochs", "batch_size", "lr", "weight_decay", "steps_per_epoch", "loss", "seed",
                 *AUGMENTATION_KEYS, "ema_decay", "labelled_limit")
AB_MIN_GAIN = 0.15  # NME points distillation must win by, with FR@10 no worse
FAMILY_STATS = ("params", "mflops", "fp32_mb")  # what families_report adds to a run row


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm student-report", add_help=add_help)
    p.add_argument("--runs", type=Path, default=RUNS / "student", help="student runs (default: runs/student)")
    p.add_argument("--ab-arch", nargs="+", default=None,
                   help="students to A/B (default: every student with both arms on one schedule, shipped one first)")
    p.add_argument("--out", type=Path, default=RESULTS, help="where student_ab.json / student_families.json go")
    p.add_argument("--data", type=Path, default=None,
                   help="data root; with it, each A/B also measures both arms and the teacher on the labelled training "
                        "faces (<data>/300w/trainset), which tells underfitting from overfitting")
    p.add_argument("--teachers", type=Path, nargs="+", default=[],
                   help="earlier teacher checkpoints, matched by sha256, for runs whose teacher has since been replaced "
                        "at its recorded path (e.g. git show REV:weights/teacher_resnet18.pt > old.pt)")
    return p


def run_rows(root: Path) -> list[dict]:
    """One row per finished run (a metrics.json), with its schedule and its teacher (path and sha256 as recorded;
    the teacher is not part of the schedule, so a labels-alone arm pairs with distilled arms from any teacher)."""
    rows = []
    for metrics_path in sorted(root.glob("*/metrics.json")):
        run = metrics_path.parent
        config = json.loads((run / "config.json").read_text())
        args = current_args(config["args"])
        m = json.loads(metrics_path.read_text())
        teacher = json.loads((run / "teacher_fingerprint.json").read_text())
        rows.append({"run": str(run), "arch": args["arch"], "mode": args["mode"],
                     "teacher": {"path": teacher["path"], "sha256": teacher["sha256"], "head": teacher["head"]},
                     "labelled_fraction": labelled_share(args) if args["mode"] == "distill" else None,
                     "unlabelled_per_batch": args.get("unlabelled_per_batch") or 0 if args["mode"] == "distill" else None,
                     "kd_labelled_weight": args.get("kd_labelled_weight", 1.0) if args["mode"] == "distill" else None,
                     "kd_confidence_norm": bool(args.get("kd_confidence_norm")) and args["mode"] == "distill",
                     "schedule": with_recorded_defaults({k: args.get(k) for k in SCHEDULE_ARGS}
                                                        | {"steps_per_epoch": m["steps_per_epoch"],
                                                           "photometric_rule": config.get("photometric_rule", 1)}
                                                        | data_recipe(args)),
                     **{k: m[k] for k in ("nme", "fr10", "auc10", "spearman_conf_error", "teacher_nme", "teacher_targets_nme",
                                          "train_img_per_s", "train_wall_seconds")},
                     "nme_on": "validation" if "test" in m else "test",
                     "test_nme": m["test"]["nme"] if "test" in m else None,
                     "eval_nme_by_epoch": eval_curve(run)})
    return rows


def data_recipe(args: dict) -> dict:
    """What a run learned from besides the schedule: its labelled sources by name (None: the hand labels by default)
    and the run it started from (--init). Runs that differ here are different recipes, never arms of one A/B: a
    labels-mode run on pseudo-labelled photos is not the labels-alone arm."""
    labelled = [text.split(":", 1)[0] for text in args["labelled"]] if args.get("labelled") else None
    return {"labelled_sources": labelled, "init": Path(args["init"]).parent.name if args.get("init") else None}


def with_recorded_defaults(schedule: dict) -> dict:
    """The schedule as reports key it (`head`: the head type), with what older runs did not record: their head type
    (the FC head, before there was a choice), their photometric rule (1: `--photometric` scaled brightness and
    contrast only) and their data recipe (the default labelled faces, no --init)."""
    head = schedule.get("head_type") or schedule.get("head") or "fc"
    rest = {key: value for key, value in schedule.items() if key != "head_type"}
    return rest | {"head": head, "photometric_rule": schedule.get("photometric_rule", 1),
                   "labelled_sources": schedule.get("labelled_sources"), "init": schedule.get("init")}


def labelled_share(args: dict) -> float:
    """The labelled faces' share of each distill batch: --labelled-fraction, or batch / (batch + photos) when the
    photos ride on top of a full labelled batch (--unlabelled-per-batch)."""
    photos = args.get("unlabelled_per_batch") or 0
    return round(args["batch_size"] / (args["batch_size"] + photos), 3) if photos else args["labelled_fraction"]


def recorded_rows(out: Path) -> tuple[list[dict], dict[tuple[str, str], dict]]:
    """The run rows of the reports already in `out`, and the training fit of each recorded A/B by its (labels run,
    distilled run). Where a run folder is gone (a machine was reset) the committed report is its only record."""
    rows, fits = {}, {}
    if (out / "student_ab.json").is_file():
        for ab in json.loads((out / "student_ab.json").read_text())["abs"]:
            rows |= {r["run"]: r for r in (ab["labels"], ab["distill"], *ab["variants"], *ab.get("crop_controls", []))}
            if "training_fit" in ab:
                fits[ab["labels"]["run"], ab["distill"]["run"]] = ab["training_fit"]
    if (out / "student_families.json").is_file():
        rows |= {r["run"]: {k: v for k, v in r.items() if k not in FAMILY_STATS}
                 for r in json.loads((out / "student_families.json").read_text())["rows"] if r["run"]}
    # JSON turned the epoch keys into strings; rows of runs on disk have them as ints
    return [r | {"schedule": with_recorded_defaults(r["schedule"]),
                 "eval_nme_by_epoch": {int(e): v for e, v in r["eval_nme_by_epoch"].items()}} for r in rows.values()], fits


def report_rows(runs: Path, out: Path) -> tuple[list[dict], dict[tuple[str, str], dict]]:
    """Rows of the finished runs under `runs` plus the recorded rows of runs not there, carried over as they were so
    that a new run adds a row without dropping the old ones; oldest run first."""
    on_disk = run_rows(runs) if runs.is_dir() else []
    names = {Path(r["run"]).name for r in on_disk}
    recorded, fits = recorded_rows(out)
    carried = [r for r in recorded if Path(r["run"]).name not in names]
    if carried:
        print(f"{len(carried)} run(s) carried over from {out} (their folders are gone): "
              + ", ".join(Path(r["run"]).name for r in carried))
    rows = sorted(on_disk + carried, key=lambda r: Path(r["run"]).name)
    if not rows:
        raise UserError(f"{runs}: no finished student runs (no */metrics.json); run 'facelm train-student' first")
    return rows, fits


def eval_curve(run: Path) -> dict[int, float]:
    """Test NME at each epoch that evaluated, from the run's metrics.jsonl."""
    return {row["epoch"]: row["eval_nme"] for row in read_history(run) if "eval_nme" in row}


def latest(rows: list[dict], arch: str, mode: str, schedule: dict | None = None) -> dict | None:
    """The newest finished run of an arch and mode (on a given schedule)."""
    found = [r for r in rows if r["arch"] == arch and r["mode"] == mode and (schedule is None or r["schedule"] == schedule)]
    return found[-1] if found else None


def paired_schedules(rows: list[dict], arch: str) -> list[dict]:
    """Schedules on which an arch has both a labels-alone and a distilled run: all labelled faces and the default
    augmentation first, then longest schedule first, then lowest distilled NME (the best-trained pair, and the one a
    release comes from)."""
    schedules = []
    for r in rows:
        if r["arch"] == arch and r["mode"] == "labels" and r["schedule"] not in schedules and latest(
                rows, arch, "distill", r["schedule"]):
            schedules.append(r["schedule"])
    return sorted(schedules, key=lambda s: (s.get("labelled_limit") is not None, not default_augmentation(s),
                                            -s["epochs"], best_distilled_nme(rows, arch, s)))


def best_distilled_nme(rows: list[dict], arch: str, schedule: dict) -> float:
    """The lowest NME of an arch's distilled runs on a schedule."""
    return min(r["nme"] for r in rows if r["arch"] == arch and r["mode"] == "distill" and r["schedule"] == schedule)


@functools.cache
def default_augmentation_settings() -> dict:
    """The augmentation settings the training options default to."""
    parser = add_training_args(argparse.ArgumentParser())
    return {key: parser.get_default(key) for key in AUGMENTATION_KEYS}


def default_augmentation(schedule: dict) -> bool:
    """Whether a schedule trained with the training options' default augmentation; a schedule without a key had it."""
    return all(schedule.get(key, value) == value for key, value in default_augmentation_settings().items())


def ab_archs(rows: list[dict]) -> list[str]:
    """Every student with an A/B pair (labels alone and distilled, same schedule), the shipped default first."""
    archs = sorted((a for a in {r["arch"] for r in rows} if paired_schedules(rows, a)),
                   key=lambda a: (a != DEFAULT_STUDENT, a))
    if not archs:
        raise UserError("no A/B pair: run 'facelm train-student' with --mode labels and --mode distill on one schedule")
    return archs


def ab_reports(rows: list[dict], arch: str) -> list[dict]:
    """One A/B per schedule on which the arch has both arms."""
    schedules = paired_schedules(rows, arch)
    if not schedules:
        raise UserError(f"no A/B pair for {arch}: run 'facelm train-student --arch {arch}' with --mode labels and "
                        "--mode distill on one schedule")
    return [ab_report(rows, arch, schedule) for schedule in schedules]


def crop_controls(rows: list[dict], arch: str, schedule: dict, variants: list[dict]) -> list[dict]:
    """Labels-alone runs on the schedule but for a batch as large as a distilled variant's labelled faces plus
    photos: as many crops per step as that variant, all of them labelled. They tell the photos' gain from the
    larger batch's."""
    photos = {r["unlabelled_per_batch"] for r in variants if r.get("unlabelled_per_batch")}
    if not photos:
        return []
    crops = {schedule["batch_size"] + n for n in photos}
    return [r for r in rows if r["arch"] == arch and r["mode"] == "labels" and r["schedule"]["batch_size"] in crops
            and r["schedule"] | {"batch_size": schedule["batch_size"]} == schedule]


def head_controls(rows: list[dict], arch: str, schedule: dict) -> list[dict]:
    """Runs on the schedule but for the landmark head: what the head alone changes. Of repeated labels-alone runs only
    the newest, the one that head's own A/B uses."""
    others = [r for r in rows if r["arch"] == arch and r["schedule"]["head"] != schedule["head"]
              and r["schedule"] | {"head": schedule["head"]} == schedule]
    return [r for r in others if r["mode"] != "labels" or latest(rows, arch, "labels", r["schedule"]) is r]


def recipe_arms(rows: list[dict], arch: str, schedule: dict) -> list[dict]:
    """Runs on the schedule but for the data recipe: pseudo-labelled photos as labels, a start from --init (a
    pretrained student); the newest of each recipe and mode."""
    plain = {"labelled_sources": schedule.get("labelled_sources"), "init": schedule.get("init")}
    others = [r for r in rows if r["arch"] == arch and r["schedule"] != schedule and r["schedule"] | plain == schedule | plain]
    return [r for r in others if latest(rows, arch, r["mode"], r["schedule"]) is r]


def ab_report(rows: list[dict], arch: str, schedule: dict) -> dict:
    """The labels-alone arm against every distilled variant on the same schedule; the best variant is the B arm
    (it was picked on the test set when there is more than one: the report lists them all). Labels-alone runs with
    as many crops per step as a variant, and runs with another head, are listed as controls; the bar is judged on the
    same schedule."""
    labels = latest(rows, arch, "labels", schedule)
    variants = [r for r in rows if r["arch"] == arch and r["mode"] == "distill" and r["schedule"] == labels["schedule"]]
    distilled = min(variants, key=lambda r: r["nme"])
    gain = labels["nme"] - distilled["nme"]
    passed = gain >= AB_MIN_GAIN and distilled["fr10"] <= labels["fr10"]
    return {"arch": arch, "schedule": labels["schedule"], "labels": labels, "distill": distilled, "variants": variants,
            "crop_controls": crop_controls(rows, arch, labels["schedule"], variants),
            "head_controls": head_controls(rows, arch, labels["schedule"]),
            "recipe_arms": recipe_arms(rows, arch, labels["schedule"]),
            "nme_gain": gain, "bar": f"distilled NME at least {AB_MIN_GAIN} points lower, FR@10 no worse", "passed": passed}


class TrainingFaces:
    """The labelled training faces, decoded once per report, and each teacher's predictions on all of them, run once:
    every A/B then scores its own subset (--labelled-limit) without re-reading images or re-running the teacher."""

    def __init__(self, faces: Path, earlier_teachers: list[Path]):
        if not faces.is_dir():
            raise UserError(f"{faces}: no labelled training faces there; pass --data with the data root "
                            "(e.g. ../shared/data)")
        self.faces = faces
        self.earlier_teachers = earlier_teachers
        self.sets: dict[str, EvalSet] = {}
        self.teachers: dict[tuple[str, str], tuple[Scheme, dict[str, tuple[np.ndarray, np.ndarray]]]] = {}

    def eval_set(self, scheme: Scheme) -> EvalSet:
        if scheme.name not in self.sets:
            self.sets[scheme.name] = EvalSet(self.faces, scheme)
        return self.sets[scheme.name]

    def teacher(self, recorded: dict) -> tuple[Scheme, dict[str, tuple[np.ndarray, np.ndarray]]]:
        """The head's scheme, and the teacher's (points, confidences) on every face, plain and mirror-averaged."""
        key = recorded["sha256"], recorded["head"]
        if key not in self.teachers:
            teacher, payload = load_model(teacher_checkpoint(recorded, self.earlier_teachers))
            scheme = get_scheme(payload["spec"]["heads"][recorded["head"]])
            faces_set, size = self.eval_set(scheme), payload["spec"]["input_size"]
            teacher_fn = torch_batch_fn(SingleHead(teacher, recorded["head"]))
            self.teachers[key] = scheme, {
                "teacher": faces_set.evaluate(teacher_fn, size)[1:],
                "teacher_targets": faces_set.evaluate(flip_averaged(teacher_fn, scheme.flip_perm), size)[1:]}
        return self.teachers[key]

    def fit(self, ab: dict, carried: dict[str, float]) -> dict:
        """NME on the A/B's labelled training faces (eval-rule crops, no augmentation) of both arms, the B arm's teacher
        and its mirror-averaged targets. A student that scores about as well there as on the test set underfits: it has
        no overfitting for extra faces, which are what distillation adds, to correct. An arm whose run folder is gone
        keeps the value a report recorded for it (`carried`, by run)."""
        head = ab["distill"]["teacher"]["head"]
        scheme, teacher = self.teacher(ab["distill"]["teacher"])
        all_faces = self.eval_set(scheme)
        keep = subset_indices(len(all_faces.samples), ab["schedule"]["labelled_limit"], ab["schedule"]["seed"])
        faces_set = all_faces.take(keep)
        fit = {"faces": str(self.faces), "n": len(keep)}
        for name, (pred, conf) in teacher.items():
            fit[name] = landmark_report(pred[keep], faces_set.gt, scheme, conf[keep])["nme"]
        for arm in ("labels", "distill"):
            run = Path(ab[arm]["run"])
            if not run.is_dir():
                fit[arm] = carried[ab[arm]["run"]]
                continue
            student, payload = load_model(run / "last.pt")
            fit[arm] = faces_set.evaluate(torch_batch_fn(SingleHead(student, head)), payload["spec"]["input_size"])[0]["nme"]
        return fit


def arm_fits(fits: dict[tuple[str, str], dict]) -> dict[str, float]:
    """Each recorded run's own training-face NME, from the recorded A/B fits it was an arm of."""
    return {run: fit[arm] for (labels, distill), fit in fits.items() for arm, run in (("labels", labels), ("distill", distill))}


def teacher_checkpoint(recorded: dict, earlier: list[Path]) -> Path:
    """The teacher a run recorded, found by its sha256: at its recorded path, or among earlier checkpoints."""
    for path in [Path(recorded["path"]), *earlier]:
        if path.is_file() and file_sha256(path) == recorded["sha256"]:
            return path
    raise UserError(f"{recorded['path']} is no longer the teacher a run learnt from (sha256 {recorded['sha256'][:12]}); "
                    f"pass that teacher with --teachers (e.g. from git: git show REV:{recorded['path']} > old.pt)")


def family_key(row: dict) -> dict:
    """What makes family rows comparable: the schedule and the teacher distilled from."""
    return {**row["schedule"], "teacher_sha256": row["teacher"]["sha256"]}


def families_schedule(rows: list[dict]) -> dict:
    """The schedule and teacher most students were distilled on (the family sweep may be shorter than the A/B); the
    longest such schedule on a tie."""
    by_key: dict[str, set] = {}
    for r in rows:
        if r["mode"] == "distill":
            by_key.setdefault(json.dumps(family_key(r), sort_keys=True), set()).add(r["arch"])
    key = json.loads(max(by_key, key=lambda key: (len(by_key[key]), json.loads(key)["epochs"])))
    return {**key, "teacher_nme": next(r["teacher_nme"] for r in rows if r["mode"] == "distill" and family_key(r) == key)}


def families_report(rows: list[dict], schedule: dict) -> list[dict]:
    """Every student family, fewest FLOPs first: params, MFLOPs, fp32 size, and accuracy where one was distilled
    on the schedule from the schedule's teacher (the best variant)."""
    key = {k: v for k, v in schedule.items() if k != "teacher_nme"}
    table = []
    for arch in STUDENTS:
        runs = [r for r in rows if r["arch"] == arch and r["mode"] == "distill" and family_key(r) == key]
        stats = model_stats(arch, {"head": 68}, schedule["input_size"], schedule["head"])
        row = min(runs, key=lambda r: r["nme"]) if runs else {"arch": arch, "run": None}
        table.append({**row, "params": stats["params"], "mflops": 2 * stats["mmacs"], "fp32_mb": stats["fp32_mb"]})
    return sorted(table, key=lambda r: r["mflops"])


def main(args: argparse.Namespace) -> dict:
    rows, recorded_fits = report_rows(args.runs, args.out)
    abs_ = [ab for arch in (args.ab_arch or ab_archs(rows)) for ab in ab_reports(rows, arch)]
    if args.data is not None:
        training_faces = TrainingFaces(args.data / "300w" / "trainset", args.teachers)
        carried = arm_fits(recorded_fits)
        for ab in abs_:
            arms = ab["labels"]["run"], ab["distill"]["run"]
            on_disk = [Path(run).is_dir() for run in arms]
            if arms in recorded_fits and not all(on_disk):
                ab["training_fit"] = recorded_fits[arms]
            elif all(present or run in carried for run, present in zip(arms, on_disk)):
                ab["training_fit"] = training_faces.fit(ab, carried)
            else:
                print(f"no training fit for the {ab['arch']} A/B: a run folder of it is gone and no report recorded one")
    schedule = families_schedule(rows)
    families = families_report(rows, schedule)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "student_ab.json", {"abs": abs_})
    write_json(args.out / "student_families.json", {"schedule": schedule, "rows": families})
    for ab in abs_:
        verdict = "passed" if ab["passed"] else "NOT passed"
        print(f"A/B on {ab['arch']}, {ab['schedule']['epochs']} epochs: distillation gains {ab['nme_gain']:+.3f} NME "
              f"points ({verdict}: {ab['bar']})")
        print(ab_markdown(ab))
        if "training_fit" in ab:
            print(fit_sentence(ab))
    print(families_markdown(families))
    print(pick_sentence(families, STUDENT_MAX_MB))
    return {"ab": abs_, "families": families}
