"""`facelm export`: a student checkpoint to every deployment format, each verified against PyTorch on real faces.

    facelm export --checkpoint weights/student_mobilenetv2_035.pt --out weights/export [--formats onnx_fp32 ...]

Writes `<stem><suffix>` plus `<file>.json` (the contract sidecar) per format, and `export_report.json` / `.md`.
A format whose converter fails, or whose |delta NME| breaks its tolerance, fails the command after all formats ran;
one that cannot be produced here at all (ncnn_int8) is reported as `not available`, not faked and not a failure.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np
import torch

from facelm.annotations import load_annotations
from facelm.checkpoint import load_model
from facelm.contract import artefact_meta
from facelm.engine import torch_batch_fn
from facelm.errors import UserError
from facelm.export.exporters import ExportContext, deploy_model, one_line, run_export
from facelm.faces import EvalSet, decode_all
from facelm.formats import FORMATS, Format, get_format, tolerances
from facelm.inference import eval_crops, run_batched, to_image
from facelm.metrics import landmark_report
from facelm.models import SingleHead
from facelm.paths import RELEASED_EXPORTS, RELEASED_STUDENT, RUNS, shown
from facelm.reports.tables import export_markdown
from facelm.runs import file_sha256, provenance, write_json
from facelm.schemes import get_scheme
from facelm.splits import common_test_paths
from facelm.stage import has_training_data


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm export", add_help=add_help)
    p.add_argument("--checkpoint", type=Path, default=RELEASED_STUDENT, help=f"checkpoint (default: {shown(RELEASED_STUDENT)})")
    p.add_argument("--head", default=None, help="head to export (default: the checkpoint's first)")
    p.add_argument("--out", type=Path, default=RUNS / "export", help="output folder (default: runs/export)")
    p.add_argument("--formats", nargs="+", default=None,
                   help=f"formats (default: all: {' '.join(f.name for f in FORMATS)}; unavailable ones are reported)")
    p.add_argument("--data", type=Path, default=os.environ.get("DATA"), help="data root (default: $DATA)")
    p.add_argument("--calib-data", type=Path, default=None, help="calibration faces (default: DATA/300w/trainset)")
    p.add_argument("--calib-count", type=int, default=256, help="calibration crops, at least 200 (default: 256)")
    p.add_argument("--verify-data", type=Path, nargs="+", default=None,
                   help="verification folders (default: 300-W common, DATA/300w/testset and DATA/lfpw/testset)")
    p.add_argument("--tolerance", action="append", default=[], metavar="FORMAT=POINTS",
                   help="override a format's |delta NME| tolerance, e.g. onnx_int8=0.2")
    return p


def calibration_crops(folder: Path, scheme, size: int, count: int) -> np.ndarray:
    """The first `count` faces (sorted by file) of a training split, under the eval crop rule: real inputs."""
    if count < 200:
        raise UserError(f"--calib-count {count}: calibrate on at least 200 real face crops")
    if not folder.exists():
        raise UserError(f"calibration folder {folder} not found; set DATA or pass --calib-data")
    samples = load_annotations(folder, scheme)[:count]
    if len(samples) < 200:
        raise UserError(f"{folder}: {len(samples)} faces, calibration needs at least 200")
    crops, _ = eval_crops(decode_all([s.image for s in samples]), [s.points for s in samples], size)
    return crops


def selected_formats(names: list[str] | None) -> list[Format]:
    """All formats by default (an unavailable one becomes a report row); naming an unavailable one is an error. A
    named format brings the formats it is converted from (tflite_int8 needs tflite_fp32), in export order."""
    if names is None:
        return list(FORMATS)
    wanted = set()
    for fmt in map(get_format, names):
        if fmt.unavailable:
            raise UserError(f"{fmt.name} is not available: {fmt.unavailable}")
        while fmt.name not in wanted:
            wanted.add(fmt.name)
            fmt = get_format(fmt.derived_from) if fmt.derived_from else fmt
    return [fmt for fmt in FORMATS if fmt.name in wanted]


def verify(row: dict, artefact: Path, eval_set: EvalSet, crops: np.ndarray, matrices, torch_out: np.ndarray,
           torch_report: dict, size: int, tolerance: float) -> dict:
    """Run the artefact with its own runtime on every verification face and compare with PyTorch."""
    from facelm.runtimes import load_exported

    try:
        run, _ = load_exported(artefact)
        out = run_batched(run, crops)
    except Exception as exc:
        return {**row, "status": "failed", "error": f"verification: {one_line(exc)}"}
    points, confidence = to_image(out, matrices, size)
    report = landmark_report(points, eval_set.gt, eval_set.scheme, confidence)
    diff_px = np.linalg.norm(out[..., :2] - torch_out[..., :2], axis=-1) * size
    delta = report["nme"] - torch_report["nme"]
    row.update(nme=report["nme"], fr10=report["fr10"], auc10=report["auc10"], delta_nme=delta,
               max_abs_px=float(diff_px.max()), mean_abs_px=float(diff_px.mean()), tolerance=tolerance)
    if abs(delta) > tolerance:
        row.update(status="failed", error=f"|delta NME| {abs(delta):.3f} > tolerance {tolerance}")
    return row


def check_released_exports(folder: Path) -> None:
    """Without data: every committed export in `folder` loads with its runtime and gives a (1, K, 3) answer."""
    from facelm.runtimes import load_exported

    for sidecar in sorted(folder.glob("*.json")):
        if sidecar.name.startswith("export_report"):
            continue
        artefact = sidecar.with_name(sidecar.name[: -len(".json")])
        try:
            run, meta = load_exported(artefact)
        except UserError as exc:
            print(f"  skipped {artefact.name}: {exc}")
            continue
        size = meta["model"]["input_size"]
        out = run(np.zeros((1, 3, size, size), np.float32))
        print(f"  {artefact.name} ({meta['format']}, {meta['runtime']}) loads and runs: output {tuple(out.shape)}")


def export_stem(spec: dict, head: str) -> str:
    """File name stem shared by every export of one checkpoint head, e.g. mobilenetv2_035_300w_112."""
    return f"{spec['arch']}_{head}_{spec['input_size']}"


def main(args: argparse.Namespace) -> list[dict]:
    if args.calib_data is None and args.verify_data is None and not has_training_data(args.data, "300w/testset"):
        print("SKIPPED export: DATA is not set (calibration needs 300w/trainset, verification 300w/testset and "
              "lfpw/testset). "
              f"Set DATA to export and verify; checking the released exports in {RELEASED_EXPORTS} instead.")
        check_released_exports(RELEASED_EXPORTS)
        return []
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("coremltools").setLevel(logging.WARNING)  # it logs every graph pass and removed op at INFO
    torch.manual_seed(0)
    formats = selected_formats(args.formats)
    limits = tolerances(args.tolerance)
    model, payload = load_model(args.checkpoint)
    spec = payload["spec"]
    head = args.head or next(iter(spec["heads"]))
    if head not in spec["heads"]:
        raise UserError(f"{args.checkpoint}: no head {head!r}; it has {', '.join(spec['heads'])}")
    if spec["arch"].startswith("resnet"):
        raise UserError(f"{args.checkpoint}: a {spec['arch']} teacher; export a student checkpoint (facelm train-student)")
    size = spec["input_size"]
    data = Path(args.data) if args.data else None
    calib_dir = args.calib_data or (data / "300w" / "trainset" if data else None)
    verify_dirs = args.verify_data or (common_test_paths(data) if data else None)
    if calib_dir is None or not verify_dirs:
        raise UserError("no data: set DATA or pass --calib-data and --verify-data")
    eval_set = EvalSet(verify_dirs, get_scheme(spec["heads"][head]))
    calibration = calibration_crops(calib_dir, eval_set.scheme, size, args.calib_count)

    single = SingleHead(model, head).eval()
    training = {k: payload.get(k, {}).get("sha256") for k in ("data_fingerprint", "teacher_fingerprint") if payload.get(k)}
    meta = artefact_meta(spec, head, file_sha256(args.checkpoint), training)
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = ExportContext(deploy_model(single).eval(), meta, args.out, export_stem(spec, head), calibration)
    crops, matrices = eval_crops(eval_set.images, list(eval_set.gt), size)
    torch_out = run_batched(torch_batch_fn(single), crops)
    torch_report = landmark_report(*to_image(torch_out, matrices, size)[:1], eval_set.gt, eval_set.scheme)
    rows = []
    for fmt in formats:
        row = run_export(ctx, fmt)
        if row["status"] == "ok":
            row = verify(row, ctx.done[fmt.name], eval_set, crops, matrices, torch_out, torch_report, size, limits[fmt.name])
        rows.append(row)
    report = {"checkpoint": shown(args.checkpoint), "head": head, "spec": spec, "verify_data": [str(p) for p in verify_dirs],
              "calib_data": str(calib_dir), "calib_count": len(calibration), "torch": {k: v for k, v in torch_report.items()
              if k != "per_image_nme"}, "rows": rows, **provenance()}
    write_json(args.out / "export_report.json", report)
    table = export_markdown(rows, torch_report, size)
    (args.out / "export_report.md").write_text(table)
    print(table)
    failed = [r["format"] for r in rows if r["status"] not in ("ok", "not available")]
    if failed:
        raise UserError(f"{len(failed)} format(s) failed: {', '.join(failed)}; see {args.out / 'export_report.md'}")
    return rows
