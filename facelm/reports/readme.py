"""Fill the result blocks of the README and the docs pages from committed reports, so no number in them is typed by hand.

A block is `<!-- results:NAME -->` ... `<!-- /results:NAME -->`; each NAME has one renderer reading its JSON files.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from facelm.errors import UserError
from facelm.metrics import format_rho
from facelm.paths import RELEASED_STUDENT, RELEASED_TEACHER
from facelm.reports.tables import (
    STUDENT_MAX_MB,
    ab_markdown,
    ablation_markdown,
    bench_table,
    export_markdown,
    families_markdown,
    fit_sentence,
    photometric_text,
    pick_sentence,
)
from facelm.runs import current_args, data_label

TEACHER_TARGET_NME = 2.9  # issue bar; dlib's 68-point ERT gets 2.903% on 300-W common
STUDENT_TARGET_NME = 3.0
STUDENT_TEACHER_GAP = 0.3


def _card_table(metrics: dict, model: str) -> list[str]:
    """A card's accuracy table: the in-loop faces (validation), the test faces and each part of them."""
    test = metrics.get("test", metrics)  # cards before the validation split measured on the test faces only
    rows = [(data_label(r["data"]), r) for r in ([metrics, test] if "test" in metrics else [metrics])]
    rows += [(f"{part} (part)", numbers | {"spearman_conf_error": None}) for part, numbers in test.get("parts", {}).items()]
    return [
        "| model | faces | NME % | FR@10 % | AUC@10 | Spearman(conf, err) |",
        "|---|---|---|---|---|---|",
        *(f"| {model} | {label} ({r['n']}) | {r['nme']:.3f} | {r['fr10']:.2f} | {r['auc10']:.4f} | "
          f"{format_rho(r['spearman_conf_error'])} |" for label, r in rows),
    ]


def _teacher(report: dict) -> str:
    m, cfg = report["metrics"], current_args(report["config"]["args"])
    test = m.get("test", m)  # cards before the validation split measured on the test faces only
    verdict = "met" if test["nme"] <= TEACHER_TARGET_NME else f"not met: {test['nme'] - TEACHER_TARGET_NME:.2f} points above it"
    spec = report["spec"]
    model = (f"`weights/{report['weights']}` ({spec['arch']}, {spec.get('head', 'fc')} head, {spec['input_size']} px, "
             f"{cfg['epochs']} ep, {cfg['loss']})")
    lines = [
        f"Target on the test faces: NME at most {TEACHER_TARGET_NME}% (dlib's 68-point ERT with its own detector: 2.903% "
        f"on 300-W common). Status: {verdict}.",
        "",
        *_card_table(m, model),
        "",
        f"Trained {m['train_wall_seconds'] / 60:.0f} min at {m['train_img_per_s']:.0f} img/s; fp16 weights. In-loop NME on "
        f"{'the validation faces' if 'test' in m else 'the test faces'} against epochs (the curve behind "
        "`docs/teacher_resnet18_training_curves.png`):",
        "",
        "| epoch | " + " | ".join(str(h["epoch"]) for h in report["history"] if "eval_nme" in h) + " |",
        "|---|" + "---|" * sum("eval_nme" in h for h in report["history"]),
        "| NME % | " + " | ".join(f"{h['eval_nme']:.2f}" for h in report["history"] if "eval_nme" in h) + " |",
        "| hours | " + " | ".join(f"{h['elapsed_seconds'] / 3600:.2f}" for h in report["history"] if "eval_nme" in h) + " |",
    ]
    return "\n".join(lines)


