"""Export: every format the installed toolchains allow, verified against PyTorch, with its contract sidecar."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from facelm.checkpoint import model_spec, save_checkpoint
from facelm.cli import main as facelm
from facelm.contract import artefact_sha256, read_sidecar, sidecar_path
from facelm.errors import UserError
from facelm.formats import FORMATS, get_format
from facelm.models import SingleHead, create_model

onnxruntime = pytest.importorskip("onnxruntime", reason="export toolchain not installed: pip install 'facelm[export]'")

STEM = "mobilenetv2_025_300w_64"


def _toolchain(name: str) -> None:
    """Skip unless the converter and runtime the format's record names are installed."""
    fmt = get_format(name)
    for module in fmt.modules:
        pytest.importorskip(module, reason=f"{fmt.name} toolchain not installed: pip install 'facelm[{fmt.extra}]'")


INSTALLED = [f.name for f in FORMATS if not f.unavailable and f.installed()]
LOOSE = ["--tolerance", "onnx_int8=100", "--tolerance", "tflite_int8=100", "--tolerance", "coreml_w8=100"]


def lively_student(arch: str, size: int = 64, head: str = "fc"):
    """An untrained student with spread batch-norm statistics and head weights: its features are not all zero (as a
    fresh network's are), so quantizers see real ranges and every op matters in the output."""
    torch.manual_seed(0)
    net = create_model(arch, heads={"300w": 68}, input_size=size, head=head).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    landmarks = net.heads["300w"]
    if head == "fc":
        torch.nn.init.normal_(landmarks.fc.weight, std=0.02)
    else:  # heatmaps that move the points away from the prior's peak
        torch.nn.init.normal_(landmarks.heatmap.weight, std=0.3)
    landmarks.set_mean_shape(torch.rand(68, 2) * 0.6 + 0.2)
    return net


def _export(ckpt, calib, verify, out, *extra) -> int:
    return facelm(["export", "--checkpoint", str(ckpt), "--out", str(out), "--calib-data", str(calib),
                   "--verify-data", str(verify), *LOOSE, *extra])


@pytest.fixture(scope="module")
def student_ckpt(tmp_path_factory):
    model = lively_student("mobilenetv2_025")
    path = tmp_path_factory.mktemp("student") / "student.pt"
    return save_checkpoint(path, model, model_spec(model, "mobilenetv2_025", {"300w": "68"}))


