"""Loss ablation report: compare teacher runs that differ only in --loss (same schedule, data and seed)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from facelm.errors import UserError
from facelm.metrics import format_rho
from facelm.runs import write_json

OLD_RANKING = "the test faces (300w/testset): these runs predate the validation split"
COMPARED_ARGS = ("arch", "input_size", "epochs", "batch_size", "lr", "seed", "source", "data")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm ablation-report", add_help=add_help)
    p.add_argument("--runs", type=Path, required=True, help="folder holding the ablation run folders")
    p.add_argument("--out", type=Path, required=True, help="folder for ablation.json and ablation.md")
    return p


def finished_runs(root: Path) -> list[Path]:
    runs = sorted(p.parent for p in root.glob("*/metrics.json"))
    if not runs:
        raise UserError(f"{root}: no finished runs (no */metrics.json); run 'make ablation' first")
    return runs


def ablation_rows(runs: list[Path]) -> list[dict]:
    rows, schedule = [], None
    for run in runs:
        args = json.loads((run / "config.json").read_text())["args"]
        same = {k: args.get(k) for k in COMPARED_ARGS}
        if schedule is None:
            schedule = same
        elif same != schedule:
            raise UserError(f"{run}: differs from the other runs in more than the loss ({same} vs {schedule})")
        m = json.loads((run / "metrics.json").read_text())
        rows.append({"loss": args["loss"], "run": str(run), "nme": m["nme"], "fr10": m["fr10"], "auc10": m["auc10"],
                     "spearman_conf_error": m["spearman_conf_error"], "train_wall_seconds": m["train_wall_seconds"],
                     "ranked_on": ranked_on(m), "test_nme": m["test"]["nme"] if "test" in m else None})
    return sorted(rows, key=lambda r: r["nme"])


def ranked_on(metrics: dict) -> str:
    """The faces a run's headline NME (which ranks it) was measured on: validation, or the test faces for runs made
    before there was a validation split."""
    if "test" in metrics:
        return f"validation ({metrics['data']})"
    return OLD_RANKING


def markdown_table(rows: list[dict]) -> str:
    lines = [f"Ranked on {', '.join(sorted({r.get('ranked_on') or OLD_RANKING for r in rows}))}.", "",
             "| loss | NME % | FR@10 % | AUC@10 | Spearman(conf, err) | test NME % (reported, never ranked on) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['loss']} | {r['nme']:.3f} | {r['fr10']:.2f} | {r['auc10']:.4f} | {format_rho(r['spearman_conf_error'])} | "
              + (f"{r['test_nme']:.3f} |" if r.get("test_nme") is not None else "|") for r in rows]
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> list[dict]:
    runs = finished_runs(args.runs)
    rows = ablation_rows(runs)
    schedule = {k: json.loads((runs[0] / "config.json").read_text())["args"].get(k) for k in COMPARED_ARGS}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "ablation.json", {"schedule": schedule, "rows": rows})
    table = markdown_table(rows)
    (args.out / "ablation.md").write_text(table)
    print(table)
    return rows