def _student(report: dict) -> str:
    from facelm.models.stats import model_stats

    m, cfg, spec = report["metrics"], report["config"]["args"], report["spec"]
    test = m.get("test", m)  # cards before the validation split measured on the test faces only
    stats = model_stats(spec["arch"], {"head": 68}, spec["input_size"], spec.get("head", "fc"))
    bars = [
        (f"NME on the test faces at most {STUDENT_TARGET_NME}% ({test['nme']:.3f}; dlib's 68-point ERT with its own "
         "detector: 2.903% on 300-W common at 99.7 MB)", test["nme"] <= STUDENT_TARGET_NME),
        (f"fp32 weights at most {STUDENT_MAX_MB} MB ({stats['fp32_mb']:.2f} MB)", stats["fp32_mb"] <= STUDENT_MAX_MB),
        (f"within {STUDENT_TEACHER_GAP} NME points of its teacher on the {'validation' if 'test' in m else 'test'} "
         f"faces ({m['nme'] - m['teacher_nme']:+.3f})", m["nme"] - m["teacher_nme"] <= STUDENT_TEACHER_GAP),
    ]
    model = (f"`weights/{report['weights']}` ({spec['arch']}, {spec.get('head', 'fc')} head, {spec['input_size']} px, "
             f"{cfg['mode']}, {cfg['epochs']} ep)")
    return "\n".join([
        "Bars: " + "; ".join(f"{text}: {'met' if ok else 'not met'}" for text, ok in bars) + ".",
        "",
        *_card_table(m, model),
        "",
        f"{stats['params'] / 1e6:.2f} M parameters, {2 * stats['mmacs']:.1f} MFLOPs, {stats['fp32_mb']:.2f} MB in fp32. "
        f"Teacher on the {'validation' if 'test' in m else 'test'} faces: {m['teacher_nme']:.3f}% NME. Trained "
        f"{m['train_wall_seconds'] / 60:.0f} min at {m['train_img_per_s']:.0f} img/s.",
    ])


SCHEDULE_TEXT = (("arch", "{}"), ("input_size", "{} px"), ("epochs", "{} epochs"), ("batch_size", "batch {}"),
                 ("lr", "lr {}"), ("seed", "seed {}"))


def _ablation(report: dict) -> str:
    s, vary, also = report["schedule"], report.get("vary", "loss"), report.get("also_varied", [])
    return ("Same schedule for every row: " + ", ".join(text.format(s[key]) for key, text in SCHEDULE_TEXT if key in s)
            + "; only " + " and ".join(f"`--{option.replace('_', '-')}`" for option in [vary, *also])
            + (" differ.\n\n" if also else " differs.\n\n")
            + ablation_markdown(report["rows"], vary, tuple(also)).rstrip("\n"))


def _loader(report: dict) -> str:
    rows = ["| workers | augmented img/s |", "|---|---|"]
    rows += [f"| {r['workers']} | {r['img_per_s']:.0f} |" for r in report["rows"]]
    return (f"{report['n_images']} faces decoded into memory in {report['decode_seconds']:.1f} s; "
            f"{report['input_size']} px crops, {report['augmentations']}; {report['machine']['cores']} cores "
            f"({report['machine']['cpu']}).\n\n"
            + "\n".join(rows))


def _student_ab(report: dict) -> str:
    blocks = []
    for ab in report["abs"]:
        s, verdict, d = ab["schedule"], "passed" if ab["passed"] else "not passed", ab["distill"]
        labels = f"**{s['labelled_limit']} labelled faces** (a seeded subset), " if s.get("labelled_limit") else ""
        fit = f"\n\n{fit_sentence(ab)}" if "training_fit" in ab else ""
        blocks.append(
            f"**{s['epochs']} epochs** of {s['steps_per_epoch']} steps, {labels}`{ab['arch']}` with the "
            f"**{s.get('head', 'fc')} head**, both arms on this schedule: "
            f"{s['input_size']} px, batch {s['batch_size']}, lr {s['lr']}, seed {s['seed']}; augmentation: crop scale "
            f"{s['scale_min']}-{s['scale_max']}, centre jitter {s['jitter']}, rotation +-{s['rotation']} deg, "
            f"{photometric_text(s)}. Distillation gains "
            f"{ab['nme_gain']:+.3f} NME points; bar ({ab['bar']}): {verdict}. Teacher on the same faces: "
            f"{d['teacher_nme']:.3f}% NME, its mirror-averaged targets {d['teacher_targets_nme']:.3f}%; the distilled "
            f"student is {d['nme'] - d['teacher_nme']:+.3f} points from the teacher.{fit}\n\n"
            + ab_markdown(ab).rstrip("\n"))
    return "\n\n".join(blocks)


