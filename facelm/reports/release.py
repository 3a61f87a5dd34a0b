"""Release a teacher or student run: fp16 EMA weights under weights/, a model card and a metrics JSON built from
the run folder, and its plots under docs/. The card says what the run folder says, nothing typed by hand."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from facelm.checkpoint import load_model, save_checkpoint
from facelm.errors import UserError
from facelm.geometry import EVAL_CROP_SCALE
from facelm.metrics import format_rho
from facelm.paths import DOCS, WEIGHTS, shown
from facelm.runs import current_args, data_label, file_sha256, read_history, write_json


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm release", add_help=add_help)
    p.add_argument("--run", type=Path, required=True, help="teacher or student run folder (last.pt, metrics.json, config.json)")
    p.add_argument("--out", type=Path, default=WEIGHTS, help="release folder (default: weights)")
    p.add_argument("--docs", type=Path, default=DOCS, help="where the run's plots are copied (default: docs)")
    return p


CARD_ARGS = ("arch", "mode", "head_type", "input_size", "epochs", "batch_size", "lr", "weight_decay", "loss", "conf_weight",
             "conf_tau", "ema_decay", "scale_min", "scale_max", "jitter", "rotation", "photometric", "seed", "teacher_flip",
             "gt_weight", "kd_weight", "kd_conf_weight", "kd_labelled_weight", "labelled_fraction", "unlabelled_per_batch",
             "steps_per_epoch", "source_share", "device")


def release_name(spec: dict) -> str:
    return f"{'teacher' if spec['arch'].startswith('resnet') else 'student'}_{spec['arch']}"


def teacher_section(run: Path, metrics: dict) -> str:
    """For a student: which teacher it learnt from (or was compared with, trained on labels alone) and how close it came."""
    teacher = json.loads((run / "teacher_fingerprint.json").read_text())
    source = f"`{teacher['path']}` (`{teacher['spec']['arch']}`, sha256 `{teacher['sha256'][:16]}`), head `{teacher['head']}`"
    if metrics["mode"] == "labels":
        how = (f"Trained on the labels alone (`--mode labels`, the A arm of the A/B); the teacher {source} is only the "
               "comparison.")
    else:
        how = (f"Distilled from {source}; teacher view: {teacher['view']}; mirror-averaged targets: "
               f"{teacher['flip_averaged']}.")
    return f"""
