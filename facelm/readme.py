"""Fill the README's result blocks from committed reports, so no number in it is typed by hand.

A block is `<!-- results:NAME -->` ... `<!-- /results:NAME -->`; each NAME has one renderer reading one JSON file.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from facelm.errors import UserError
from facelm.metrics import format_rho
from facelm.runs import data_label
from facelm.stage import RELEASED_STUDENT, RELEASED_TEACHER

TEACHER_TARGET_NME = 2.9  # issue bar; dlib's 68-point ERT gets 2.95% on the same faces
STUDENT_TARGET_NME = 3.0
STUDENT_TEACHER_GAP = 0.3


def _teacher(report: dict) -> str:
    m, cfg = report["metrics"], report["config"]["args"]
    verdict = "met" if m["nme"] <= TEACHER_TARGET_NME else f"not met: {m['nme'] - TEACHER_TARGET_NME:.2f} points above it"
    rows = [
        f"Target: NME at most {TEACHER_TARGET_NME}% (dlib's 68-point ERT: 2.95% on these faces). Status: {verdict}.",
        "",
        "| model | data | NME % | FR@10 % | AUC@10 | Spearman(conf, err) | size | train wall | train img/s |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| `weights/{report['weights']}` ({report['spec']['arch']}, {report['spec']['input_size']} px, "
        f"{cfg['epochs']} ep, {cfg['loss']}) | {data_label(m['data'])} ({m['n']}) | {m['nme']:.3f} | {m['fr10']:.2f} | "
        f"{m['auc10']:.4f} | {format_rho(m['spearman_conf_error'])} | fp16 | {m['train_wall_seconds'] / 60:.0f} min | "
        f"{m['train_img_per_s']:.0f} |",
        "",
        "NME on the test set against training epochs (the curve behind `docs/teacher_resnet18_training_curves.png`):",
        "",
        "| epoch | " + " | ".join(str(h["epoch"]) for h in report["history"] if "eval_nme" in h) + " |",
        "|---|" + "---|" * sum("eval_nme" in h for h in report["history"]),
        "| NME % | " + " | ".join(f"{h['eval_nme']:.2f}" for h in report["history"] if "eval_nme" in h) + " |",
        "| hours | " + " | ".join(f"{h['elapsed_seconds'] / 3600:.2f}" for h in report["history"] if "eval_nme" in h) + " |",
    ]
    return "\n".join(rows)


def _student(report: dict) -> str:
    from facelm.models.stats import model_stats
    from student.report import STUDENT_MAX_MB

    m, cfg, spec = report["metrics"], report["config"]["args"], report["spec"]
    stats = model_stats(spec["arch"], {"head": 68}, spec["input_size"], spec.get("head", "fc"))
    bars = [
        (f"NME at most {STUDENT_TARGET_NME}% (dlib's ERT: 2.95% at 99.7 MB)", m["nme"] <= STUDENT_TARGET_NME),
        (f"fp32 weights at most {STUDENT_MAX_MB} MB ({stats['fp32_mb']:.2f} MB)", stats["fp32_mb"] <= STUDENT_MAX_MB),
        (f"within {STUDENT_TEACHER_GAP} NME points of its teacher ({m['nme'] - m['teacher_nme']:+.3f})",
         m["nme"] - m["teacher_nme"] <= STUDENT_TEACHER_GAP),
    ]
    return "\n".join([
        "Bars: " + "; ".join(f"{text}: {'met' if ok else 'not met'}" for text, ok in bars) + ".",
        "",
        "| model | params | MFLOPs | fp32 MB | NME % | FR@10 % | AUC@10 | Spearman(conf, err) | teacher NME % | train wall |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| `weights/{report['weights']}` ({spec['arch']}, {spec.get('head', 'fc')} head, {spec['input_size']} px, "
        f"{cfg['mode']}, {cfg['epochs']} ep) | "
        f"{stats['params'] / 1e6:.2f} M | {2 * stats['mmacs']:.1f} | {stats['fp32_mb']:.2f} | {m['nme']:.3f} | {m['fr10']:.2f} | "
        f"{m['auc10']:.4f} | {format_rho(m['spearman_conf_error'])} | {m['teacher_nme']:.3f} | "
        f"{m['train_wall_seconds'] / 60:.0f} min |",
    ])


def _ablation(report: dict) -> str:
    from teacher.ablation import markdown_table

    s = report["schedule"]
    return (f"Same schedule for every row: {s['arch']}, {s['input_size']} px, {s['epochs']} epochs, "
            f"batch {s['batch_size']}, lr {s['lr']}, seed {s['seed']}.\n\n" + markdown_table(report["rows"]).rstrip("\n"))


def _loader(report: dict) -> str:
    rows = ["| workers | augmented img/s |", "|---|---|"]
    rows += [f"| {r['workers']} | {r['img_per_s']:.0f} |" for r in report["rows"]]
    return (f"{report['n_images']} faces decoded into memory in {report['decode_seconds']:.1f} s; "
            f"{report['input_size']} px crops, {report['augmentations']}; {report['machine']['cores']} cores "
            f"({report['machine']['cpu']}).\n\n"
            + "\n".join(rows))


def _student_ab(report: dict) -> str:
    from student.report import ab_markdown, fit_sentence

    blocks = []
    for ab in report["abs"]:
        s, verdict, d = ab["schedule"], "passed" if ab["passed"] else "not passed", ab["distill"]
        labels = f"**{s['labelled_limit']} labelled faces** (a seeded subset), " if s.get("labelled_limit") else ""
        fit = f"\n\n{fit_sentence(ab)}" if "training_fit" in ab else ""
        blocks.append(
            f"**{s['epochs']} epochs** of {s['steps_per_epoch']} steps, {labels}`{ab['arch']}` with the "
            f"**{s.get('head', 'fc')} head**, both arms on this schedule: "
            f"{s['input_size']} px, batch {s['batch_size']}, lr {s['lr']}, seed {s['seed']}; augmentation: crop scale "
            f"{s['scale_min']}-{s['scale_max']}, centre jitter {s['jitter']}, rotation +-{s['rotation']} deg, photometric "
            f"{s['photometric']}. Distillation gains "
            f"{ab['nme_gain']:+.3f} NME points; bar ({ab['bar']}): {verdict}. Teacher on the same faces: "
            f"{d['teacher_nme']:.3f}% NME, its mirror-averaged targets {d['teacher_targets_nme']:.3f}%; the distilled "
            f"student is {d['nme'] - d['teacher_nme']:+.3f} points from the teacher.{fit}\n\n"
            + ab_markdown(ab).rstrip("\n"))
    return "\n\n".join(blocks)


def _student_families(report: dict) -> str:
    from student.report import STUDENT_MAX_MB, families_markdown, pick_sentence

    s = report["schedule"]
    return (f"Accuracy where distilled on one schedule ({s['epochs']} epochs of {s['steps_per_epoch']} steps at "
            f"{s['input_size']} px) from one teacher (`{s['teacher_sha256'][:8]}`, {s['teacher_nme']:.3f}% NME); "
            "MFLOPs = 2 x multiply-accumulates of the shipped single-head graph.\n\n"
            + families_markdown(report["rows"]) + "\n" + pick_sentence(report["rows"], STUDENT_MAX_MB))


def _export(report: dict) -> str:
    from export.run import markdown

    return markdown(report["rows"], report["torch"], report["spec"]["input_size"]).rstrip("\n")


def _bench(report: dict) -> str:
    from bench.run import table

    m, est = report["machine"], report["mobile_estimate"]
    estimate = "; ".join(f"{e['model']}: {e['macs_m']:.2f} M MACs -> ~{e['ms']:.2f} ms" for e in est)
    return (f"{m['cpu']}, {m['cores']} cores, {m['os']}, {m['time']}; batch 1, p50 judged against the 5 ms budget.\n\n"
            "```\n" + table(report["rows"]) + "\n```\n\n" + "\n".join(f"- {note}" for note in report["notes"])
            + f"\n- Mobile estimate (a projection, not a measurement; one Cortex-A76 core at 15 GFLOP/s sustained): {estimate}")


def _detector(report: dict) -> str:
    from facelm.calibrate import markdown

    return markdown(report)


def _figures(report: dict) -> str:
    regions = next(iter(report["regions"].values())).keys()
    lines = [f"On `{report['data']}` ({report['n']} faces); every model through its own runtime.", "",
             "| model | runtime | NME % | FR@10 % | AUC@10 |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {m['runtime']} | {m['nme']:.3f} | {m['fr10']:.2f} | {m['auc10']:.4f} |"
              for name, m in report["models"].items()]
    lines += ["", "Per-region NME % (`docs/figures/region_nme.png`):", "",
              "| model | " + " | ".join(regions) + " |", "|---|" + "---|" * len(regions)]
    lines += [f"| {name} | " + " | ".join(f"{v:.2f}" for v in values.values()) + " |"
              for name, values in report["regions"].items()]
    lines += [f"- skipped: {note}" for note in report["skipped"]]
    return "\n".join(lines)


def _stability(report: dict) -> str:
    e, g, t, sp, tune = report["one_euro"], report["goal"], report["tracking"], report["speed"], report["tuning"]
    smoothing = (f"One-Euro (min_cutoff {e['min_cutoff']:g} Hz, beta {e['beta']:g}, d_cutoff {e['d_cutoff']:g} Hz, "
                 f"confidence-weighted {e['confidence_weighted']})")
    return "\n".join([
        f"`{report['model']}` ({report['runtime']}, {sp['threads']} thread), {report['clips']} synthetic clips x "
        f"{report['frames_per_clip']} frames from `300w/testset`; smoothing tuned on {tune['clips']} clips from "
        "`300w/trainset`.", "",
        "| output | NME % | NMJ % |", "|---|---|---|",
        f"| raw (no smoothing) | {report['raw']['nme']:.3f} | {report['raw']['nmj']:.3f} |",
        f"| {smoothing} | {report['smoothed']['nme']:.3f} | {report['smoothed']['nmj']:.3f} |", "",
        f"Smoothing cuts NMJ by {g['nmj_reduction_pct']:.1f}% at an NME cost of {g['nme_cost_points']:+.3f} points; goal "
        f"(NMJ at least 30% lower, NME at most 0.1 points higher): {'met' if g['met'] else 'NOT met'}. A face is "
        f"reported on {t['tracked_rate']:.1f}% of {t['frames']} frames; {t['clips_tracked_throughout']} of "
        f"{report['clips']} clips keep the track on every frame; {t['redetections']} detector runs after a clip's "
        f"first frame. Speed: {sp['fps']:.1f} frames/s ({sp['ms_per_tracked_frame']:.1f} ms per frame tracked from "
        f"landmarks, {sp['ms_per_detector_frame']:.1f} ms per frame that ran the detector) on {report['machine']['cpu']}."])


RENDERERS = {
    "teacher": (RELEASED_TEACHER.with_suffix(".json"), _teacher),
    "student": (RELEASED_STUDENT.with_suffix(".json"), _student),
    "ablation": (Path("docs/results/ablation.json"), _ablation),
    "loader": (Path("docs/results/loader.json"), _loader),
    "export": (Path("weights/export/export_report.json"), _export),
    "bench": (Path("docs/results/bench.json"), _bench),
    "student-ab": (Path("docs/results/student_ab.json"), _student_ab),
    "student-families": (Path("docs/results/student_families.json"), _student_families),
    "detector": (Path("docs/results/detector.json"), _detector),
    "figures": (Path("docs/results/figures.json"), _figures),
    "stability": (Path("docs/results/stability.json"), _stability),
    "stability-mirror": (Path("docs/results/stability_mirror.json"), _stability),
}


def render(readme: str, root: Path) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in RENDERERS:
            raise UserError(f"README block results:{name} has no renderer; known: {', '.join(RENDERERS)}")
        path, renderer = RENDERERS[name]
        if not (root / path).is_file():
            body = f"_No report yet: `{path}` is written by the command named above._"
        else:
            body = renderer(json.loads((root / path).read_text()))
        return f"<!-- results:{name} -->\n{body}\n<!-- /results:{name} -->"

    return re.sub(r"<!-- results:([\w-]+) -->.*?<!-- /results:\1 -->", replace, readme, flags=re.S)


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm readme", add_help=add_help)
    p.add_argument("--readme", type=Path, default=Path("README.md"), help="README to update (default: README.md)")
    p.add_argument("--check", action="store_true", help="exit non-zero if the README is out of date instead of writing")
    return p


def main(args: argparse.Namespace) -> None:
    text = args.readme.read_text()
    updated = render(text, args.readme.parent)
    if args.check:
        if updated != text:
            raise UserError(f"{args.readme} results are out of date; run 'facelm readme'")
        return
    args.readme.write_text(updated)
    print(f"updated {args.readme}")