def _student_families(report: dict) -> str:
    s = report["schedule"]
    return (f"Accuracy where distilled on one schedule ({s['epochs']} epochs of {s['steps_per_epoch']} steps at "
            f"{s['input_size']} px) from one teacher (`{s['teacher_sha256'][:8]}`, {s['teacher_nme']:.3f}% NME); "
            "MFLOPs = 2 x multiply-accumulates of the shipped single-head graph.\n\n"
            + families_markdown(report["rows"]) + "\n" + pick_sentence(report["rows"], STUDENT_MAX_MB))


def _export(report: dict) -> str:
    return export_markdown(report["rows"], report["torch"], report["spec"]["input_size"]).rstrip("\n")


def _bench(report: dict) -> str:
    m, est = report["machine"], report["mobile_estimate"]
    estimate = "; ".join(f"{e['model']}: {e['macs_m']:.2f} M MACs -> ~{e['ms']:.2f} ms" for e in est)
    return (f"{m['cpu']}, {m['cores']} cores, {m['os']}, {m['time']}; batch 1, p50 judged against the 5 ms budget.\n\n"
            "```\n" + bench_table(report["rows"]) + "\n```\n\n" + "\n".join(f"- {note}" for note in report["notes"])
            + f"\n- Mobile estimate (a projection, not a measurement; one Cortex-A76 core at 15 GFLOP/s sustained): {estimate}")


def _detector(report: dict) -> str:
    from facelm.photos.calibrate import markdown

    return markdown(report)


def _figures(report: dict) -> str:
    regions = next(iter(report["regions"].values())).keys()
    parts = list(next(iter(report["models"].values())).get("parts", {}))
    lines = [f"On `{report['data']}` ({report['n']} faces); every model through its own runtime.", "",
             "| model | runtime | NME % | " + "".join(f"`{p}` | " for p in parts) + "FR@10 % | AUC@10 |",
             "|---|---|---|" + "---|" * len(parts) + "---|---|"]
    lines += [f"| {name} | {m['runtime']} | {m['nme']:.3f} | " + "".join(f"{m['parts'][p]['nme']:.3f} | " for p in parts)
              + f"{m['fr10']:.2f} | {m['auc10']:.4f} |" for name, m in report["models"].items()]
    lines += ["", "Per-region NME % (`docs/figures/region_nme.png`):", "",
              "| model | " + " | ".join(regions) + " |", "|---|" + "---|" * len(regions)]
    lines += [f"| {name} | " + " | ".join(f"{v:.2f}" for v in values.values()) + " |"
              for name, values in report["regions"].items()]
    lines += [f"- skipped: {note}" for note in report["skipped"]]
    return "\n".join(lines)


def _other_face_text(tracking: dict) -> str:
    """How many frames followed another person than the annotated one (reports before that count say nothing)."""
    if "other_face_frames" not in tracking:
        return ""
    return (f"; {tracking['other_face_frames']} frames in {tracking['other_face_clips']} clips follow another person in "
            "the photo, the largest face found, and are left out of NME and NMJ")


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
        f"first frame{_other_face_text(t)}. Speed: {sp['fps']:.1f} frames/s ({sp['ms_per_tracked_frame']:.1f} ms per frame tracked from "
        f"landmarks, {sp['ms_per_detector_frame']:.1f} ms per frame that ran the detector) on {report['machine']['cpu']}."])


def _nme_columns(report: dict, parts: list[str]) -> str:
    return " | ".join([f"{report['nme']:.3f}", *(f"{report['parts'][p]['nme']:.3f}" for p in parts)])


def _bench_folders(bench: dict) -> list[str]:
    """The folders a bench report scored accuracy on (older reports hold one folder as a string)."""
    data = bench["settings"]["data"]
    return [data] if isinstance(data, str) else data