@pytest.fixture(scope="module")
def exported(student_ckpt, tiny_300w, calib_300w, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    assert _export(student_ckpt, calib_300w, tiny_300w, out, "--formats", *INSTALLED) == 0
    return out


def _rows(out) -> dict:
    return {r["format"]: r for r in json.loads((out / "export_report.json").read_text())["rows"]}


def test_every_format_row_is_verified(exported):
    report = json.loads((exported / "export_report.json").read_text())
    rows = _rows(exported)
    assert sorted(rows) == sorted(INSTALLED) and report["calib_count"] == 200
    for name, row in rows.items():
        fmt = get_format(name)
        assert row["status"] == "ok" and row["converter"] and row["runtime"] == fmt.runtime.name, name
        if fmt.precision in ("fp32", "fp16"):
            assert abs(row["delta_nme"]) <= fmt.tolerance, name
        limit = {"fp32": 1e-3, "fp16": 0.1, "w8": 0.5, "int8": 5.0}[fmt.precision]  # px at 64 px
        assert row["max_abs_px"] < limit, (name, row["max_abs_px"])
    assert rows["onnx_int8"]["size_mb"] < rows["onnx_fp32"]["size_mb"]
    table = (exported / "export_report.md").read_text()
    assert "| converter |" in table and "CoreML (reference execution)" in table and "Core ML runtime" not in table


def test_int8_and_fp16_files_are_smaller(exported):
    _toolchain("tflite_fp32")
    _toolchain("coreml_fp16")
    rows = _rows(exported)
    assert rows["tflite_int8"]["size_mb"] < rows["tflite_fp16"]["size_mb"] < rows["tflite_fp32"]["size_mb"]
    assert rows["coreml_w8"]["size_mb"] < rows["coreml_fp16"]["size_mb"]


def test_ncnn_int8_is_reported_not_available_never_faked(student_ckpt, tiny_300w, tmp_path):
    from facelm.export.exporters import ExportContext, run_export
    from facelm.export.run import get_args_parser, main, selected_formats
    from facelm.reports.tables import export_markdown

    assert "ncnn_int8" in [f.name for f in selected_formats(None)]
    # a named format brings the one it is converted from, in export order
    assert [f.name for f in selected_formats(["tflite_int8", "onnx_fp32"])] == ["onnx_fp32", "tflite_fp32", "tflite_int8"]
    ctx = ExportContext(torch.nn.Identity(), {}, tmp_path, "x", np.zeros((1, 3, 8, 8), np.float32))
    row = run_export(ctx, get_format("ncnn_int8"))
    assert row["status"] == "not available" and "ncnn2int8" in row["error"] and not list(tmp_path.iterdir())
    assert "| ncnn_int8 | not available: needs ncnn2table" in export_markdown(
        [row], {"nme": 1, "fr10": 0, "auc10": 0, "n": 1}, 64)
    with pytest.raises(UserError, match="ncnn_int8 is not available"):
        main(get_args_parser().parse_args(["--checkpoint", str(student_ckpt), "--out", str(tmp_path / "out"),
                                           "--calib-data", str(tiny_300w), "--verify-data", str(tiny_300w),
                                           "--formats", "ncnn_int8"]))


@pytest.mark.parametrize("suffix", [f.suffix for f in FORMATS if not f.unavailable])
def test_sidecar_is_enough_to_evaluate(exported, tiny_300w, tmp_path, suffix):
    fmt = next(f for f in FORMATS if f.suffix == suffix)
    _toolchain(fmt.name)
    artefact = exported / f"{STEM}{suffix}"
    meta = read_sidecar(artefact)
    assert meta["scheme"]["n_points"] == 68 and meta["crop"]["scale"] == 1.25 and meta["format"] == fmt.name
    assert meta["input"]["layout"] == fmt.layout and meta["precision"] == fmt.precision
    assert meta["input"]["shape"] == ([1, 3, 64, 64] if fmt.layout == "NCHW" else [1, 64, 64, 3])
    assert set(meta["files"]) == {artefact.name} | {f"{STEM}{c}" for c in fmt.companions}
    report = tmp_path / "eval.json"
    assert facelm(["eval", "--model", str(artefact), "--data", str(tiny_300w), "--report", str(report)]) == 0
    evaluated = json.loads(report.read_text())
    assert evaluated["runtime"] == fmt.runtime.name
    assert evaluated["nme"] == pytest.approx(_rows(exported)[fmt.name]["nme"], abs=1e-6)


def test_exports_are_deterministic(student_ckpt, tiny_300w, calib_300w, exported, tmp_path):
    assert _export(student_ckpt, calib_300w, tiny_300w, tmp_path, "--formats", *INSTALLED) == 0
    for name in INSTALLED:
        fmt = get_format(name)
        meta = read_sidecar(tmp_path / f"{STEM}{fmt.suffix}")
        for file, sha256 in meta["files"].items():
            assert sha256 == artefact_sha256(exported / file), file
        assert sidecar_path(tmp_path / meta["file"]).read_text() == sidecar_path(exported / meta["file"]).read_text()


def test_contract_is_embedded_where_the_format_allows(exported):
    import onnx

    meta = read_sidecar(exported / f"{STEM}.onnx")
    embedded = {p.key: json.loads(p.value) for p in onnx.load(exported / f"{STEM}.onnx").metadata_props}["facelm"]
    assert embedded["scheme"] == meta["scheme"] and embedded["format"] == "onnx_fp32" and "sha256" not in embedded
    _toolchain("tflite_fp32")
    from ai_edge_litert import schema_py_generated as schema

    for name in ("tflite_fp32", "tflite_fp16", "tflite_int8"):
        model = schema.Model.GetRootAs((exported / f"{STEM}{get_format(name).suffix}").read_bytes(), 0)
        entries = [model.Metadata(i) for i in range(model.MetadataLength())]
        assert [m.Name() for m in entries].count(b"facelm") == 1, name
        buffer = model.Buffers(next(m.Buffer() for m in entries if m.Name() == b"facelm"))
        tflite = json.loads(buffer.DataAsNumpy().tobytes())
        assert tflite["format"] == name and tflite["input"]["shape"] == [1, 64, 64, 3] and tflite["scheme"] == meta["scheme"]
    _toolchain("coreml_fp16")
    import coremltools as ct

    package = ct.models.MLModel(str(exported / f"{STEM}.w8.mlpackage"), skip_model_load=True)
    coreml = json.loads(package.user_defined_metadata["facelm"])
    assert coreml["precision"] == "w8" and coreml["output"] == meta["output"]
    assert "68-point" in package.short_description and package.input_description["image"]
    assert "com.github.apple.coremltools.conversion_date" not in package.user_defined_metadata


def test_tflite_takes_nhwc_float_and_int8_is_integer_inside(exported):
    _toolchain("tflite_fp32")
    from ai_edge_litert.interpreter import Interpreter

    for suffix in (".tflite", ".fp16.tflite", ".int8.tflite"):
        interpreter = Interpreter(model_path=str(exported / f"{STEM}{suffix}"))
        runner = interpreter.get_signature_list()["serving_default"]
        assert runner == {"inputs": ["image"], "outputs": ["landmarks"]}
        details = interpreter.get_input_details()[0]
        assert list(details["shape"]) == [1, 64, 64, 3] and details["dtype"] == np.float32
    interpreter.allocate_tensors()
    kinds = {op["op_name"] for op in interpreter._get_ops_details()}
    assert {"QUANTIZE", "DEQUANTIZE", "CONV_2D"} <= kinds
    assert sum(t["dtype"] == np.int8 for t in interpreter.get_tensor_details()) > 50


def test_ncnn_is_a_param_and_its_bin_only(exported, tmp_path):
    _toolchain("ncnn_fp16")
    param = exported / f"{STEM}.ncnn.param"
    assert not list(exported.glob("*pnnx*")) and not list(exported.glob("*.py")) and not list(exported.glob("*.pt"))
    lines = [line.split() for line in param.read_text().splitlines()]
    assert lines[0] == ["7767517"] and lines[2][:2] == ["Input", "image"] and "landmarks" in lines[-1]
    assert not {"in0", "out0"} & {token for line in lines for token in line}
    copy = tmp_path / param.name
    copy.write_text(param.read_text())
    sidecar_path(copy).write_text(sidecar_path(param).read_text())
    with pytest.raises(UserError, match="ncnn.bin is missing"):
        read_sidecar(copy)
    (tmp_path / f"{STEM}.ncnn.bin").write_bytes((exported / f"{STEM}.ncnn.bin").read_bytes()[:-8])
    with pytest.raises(UserError, match="sha256"):
        read_sidecar(copy)


def test_coreml_package_hash_covers_every_file(exported, tmp_path):
    _toolchain("coreml_fp16")
    import shutil

    package = tmp_path / f"{STEM}.mlpackage"
    shutil.copytree(exported / package.name, package)
    shutil.copyfile(sidecar_path(exported / package.name), sidecar_path(package))
    import coremltools as ct

    ct.models.MLModel(str(package), skip_model_load=True)  # Core ML's package reader rewrites Manifest.json on load
    assert read_sidecar(package)["file"] == package.name
    manifest = json.loads((package / "Manifest.json").read_text())
    assert manifest["rootModelIdentifier"] in manifest["itemInfoEntries"]
    (package / "Data" / "extra.txt").write_text("x")
    with pytest.raises(UserError, match="sha256"):
        read_sidecar(package)


def test_tflite_int8_ranges_cover_every_calibration_crop(exported):
    """The quantizer's own calibrate keeps a moving average of each crop's min / max, which forgets an early extreme
    crop; the exporter's calibration must keep the min / max over all of them."""
    _toolchain("tflite_fp32")
    from ai_edge_quantizer import quantizer, recipe

    from facelm.export.exporters import TFLITE_SIGNATURE, _global_min_max

    content = (exported / f"{STEM}.tflite").read_bytes()
    crops = np.random.default_rng(0).normal(size=(24, 64, 64, 3)).astype(np.float32)
    crops[0] *= 4
    data = {TFLITE_SIGNATURE: [{"image": crop[None]} for crop in crops]}
    ranges = _global_min_max(quantizer.Quantizer(bytearray(content), recipe.static_wi8_ai8()), content, data)
    image = ranges["serving_default_image"]
    assert float(np.min(image["min"])) == pytest.approx(crops.min()) and float(np.max(image["max"])) == pytest.approx(crops.max())


def test_int8_models_assemble_the_output_in_float(exported):
    """Offsets and logits are int8 with their own scales; the concat joining them and the mean-shape add after it
    run in float, so no int8 scale has to span the whole crop or the logits."""
    _toolchain("tflite_fp32")
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(exported / f"{STEM}.int8.tflite"))
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    tail = [op for op in ops if op["op_name"] in ("CONCATENATION", "ADD")][-2:]
    assert [op["op_name"] for op in tail] == ["CONCATENATION", "ADD"]
    assert all(tensors[op["outputs"][0]]["dtype"] == np.float32 for op in tail)
    fc = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
    assert fc and all(tensors[op["outputs"][0]]["dtype"] == np.int8 for op in fc)

    graph = onnx.load(exported / f"{STEM}.int8.onnx").graph
    producer = {out: node for node in graph.node for out in node.output}
    last = producer["landmarks"]
    assert last.op_type == "Add" and "Concat" in [producer[i].op_type for i in last.input if i in producer]