## Teacher
{how}
On the same faces the teacher scores NME {metrics['teacher_nme']:.3f}% (its mirror-averaged targets
{metrics['teacher_targets_nme']:.3f}%); this student is {metrics['nme'] - metrics['teacher_nme']:+.3f} points from it.
"""


def card_flags(args: dict) -> str:
    """The run's recipe as command-line flags, a list option's values after it (`--source-share 300w=0.8`)."""
    flags = []
    for key, value in args.items():
        if key not in CARD_ARGS or value is None:
            continue
        values = " ".join(map(str, value)) if isinstance(value, list) else value
        flags.append(f"--{key.replace('_', '-')} {values}")
    return " ".join(flags)


def training_machine(config: dict) -> str:
    """The machine a run trained on, from its recorded provenance: the GPU if it used one, else the CPU."""
    info = config.get("machine", {})
    if str(config["args"].get("device", "")).startswith("cuda") and info.get("cuda"):
        return f"one {info['cuda']} GPU (torch {info.get('torch', '?')})"
    return f"a {info.get('cores', '?')}-core {info.get('cpu', 'unrecorded')} CPU"


def resume_note(args: dict) -> str:
    """A line saying the run was resumed (its config and commit are then the last resume's), or nothing."""
    if not args.get("resume"):
        return ""
    return ("Resumed with `--resume` from its own `last.pt`: the config, commit and time above are the resumed "
            "process's; the run's `train.log` says at which epoch.\n")


def evaluation_text(metrics: dict, args: dict) -> str:
    """Which faces chose the recipe and which were held out for the report: validation in the loop, the test set
    once at the end (older runs evaluated the test set in the loop)."""
    if "test" not in metrics:
        return (f"Evaluation: `{data_label(metrics['data'])}` ({metrics['n']} faces), the in-loop eval set; no separate "
                "test set was evaluated. No checkpoint selection: this is the last epoch.")
    seen = (" It was retrained on training + validation faces (`--train-on train+val`) with a recipe chosen on "
            "validation, so its validation numbers are on faces it saw." if args.get("train_on") == "train+val" else "")
    return (f"Validation (in the loop, every choice): `{data_label(metrics['data'])}` ({metrics['n']} faces), "
            f"NME {metrics['nme']:.3f}%. Test: `{data_label(metrics['test']['data'])}` ({metrics['test']['n']} faces), "
            f"evaluated once when the run ended. No checkpoint selection: this is the last epoch.{seen}")


def label_licences(fingerprint: dict) -> list[str]:
    """Licence notes of machine-made label sources (a `provenance.json` beside a pseudo-label CSV)."""
    notes = []
    for part in fingerprint["sources"].values():
        for path in part["spec"].split(":", 2)[2].split(" [")[0].split(","):
            provenance = Path(path).parent / "provenance.json" if path.endswith(".csv") else Path(path) / "provenance.json"
            if provenance.is_file() and "licence" in (record := json.loads(provenance.read_text())):
                notes.append(f"Labels from {record['labeller']}: {record['licence']}.")
    return sorted(set(notes))


def init_runs(args: dict) -> list[tuple[Path, dict]]:
    """The runs whose weights this run started from (`--init`, followed back to a fresh start), each with its data
    fingerprint: their faces are in the weights too."""
    chain, init = [], args.get("init")
    while init:
        run = Path(init).parent
        if not (run / "data_fingerprint.json").is_file() or not (run / "config.json").is_file():
            raise UserError(f"--init {init}: that run's folder is gone (no data_fingerprint.json or config.json), so "
                            "the card cannot say what the weights were trained on; restore the folder, then release")
        chain.append((run, json.loads((run / "data_fingerprint.json").read_text())))
        init = current_args(json.loads((run / "config.json").read_text())["args"]).get("init")
    return chain


def init_text(chain: list[tuple[Path, dict]]) -> str:
    """The card's lines on the runs the weights started from, or nothing."""
    return "".join(f"\nStarted from the weights of `{shown(run)}` (`--init`), trained on "
                   + ", ".join(f"`{n}` ({p['n_images']} images, `{p['sha256'][:16]}`)" for n, p in fp["sources"].items())
                   + ".\n" for run, fp in chain)


def model_card(name: str, weights: Path, run: Path, config: dict, metrics: dict, fingerprint: dict, spec: dict,
               chain: list[tuple[Path, dict]]) -> str:
    args = current_args(config["args"])
    teacher = teacher_section(run, metrics) if (run / "teacher_fingerprint.json").is_file() else ""
    sources = "\n".join(f"| `{n}` | {p['spec'].split(':')[1]} | {p['n_images']} | `{p['sha256'][:16]}` |"
                        for n, p in fingerprint["sources"].items())
    reported = metrics.get("test", metrics)
    regions = ", ".join(f"{k} {v:.2f}%" for k, v in reported["regions"].items())
    parts = "".join(f"\n| `{part}` ({r['n']}) | {r['nme']:.3f}% | {r['fr10']:.2f}% | {r['auc10']:.4f} | |"
                    for part, r in reported.get("parts", {}).items())
    released_from = shown(run)
    head = metrics.get("head", args.get("eval_head", args.get("teacher_head")))
    rho = format_rho(reported["spearman_conf_error"])
    fingerprints = [fingerprint, *(fp for _, fp in chain)]
    licences = "".join(f"\n{note}" for note in sorted({n for fp in fingerprints for n in label_licences(fp)}))
    source_names = list(dict.fromkeys(n for fp in fingerprints for n in fp["sources"]))
    role = "teacher" if spec["arch"].startswith("resnet") else "student"
    return f"""# {name}

2-D face landmark {role}, released by `facelm release --run {released_from}`.

- File: `{weights.name}` (fp16 EMA weights, {weights.stat().st_size / 1e6:.1f} MB), sha256 `{file_sha256(weights)}`
- Architecture: `{spec['arch']}`, {spec.get('head', 'fc')} landmark head, input {spec['input_size']}x{spec['input_size']} RGB,
  heads {json.dumps(spec['heads'])} (head name: landmark scheme). Each head outputs per point `x, y`
  (crop-normalised, 0..1 across the crop) and a confidence logit
  (sigmoid = predicted quality, exp(-error / {args['conf_tau']} px) in training).
- Crop rule: square of side {EVAL_CROP_SCALE} x max(width, height) of the landmark box, centred on it (see `facelm/geometry.py`).
- Input: RGB, (pixel - mean) / std with ImageNet mean/std (see `facelm/preprocess.py`).
- Commit: `{config['git_commit']}`, facelm {config['facelm']}, trained {config['time']}.

## Data
| head | scheme | images | fingerprint |
|---|---|---|---|
{sources}
{init_text(chain)}
{evaluation_text(metrics, args)}

## Training config
`{card_flags(args)}`

Wall time {metrics['train_wall_seconds'] / 60:.1f} min at {metrics['train_img_per_s']:.1f} img/s on {training_machine(config)}.
{resume_note(args)}{teacher}
## Metrics on `{data_label(reported['data'])}` (head `{head}`, eval crop from ground-truth landmarks)
| faces | NME (inter-ocular) | FR@0.10 | AUC@0.10 | Spearman(confidence, error) |
|---|---|---|---|---|
| all ({reported['n']}) | {reported['nme']:.3f}% | {reported['fr10']:.2f}% | {reported['auc10']:.4f} | {rho} |{parts}

Per region: {regions}.

## Licence and intended use
Trained on data licensed for non-commercial research only (sources: {', '.join(f'`{n}`' for n in source_names)};
see the data README for each one's terms); the weights inherit that restriction.{licences}
"""


def main(args: argparse.Namespace) -> Path:
    for needed in ("last.pt", "metrics.json", "config.json", "data_fingerprint.json"):
        if not (args.run / needed).is_file():
            raise UserError(f"{args.run}: no {needed}; pass a finished teacher or student run folder")
    config = json.loads((args.run / "config.json").read_text())
    chain = init_runs(current_args(config["args"]))
    model, payload = load_model(args.run / "last.pt", use_ema=True)
    spec = payload["spec"]
    name = release_name(spec)
    args.out.mkdir(parents=True, exist_ok=True)
    extra = {k: payload[k] for k in ("teacher_fingerprint",) if payload.get(k)}
    weights = save_checkpoint(args.out / f"{name}.pt", model, spec, half=True, data_fingerprint=payload["data_fingerprint"],
                              args=payload["args"], epoch=payload["epoch"], **extra)
    metrics = json.loads((args.run / "metrics.json").read_text())
    fingerprint = json.loads((args.run / "data_fingerprint.json").read_text())
    card = args.out / f"{name}.md"
    card.write_text(model_card(name, weights, args.run, config, metrics, fingerprint, spec, chain))
    history = read_history(args.run)
    write_json(args.out / f"{name}.json", {"weights": weights.name, "sha256": file_sha256(weights), "spec": spec,
                                           "metrics": metrics, "history": history, "config": config,
                                           "data_fingerprint": fingerprint})
    args.docs.mkdir(parents=True, exist_ok=True)
    for plot in ("training_curves.png", "ced.png"):
        shutil.copyfile(args.run / plot, args.docs / f"{name}_{plot}")
    print(f"released {weights} ({weights.stat().st_size / 1e6:.1f} MB), {card} and {name}.json; plots in {args.docs}")
    return weights
