"""Ablation report: compare teacher runs that differ only in one option, --loss by default (same schedule, data and
seed), e.g. `--vary precision` for the bf16 against fp32 A/B."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from facelm.errors import UserError
from facelm.paths import shown
from facelm.reports.tables import OLD_RANKING, ablation_markdown
from facelm.runs import current_args, provenance, write_json

COMPARED_ARGS = ("arch", "input_size", "epochs", "batch_size", "lr", "seed", "source", "data", "loss", "precision",
                 "source_share", "head_type", "train_on")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm ablation-report", add_help=add_help)
    p.add_argument("--runs", type=Path, required=True, help="folder holding the ablation run folders")
    p.add_argument("--out", type=Path, required=True, help="folder for the report (<name>.json and <name>.md)")
    p.add_argument("--vary", nargs="+", default=["loss"],
                   help="the option the runs differ in, the first naming each row; more when they go together, e.g. "
                        "--vary source source_share for a source added at a share (default: loss)")
    p.add_argument("--earlier", nargs="+", default=[], metavar="REPORT:RUN",
                   help="rows of runs whose folders are gone, from a report this command wrote, e.g. "
                        "docs/results/teacher_head.json:runs/teacher/20261207-111244-abl-integral; each must share the "
                        "runs' schedule like a run")
    p.add_argument("--name", default="ablation", help="report file name (default: ablation)")
    return p


def finished_runs(root: Path) -> list[Path]:
    runs = sorted(p.parent for p in root.glob("*/metrics.json"))
    if not runs:
        raise UserError(f"{root}: no finished runs (no */metrics.json); run 'make ablation' first")
    return runs


def row_label(value) -> str:
    """A varied option's value as a row names it: sources (NAME:SCHEME:PATHS) by their names."""
    if isinstance(value, list):
        return " + ".join(str(item).split(":")[0] for item in value)
    return "none" if value is None else str(value)


def earlier_run(spec: str) -> tuple[dict, dict, set[str]]:
    """The options, the row and the options its report varied (whose values are row labels) of a run whose folder is
    gone, from a report this command wrote (`REPORT:RUN`)."""
    path, _, run = spec.partition(":")
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"--earlier {spec}: cannot read {path} ({err}); give REPORT:RUN, REPORT a facelm "
                        "ablation-report JSON") from None
    row = next((r for r in report.get("rows", []) if r.get("run") == run), None)
    if row is None:
        known = ", ".join(r.get("run", "?") for r in report.get("rows", []))
        raise UserError(f"--earlier {spec}: {path} has no row of run {run!r}; its runs: {known or 'none'}")
    varied = {report["vary"], *report.get("also_varied", [])}
    return {**report["schedule"], **{key: row[key] for key in varied}}, row, varied


def ablation_rows(runs: list[Path], vary: list[str], earlier: list[str] = ()) -> tuple[list[dict], dict]:
    """One row per run, best first, and the schedule they share (every compared option but the varied ones); runs
    whose folders are gone come from the report that holds their row (`earlier`: REPORT:RUN)."""
    rows, schedule = [], None
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        args = current_args(config["args"])
        same = {k: args.get(k) for k in COMPARED_ARGS if k not in vary}
        if schedule is None:
            schedule = same
        elif same != schedule:
            raise UserError(f"{run}: differs from the other runs in more than --vary {' '.join(vary)} ({same} vs {schedule})")
        m = json.loads((run / "metrics.json").read_text())
        rows.append({**{key: row_label(config.get(key, args.get(key))) for key in vary}, "run": shown(run.resolve()),
                     "nme": m["nme"], "fr10": m["fr10"],
                     "auc10": m["auc10"], "spearman_conf_error": m["spearman_conf_error"],
                     "train_img_per_s": m.get("train_img_per_s"), "train_wall_seconds": m["train_wall_seconds"],
                     "ranked_on": ranked_on(m), "test_nme": m["test"]["nme"] if "test" in m else None,
                     "test_parts": {part: r["nme"] for part, r in m.get("test", {}).get("parts", {}).items()}})
    for spec in earlier:
        options, row, labelled = earlier_run(spec)
        differing = [key for key in schedule if (row_label(options.get(key)) != row_label(schedule[key]) if key in labelled
                                                 else options.get(key) != schedule[key])]
        if differing:
            raise UserError(f"--earlier {spec}: differs from the runs in more than --vary {' '.join(vary)} "
                            f"({', '.join(differing)})")
        rows.append({**{key: value for key, value in row.items() if key not in labelled},
                     **{key: row_label(options.get(key)) for key in vary}})
    return sorted(rows, key=lambda r: r["nme"]), schedule


def ranked_on(metrics: dict) -> str:
    """The faces a run's headline NME (which ranks it) was measured on: validation, or the test faces for runs made
    before there was a validation split."""
    if "test" in metrics and metrics["test"]["data"] == metrics["data"]:
        return (f"nothing: the in-loop faces are the test faces ({metrics['data']}), as this source has no validation "
                "split, and every row is its last epoch")
    if "test" in metrics:
        return f"validation ({metrics['data']})"
    return OLD_RANKING


def main(args: argparse.Namespace) -> list[dict]:
    runs = finished_runs(args.runs)
    rows, schedule = ablation_rows(runs, args.vary, args.earlier)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{args.name}.json", {"vary": args.vary[0], "also_varied": args.vary[1:], "schedule": schedule,
                                                "rows": rows, **provenance()})
    table = ablation_markdown(rows, args.vary[0], tuple(args.vary[1:]))
    (args.out / f"{args.name}.md").write_text(table)
    print(table)
    return rows