@pytest.mark.parametrize("head", ["fc", "integral"])
@pytest.mark.parametrize("arch", ["mobilenetv2_025", "mobilenetv2_050", "shufflenetv2_050", "mobilenetv3_small"])
def test_deploy_model_computes_the_same_function(arch, head):
    from facelm.export.exporters import deploy_model

    single = SingleHead(lively_student(arch, head=head), "300w").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(deploy_model(single).eval()(x), single(x), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def exported_integral(tiny_300w, calib_300w, tmp_path_factory):
    model = lively_student("mobilenetv2_025", head="integral")
    folder = tmp_path_factory.mktemp("integral")
    ckpt = save_checkpoint(folder / "student.pt", model, model_spec(model, "mobilenetv2_025", {"300w": "68"}))
    assert _export(ckpt, calib_300w, tiny_300w, folder / "export", "--formats", *INSTALLED) == 0
    return folder / "export"


def test_an_integral_head_student_exports_to_every_format(exported_integral):
    rows = _rows(exported_integral)
    assert sorted(rows) == sorted(INSTALLED)
    for name, row in rows.items():
        fmt = get_format(name)
        assert row["status"] == "ok", name
        # px at 64 px on random weights; the heatmap cells span 1.25x the crop, so weight error moves points 1.25x
        limit = {"fp32": 1e-3, "fp16": 0.1, "w8": 0.75, "int8": 2.0}[fmt.precision]
        assert row["max_abs_px"] < limit, (name, row["max_abs_px"])


def test_int8_keeps_the_integral_read_out_float(exported_integral):
    """The log-prior add, the softmax over each heatmap and the expectation after it run in float: an int8 softmax
    rounds most cells' weights to zero."""
    _toolchain("tflite_fp32")
    import onnx
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    nodes = onnx.load(exported_integral / f"{STEM}.int8.onnx").graph.node
    producer = {out: node for node in nodes for out in node.output}
    softmax = next(n for n in nodes if n.op_type == "Softmax")
    read_out = [producer[softmax.input[0]], softmax] + [n for n in nodes if n.op_type in ("MatMul", "ReduceSum", "Concat")]
    assert [n.op_type for n in read_out[:1]] == ["Add"] and len(read_out) == 5
    quantizing = {i for n in nodes if n.op_type == "QuantizeLinear" for i in n.input}
    assert not quantizing & {out for n in read_out for out in n.output}
    assert all(producer[i].op_type != "DequantizeLinear" for n in read_out[1:] for i in n.input if i in producer)

    interpreter = Interpreter(model_path=str(exported_integral / f"{STEM}.int8.tflite"),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    first = next(i for i, op in enumerate(ops) if op["op_name"] == "SOFTMAX") - 1
    assert ops[first]["op_name"] == "ADD"
    after = [op for op in ops[first:] if op["op_name"] not in ("DEQUANTIZE", "CONV_2D", "TRANSPOSE", "RESHAPE")]
    assert {op["op_name"] for op in after} == {"ADD", "SOFTMAX", "FULLY_CONNECTED", "MUL", "SUM", "CONCATENATION"}
    assert all(dtypes[op["outputs"][0]] == np.float32 for op in after)
    assert all(dtypes[op["outputs"][0]] == np.int8 for op in ops if op["op_name"] == "CONV_2D")


def test_bad_inputs_are_one_line_errors_without_leftovers(student_ckpt, tiny_300w, tmp_path):
    from facelm.export.run import get_args_parser, main

    def checkpoint(name: str, arch: str, claimed: str):
        model = create_model(arch, heads={"300w": 68}, input_size=64)
        return save_checkpoint(tmp_path / name, model, model_spec(model, claimed, {"300w": "68"}))

    cases = [  # checkpoint, arguments, error
        (student_ckpt, ["--calib-data", str(tmp_path / "none")], "calibration folder"),
        (checkpoint("t.pt", "resnet18", "resnet18"), [], "teacher"),
        (student_ckpt, ["--head", "wflw"], "no head 'wflw'"),
        (checkpoint("o.pt", "mobilenetv2_050", "mobilenetv2_025"), [], "do not fit mobilenetv2_025"),
        (student_ckpt, ["--formats", "tflite_int4"], "unknown format"),
    ]
    for ckpt, extra, error in cases:
        with pytest.raises(UserError, match=error):
            main(get_args_parser().parse_args(["--checkpoint", str(ckpt), "--out", str(tmp_path / "out"), "--calib-data",
                                               str(tiny_300w), "--verify-data", str(tiny_300w), *extra]))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("module, fmt", [("litert_torch", "tflite_fp32"), ("pnnx", "ncnn_fp16"),
                                         ("coremltools", "coreml_fp16")])
def test_missing_converter_is_a_failed_row_without_leftovers(student_ckpt, tiny_300w, calib_300w, tmp_path, monkeypatch,
                                                             module, fmt):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    assert _export(student_ckpt, calib_300w, tiny_300w, tmp_path, "--formats", fmt) == 2
    row = _rows(tmp_path)[fmt]
    assert row["status"] == "failed" and f"converter not installed ({module})" in row["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export_report.json", "export_report.md"]


def test_missing_runtime_is_a_one_line_error(exported, tiny_300w, tmp_path, monkeypatch):
    _toolchain("tflite_fp32")
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    from facelm.runtimes import load_exported

    with pytest.raises(UserError, match="runtime ai-edge-litert is not installed"):
        load_exported(exported / f"{STEM}.tflite")


def test_tampered_or_orphan_models_are_refused(exported, tmp_path):
    artefact = exported / f"{STEM}.onnx"
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
