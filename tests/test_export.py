"""Export: every format the installed toolchains allow, verified against PyTorch, with its contract sidecar."""
from __future__ import annotations

import json

import pytest
import torch

from facelm.checkpoint import model_spec, save_checkpoint
from facelm.cli import main as facelm
from facelm.contract import read_sidecar, sidecar_path
from facelm.errors import UserError
from facelm.models import create_model

onnxruntime = pytest.importorskip("onnxruntime", reason="export toolchain not installed: pip install 'facelm[export]'")


@pytest.fixture(scope="module")
def student_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("mobilenetv2_025", heads={"300w": 68}, input_size=64).eval()
    model.heads["300w"].set_mean_shape(torch.rand(68, 2) * 0.6 + 0.2)
    path = tmp_path_factory.mktemp("student") / "student.pt"
    return save_checkpoint(path, model, model_spec(model, "mobilenetv2_025", {"300w": "68"}))


@pytest.fixture(scope="module")
def exported(student_ckpt, tiny_300w, calib_300w, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    assert facelm(["export", "--checkpoint", str(student_ckpt), "--out", str(out), "--calib-data", str(calib_300w),
                   "--verify-data", str(tiny_300w), "--tolerance", "onnx_int8=100"]) == 0
    return out


def test_every_format_row_is_verified(exported):
    report = json.loads((exported / "export_report.json").read_text())
    rows = {r["format"]: r for r in report["rows"]}
    assert rows["onnx_fp32"]["status"] == "ok" and abs(rows["onnx_fp32"]["delta_nme"]) < 0.02
    assert rows["onnx_fp32"]["max_abs_px"] < 1e-3
    assert rows["onnx_int8"]["status"] == "ok" and rows["onnx_int8"]["size_mb"] < rows["onnx_fp32"]["size_mb"]
    assert report["calib_count"] == 200


def test_sidecar_is_enough_to_evaluate(exported, tiny_300w, tmp_path):
    artefact = exported / "mobilenetv2_025_300w_64.onnx"
    meta = read_sidecar(artefact)
    assert meta["scheme"]["n_points"] == 68 and meta["input"]["layout"] == "NCHW" and meta["crop"]["scale"] == 1.25
    report = tmp_path / "onnx.json"
    assert facelm(["eval", "--model", str(artefact), "--data", str(tiny_300w), "--report", str(report)]) == 0
    exported_nme = json.loads(report.read_text())["nme"]
    rows = {r["format"]: r for r in json.loads((exported / "export_report.json").read_text())["rows"]}
    assert exported_nme == pytest.approx(rows["onnx_fp32"]["nme"], abs=1e-6)


def test_exports_are_deterministic(student_ckpt, tiny_300w, calib_300w, exported, tmp_path):
    assert facelm(["export", "--checkpoint", str(student_ckpt), "--out", str(tmp_path), "--calib-data", str(calib_300w),
                   "--verify-data", str(tiny_300w), "--formats", "onnx_fp32", "onnx_int8", "--tolerance", "onnx_int8=100"]) == 0
    for name in ("mobilenetv2_025_300w_64.onnx", "mobilenetv2_025_300w_64.int8.onnx"):
        assert (tmp_path / name).read_bytes() == (exported / name).read_bytes(), name


def test_bad_inputs_are_one_line_errors_without_leftovers(student_ckpt, tiny_300w, tmp_path):
    with pytest.raises(UserError, match="calibration folder"):
        from export.run import get_args_parser, main
        main(get_args_parser().parse_args(["--checkpoint", str(student_ckpt), "--out", str(tmp_path / "a"),
                                           "--calib-data", str(tmp_path / "none"), "--verify-data", str(tiny_300w)]))
    assert not any((tmp_path / "a").glob("*.onnx"))
    teacher = create_model("resnet18", heads={"300w": 68}, input_size=64)
    path = save_checkpoint(tmp_path / "t.pt", teacher, model_spec(teacher, "resnet18", {"300w": "68"}))
    with pytest.raises(UserError, match="teacher"):
        main(get_args_parser().parse_args(["--checkpoint", str(path), "--out", str(tmp_path / "b"),
                                           "--calib-data", str(tiny_300w), "--verify-data", str(tiny_300w)]))


def test_tampered_or_orphan_models_are_refused(exported, tmp_path):
    artefact = exported / "mobilenetv2_025_300w_64.onnx"
    copy = tmp_path / artefact.name
    copy.write_bytes(artefact.read_bytes()[:-10])
    sidecar_path(copy).write_text(sidecar_path(artefact).read_text())
    with pytest.raises(UserError, match="sha256"):
        read_sidecar(copy)
    orphan = tmp_path / "orphan.onnx"
    orphan.write_bytes(artefact.read_bytes())
    with pytest.raises(UserError, match="no metadata sidecar"):
        read_sidecar(orphan)
    meta = json.loads(sidecar_path(artefact).read_text())
    meta["facelm_contract"] = 99
    sidecar_path(orphan).write_text(json.dumps(meta))
    with pytest.raises(UserError, match="v99"):
        read_sidecar(orphan)