def _bench_nme_columns(accuracy: dict, parts: list[str], folders: list[str]) -> str:
    """An export's NME on common and each part; a bench on one part fills only that part's column."""
    if "parts" in accuracy:
        return _nme_columns(accuracy, parts)
    return " | ".join(["", *(f"{accuracy['nme']:.3f}" if part == data_label(folders[0]) else "" for part in parts)])


def _released_row(card: dict, peer: dict, stats: dict, parts: list[str]) -> str:
    spec = card["spec"]
    stat = next(r for r in stats["rows"] if r["model"] == spec["arch"] and r["head_type"] == spec.get("head", "fc")
                and r["input_size"] == spec["input_size"])
    report = peer["models"][f"weights/{card['weights']}"]
    return (f"| `weights/{card['weights']}` ({spec['arch']}, {spec.get('head', 'fc')} head) | {report['runtime']} | "
            f"{_nme_columns(report, parts)} | {stat['fp32_mb']:.2f} (fp32) | {stat['eager_p50_ms']:.2f} (eager) |")


def _reference_ratio(row: dict, baseline: dict, cpu: str) -> str:
    """The gate's latency ratio of an export to its reference workload on the bench's CPU model, when the gate
    baseline holds that file: it tells a slower machine from a slower model."""
    fmt = baseline["formats"].get(row["format"], {})
    ratio = baseline["latency_ratio_by_cpu"].get(cpu, {}).get(row["format"]) if fmt.get("file") == row["file"] else None
    return f"{ratio:.2f}" if ratio is not None else ""


def _pipeline_sentence(detector: dict) -> str:
    """The released student's NME on common as `predict` delivers it: from the default detector's box."""
    from facelm.detect import DEFAULT_DETECTOR

    common = detector["detectors"][DEFAULT_DETECTOR]["common"]
    crops = common["crops"]
    return (f"As `predict` and `track` deliver it, from the {DEFAULT_DETECTOR} detector's box (calibrated, then refined "
            f"once on its own points; {common['detected']} of {common['faces']} common faces found), the student scores "
            f"{crops['detector box, calibrated, refined once']['nme']:.3f}% on common, against "
            f"{crops['ground-truth landmark box']['nme']:.3f}% from ground-truth crops of the same faces "
            "(`docs/results/detector.json`).")


def _summary(teacher: dict, student: dict, peer: dict, stats: dict, bench: dict, baseline: dict,
             detector: dict) -> str:
    """The README's one results table: released models on 300-W common and each part, their exports on the faces
    they were benched on, and dlib's ERT; size, 1-thread latency and the exports' gate reference ratio."""
    parts = list(peer["models"][f"weights/{student['weights']}"]["parts"])
    bench_rows = [r for r in bench["rows"] if r["threads"] == 1 and not r.get("mirror") and r.get("accuracy")]  # no detectors
    dlib_ms = next(r["p50_ms"] for r in bench_rows if r["runtime"] == "dlib")
    folders = _bench_folders(bench)
    bench_data = " + ".join(data_label(p) for p in folders)
    rows = [_released_row(card, peer, stats, parts) for card in (teacher, student)]
    rows = [row + " |" for row in rows]
    rows += [f"| {r['model']} {r['format']} | {r['runtime']} | {_bench_nme_columns(r['accuracy'], parts, folders)} | "
             f"{r['size_mb']:.2f} | {r['p50_ms']:.2f} | {_reference_ratio(r, baseline, bench['machine']['cpu'])} |"
             for r in bench_rows if r["runtime"] != "dlib"]
    rows += [f"| dlib ERT 68, {protocol} | dlib {peer['dlib']['version']} | {_nme_columns(report, parts)} | "
             f"{peer['dlib']['size_mb']:.2f} | {dlib_ms:.2f} | |" for protocol, report in peer["dlib"]["protocols"].items()]
    return "\n".join([
        f"NME % (inter-ocular) on the 300-W common subset (`{peer['data']}`, {peer['n']} faces) and on each part, eval "
        "crop from the ground-truth landmarks (dlib: its own HOG box, or the ground-truth box in its convention; "
        f"`docs/results/peer.json`). The exports were verified and timed on `{bench_data}` (`docs/results/bench.json`). "
        f"Latency: p50 of one face, batch 1, one thread, on {bench['machine']['cpu']} (PyTorch rows: eager, "
        "`docs/results/model_stats.json`; dlib: given the box). x ref: the export's latency over the gate's reference "
        "workload on the same CPU model (`bench/baseline.json`), which tells a slower machine from a slower model.", "",
        "| model | runtime | common | " + " | ".join(f"`{p}`" for p in parts) + " | size MB | p50 ms | x ref |",
        "|---|---|---|" + "---|" * len(parts) + "---|---|---|", *rows, "", _pipeline_sentence(detector)])


RENDERERS = {
    "summary": ((RELEASED_TEACHER.with_suffix(".json"), RELEASED_STUDENT.with_suffix(".json"),
                 Path("docs/results/peer.json"), Path("docs/results/model_stats.json"),
                 Path("docs/results/bench.json"), Path("bench/baseline.json"), Path("docs/results/detector.json")),
                _summary),
    "teacher": ((RELEASED_TEACHER.with_suffix(".json"),), _teacher),
    "student": ((RELEASED_STUDENT.with_suffix(".json"),), _student),
    "ablation": ((Path("docs/results/ablation.json"),), _ablation),
    "precision-ab": ((Path("docs/results/precision_ab.json"),), _ablation),
    "wflw-head": ((Path("docs/results/wflw_head.json"),), _ablation),
    "teacher-head": ((Path("docs/results/teacher_head.json"),), _ablation),
    "teacher-two-stage": ((Path("docs/results/teacher_two_stage.json"),), _ablation),
    "teacher-input-size": ((Path("docs/results/teacher_input_size.json"),), _ablation),
    "loader": ((Path("docs/results/loader.json"),), _loader),
    "export": ((Path("weights/export/export_report.json"),), _export),
    "bench": ((Path("docs/results/bench.json"),), _bench),
    "student-ab": ((Path("docs/results/student_ab.json"),), _student_ab),
    "student-families": ((Path("docs/results/student_families.json"),), _student_families),
    "detector": ((Path("docs/results/detector.json"),), _detector),
    "figures": ((Path("docs/results/figures.json"),), _figures),
    "stability": ((Path("docs/results/stability.json"),), _stability),
    "stability-mirror": ((Path("docs/results/stability_mirror.json"),), _stability),
}


def render(text: str, root: Path) -> str:
    """`text` with every result block refilled from the reports under the repository `root`."""
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in RENDERERS:
            raise UserError(f"block results:{name} has no renderer; known: {', '.join(RENDERERS)}")
        paths, renderer = RENDERERS[name]
        missing = [path for path in paths if not (root / path).is_file()]
        if missing:
            body = f"_No report yet: `{missing[0]}` is written by the command named above._"
        else:
            body = renderer(*(json.loads((root / path).read_text()) for path in paths))
        return f"<!-- results:{name} -->\n{body}\n<!-- /results:{name} -->"

    return re.sub(r"<!-- results:([\w-]+) -->.*?<!-- /results:\1 -->", replace, text, flags=re.S)


def documents(root: Path) -> list[Path]:
    """The pages whose result blocks `facelm readme` fills: the README and every docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def stale_documents(root: Path) -> list[Path]:
    """The documents whose result blocks differ from what the committed reports say."""
    return [path for path in documents(root) if render(path.read_text(), root) != path.read_text()]


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm readme", add_help=add_help)
    p.add_argument("--root", type=Path, default=Path("."),
                   help="repository root: fills README.md and docs/*.md there (default: .)")
    p.add_argument("--check", action="store_true", help="exit non-zero if a page is out of date instead of writing")
    return p


def main(args: argparse.Namespace) -> None:
    if args.check:
        stale = stale_documents(args.root)
        if stale:
            raise UserError(f"results out of date in {', '.join(map(str, stale))}; run 'make readme'")
        return
    for path in documents(args.root):
        text = path.read_text()
        updated = render(text, args.root)
        if updated != text:
            path.write_text(updated)
            print(f"updated {path}")
