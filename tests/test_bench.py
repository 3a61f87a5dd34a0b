"""bench/: the on-device bench (torch-free, one-line errors) and the CI regression gates, on a 64 px student."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from facelm.annotations import load_annotations
from facelm.bench import gate
from facelm.bench.estimate import onnx_macs
from facelm.bench.measure import arm_cores, cpu_name
from facelm.bench.run import cli as bench
from facelm.checkpoint import model_spec, save_checkpoint
from facelm.cli import main as facelm
from facelm.contract import sidecar_path
from facelm.formats import get_format, tolerances
from facelm.geometry import crop_to_normalised, eval_crop_matrix, transform_points
from facelm.models import create_model
from facelm.runs import file_sha256
from facelm.schemes import get_scheme

pytest.importorskip("onnxruntime", reason="export toolchain not installed: pip install 'facelm[export]'")
onnx = pytest.importorskip("onnx", reason="export toolchain not installed: pip install 'facelm[export]'")

ROOT = Path(__file__).resolve().parents[1]
MODEL = "mobilenetv2_025_300w_64.onnx"
FAST_GATE = ["--rounds", "7", "--runs", "20", "--warmup", "5"]


@pytest.fixture(scope="module")
def student(tiny_300w, tmp_path_factory) -> Path:
    """A 64 px student checkpoint whose output is the faces' mean shape (zero head weights), so that shifting its
    output is a known accuracy regression."""
    torch.manual_seed(0)
    model = create_model("mobilenetv2_025", heads={"300w": 68}, input_size=64).eval()
    samples = load_annotations(tiny_300w, get_scheme(68))
    mean = np.mean([crop_to_normalised(transform_points(s.points, eval_crop_matrix(s.points, 64)), 64) for s in samples], 0)
    model.heads["300w"].set_mean_shape(torch.from_numpy(mean).float())
    torch.nn.init.zeros_(model.heads["300w"].fc.weight)
    return save_checkpoint(tmp_path_factory.mktemp("student") / "student.pt", model,
                           model_spec(model, "mobilenetv2_025", {"300w": "68"}))


def export_student(student: Path, out: Path, tiny_300w: Path, calib_300w: Path, *formats: str) -> Path:
    assert facelm(["export", "--checkpoint", str(student), "--out", str(out), "--calib-data", str(calib_300w),
                   "--verify-data", str(tiny_300w), "--formats", *formats]) == 0
    return out


@pytest.fixture(scope="module")
def exported(student, tiny_300w, calib_300w, tmp_path_factory) -> Path:
    """The student as ONNX fp32."""
    return export_student(student, tmp_path_factory.mktemp("export"), tiny_300w, calib_300w, "onnx_fp32")


def rewrite_sidecar(artefact: Path, **changes) -> None:
    """Edit a sidecar and make its hashes match the artefact as it is now."""
    meta = json.loads(sidecar_path(artefact).read_text())
    meta.update(file=artefact.name, sha256=file_sha256(artefact), **changes)
    meta["files"] = {artefact.name: meta["sha256"]}
    sidecar_path(artefact).write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def with_coreml(student, exported, tiny_300w, calib_300w, tmp_path_factory) -> Path:
    """The ONNX student beside its Core ML fp16 and w8 programs."""
    pytest.importorskip("coremltools", reason="Core ML toolchain not installed: pip install 'facelm[export]'")
    out = copy_models(exported, tmp_path_factory.mktemp("coreml") / "models")
    return export_student(student, out, tiny_300w, calib_300w, "coreml_fp16", "coreml_w8")


def copy_models(exported: Path, folder: Path) -> Path:
    shutil.copytree(exported, folder)
    return folder


def one_line_error(capsys, argv: list[str], match: str) -> None:
    assert bench(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and err.startswith("bench: error:"), err
    assert match in err, err


def test_bench_runs_without_torch_and_skips_missing_runtimes(exported, tiny_300w, tmp_path):
    """As on a device (docs/device_guide.md): a copy of bench/ and facelm/ with the export folder, run by path in an
    interpreter that sees no checkout and no install of facelm (-S: no site hooks) and where `import torch` (and the
    LiteRT runtime) fail. The ONNX rows are measured, the .tflite is skipped with a note, and a second run appends to
    the CSV log."""
    device = tmp_path / "device"
    for folder in ("bench", "facelm"):
        shutil.copytree(ROOT / folder, device / folder, ignore=shutil.ignore_patterns("__pycache__"))
    models = copy_models(exported, device / "weights" / "export")
    shutil.copy(ROOT / "weights" / "detector_calibration.json", device / "weights")
    fake = models / "mobilenetv2_025_300w_64.tflite"
    fake.write_bytes(b"not a flatbuffer")
    shutil.copy(sidecar_path(models / MODEL), sidecar_path(fake))
    rewrite_sidecar(fake, format="tflite_fp32", runtime="LiteRT")
    for name in ("torch", "ai_edge_litert"):
        (tmp_path / "shim" / name).mkdir(parents=True)
        (tmp_path / "shim" / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked in this test')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'shim'}:{sysconfig.get_paths()['purelib']}"}
    argv = ["--models", str(models), "--data", str(tiny_300w), "--threads", "1", "--runs", "5", "--warmup", "1",
            "--json", str(tmp_path / "bench.json"), "--csv", str(tmp_path / "log.csv")]
    proc = subprocess.run([sys.executable, "-S", "bench/run.py", *argv], cwd=device, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "bench.json").read_text())
    rows = {r["format"]: r for r in result["rows"]}
    assert rows["onnx_fp32"]["accuracy"]["n"] == 12 and rows["onnx_fp32"]["p50_ms"] > 0
    assert rows["onnx_fp32"]["peak_rss_mb"] > 0 and "tflite_fp32" not in rows
    assert any("skipped mobilenetv2_025_300w_64.tflite" in n and "not installed" in n for n in result["notes"])
    assert "torch" not in result["machine"] and "5 ms budget" in proc.stdout
    argv[1] = str(exported)  # in this process LiteRT is installed, and would refuse the fake file
    assert bench(argv[:6] + ["--runs", "3", "--no-peer", "--no-detectors", "--csv", str(tmp_path / "log.csv")]) == 0
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0].startswith("time,host,cpu") and len(lines) == 1 + len(result["rows"]) + 1


def test_bench_mirror_rows_time_and_score_the_mirror_averaged_model(exported, tiny_300w, tmp_path):
    """--mirror adds a row per model whose accuracy is that of the mirror-averaged model (the same crops, each also
    run mirrored and averaged via the sidecar's flip_perm), beside the plain row."""
    from facelm.faces import EvalSet
    from facelm.inference import flip_averaged
    from facelm.runtimes import load_exported

    assert bench(["--models", str(exported), "--data", str(tiny_300w), "--threads", "1", "--runs", "3", "--warmup", "1",
                  "--no-peer", "--no-detectors", "--mirror", "--json", str(tmp_path / "bench.json")]) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    rows = {r["mirror"]: r for r in result["rows"]}
    assert rows[True]["model"] == rows[False]["model"] + " +mirror" and rows[True]["p50_ms"] > 0
    run, meta = load_exported(exported / MODEL)
    scheme = get_scheme(meta["scheme"]["name"])
    expected = EvalSet(tiny_300w, scheme).evaluate(flip_averaged(run, scheme.flip_perm), 64)[0]["nme"]
    assert rows[True]["accuracy"]["nme"] == pytest.approx(expected, abs=1e-4)
    assert abs(rows[True]["accuracy"]["nme"] - rows[False]["accuracy"]["nme"]) > 1e-3
    assert any("test-time mirroring" in note for note in result["notes"])


def test_bench_and_gate_score_several_folders_together_and_each_part(exported, tiny_300w, tmp_path, monkeypatch):
    """300-W common is two folders: the bench reports NME on both and on each part as the eval does, and the gate's
    default faces are both folders under DATA."""
    from facelm.faces import EvalSet
    from facelm.runtimes import load_exported

    data = tmp_path / "data"
    for rel, n in (("300w/testset", 5), ("lfpw/testset", 4)):
        (data / rel).mkdir(parents=True)
        for sample in load_annotations(tiny_300w, get_scheme(68))[:n]:
            for suffix in (".pts", sample.image.suffix):
                shutil.copy(sample.image.with_suffix(suffix), data / rel)
    folders = [data / "300w" / "testset", data / "lfpw" / "testset"]
    assert bench(["--models", str(exported), "--data", *map(str, folders), "--threads", "1", "--runs", "3",
                  "--warmup", "1", "--no-peer", "--no-detectors", "--json", str(tmp_path / "bench.json")]) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    accuracy = next(r["accuracy"] for r in result["rows"] if r["format"] == "onnx_fp32")
    run, _ = load_exported(exported / MODEL)
    expected = EvalSet(folders, get_scheme(68)).evaluate(run, 64)[0]
    assert accuracy["n"] == 9 and accuracy["nme"] == pytest.approx(expected["nme"], abs=1e-4)
    assert {k: p["n"] for k, p in accuracy["parts"].items()} == {"300w/testset": 5, "lfpw/testset": 4}
    assert accuracy["parts"]["lfpw/testset"]["nme"] == pytest.approx(expected["parts"]["lfpw/testset"]["nme"], abs=1e-4)
    assert result["settings"]["data"] == [str(f) for f in folders]
    monkeypatch.setenv("DATA", str(data))
    assert gate.get_args_parser().parse_args([]).data == folders


def test_empty_folder_is_an_error(tmp_path, capsys):
    one_line_error(capsys, ["--models", str(tmp_path)], "no exported models")


def test_model_without_sidecar_is_an_error(exported, tmp_path, capsys):
    shutil.copy(exported / MODEL, tmp_path / MODEL)
    one_line_error(capsys, ["--models", str(tmp_path)], "no metadata sidecar")


def test_other_contract_version_is_an_error(exported, tmp_path, capsys):
    models = copy_models(exported, tmp_path / "models")
    rewrite_sidecar(models / MODEL, facelm_contract=99)
    one_line_error(capsys, ["--models", str(models)], "contract v99")


def test_corrupt_model_is_an_error(exported, tmp_path, capsys):
    models = copy_models(exported, tmp_path / "models")
    artefact = models / MODEL
    artefact.write_bytes(artefact.read_bytes()[: -100])
    one_line_error(capsys, ["--models", str(models), "--no-peer"], "sha256 does not match")
    rewrite_sidecar(artefact)  # the hash now matches: the runtime itself must refuse the file
    one_line_error(capsys, ["--models", str(models), "--no-peer", "--runs", "1"], "cannot load it")


def test_arm_cpu_is_named_by_its_cores():
    cpuinfo = "".join(f"processor\t: {i}\nCPU part\t: {'0xd05' if i < 4 else '0xd0b'}\n\n" for i in range(8))
    assert arm_cores(cpuinfo) == "4x Cortex-A55 + 4x Cortex-A76"
    assert arm_cores("model name\t: Intel(R) Xeon(R)\n") is None


def test_mobile_estimate_counts_the_networks_macs(exported):
    from facelm.models.stats import model_stats

    expected = model_stats("mobilenetv2_025", {"300w": 68}, 64)["mmacs"] * 1e6
    assert onnx_macs(exported / MODEL) == pytest.approx(expected)


@pytest.fixture(scope="module")
def baseline(exported, tiny_300w, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gate") / "baseline.json"
    assert gate.cli(["--models", str(exported), "--data", str(tiny_300w), "--baseline", str(path), "--refresh",
                     *FAST_GATE]) == 0
    return path


def run_gate(models: Path, tiny_300w: Path, baseline: Path, capsys, candidate: Path | None = None) -> tuple[int, str]:
    fresh = ["--candidate", str(candidate)] if candidate else []
    code = gate.cli(["--models", str(models), "--data", str(tiny_300w), "--baseline", str(baseline), *fresh, *FAST_GATE])
    return code, capsys.readouterr().out


def slowed_runtime(monkeypatch, folder: Path | None = None) -> None:
    """Every model loaded from `folder` (every model, when None) sleeps 2 ms per call: a latency regression."""
    load = gate.load_runtime

    def slow_load(path, threads):
        run = load(path, threads)
        if folder is not None and Path(path).parent != folder:
            return run
        return lambda batch: (time.sleep(0.002), run(batch))[1]

    monkeypatch.setattr(gate, "load_runtime", slow_load)


def test_baseline_is_stable_text(baseline):
    text = baseline.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    row = data["formats"]["onnx_fp32"]
    assert row["nme"] == round(row["nme"], 3) and data["faces"] == 12
    assert data["latency_ratio_by_cpu"][cpu_name()]["onnx_fp32"] > 0


def test_gate_passes_on_an_unchanged_run(exported, tiny_300w, tmp_path, capsys):
    """Its own baseline, timed just before, and room for a busy CPU: the slowdowns the gate must catch (the tests
    below) are ten times the model's time, timing noise under load is a fraction of it."""
    baseline = tmp_path / "baseline.json"
    assert gate.cli(["--models", str(exported), "--data", str(tiny_300w), "--baseline", str(baseline), "--refresh",
                     *FAST_GATE]) == 0
    code = gate.cli(["--models", str(exported), "--data", str(tiny_300w), "--baseline", str(baseline),
                     "--candidate", str(copy_models(exported, tmp_path / "fresh")), "--latency-tolerance", "1.0",
                     *FAST_GATE])
    out = capsys.readouterr().out
    assert code == 0 and "gated: accuracy, latency release/reference, latency fresh/release" in out, out


def shifted(run):
    """A batch function whose points all move by 0.05 of the crop in x and y."""
    def moved(batch):
        out = np.array(run(batch))
        out[..., :2] += 0.05
        return out
    return moved


def test_gate_covers_core_ml_accuracy_and_says_why_not_its_latency(with_coreml, tiny_300w, tmp_path, monkeypatch,
                                                                  capsys):
    baseline = tmp_path / "baseline.json"
    assert gate.cli(["--models", str(with_coreml), "--data", str(tiny_300w), "--baseline", str(baseline), "--refresh",
                     *FAST_GATE]) == 0
    written = json.loads(baseline.read_text())
    assert set(written["formats"]) == {"onnx_fp32", "coreml_fp16", "coreml_w8"}
    assert set(written["latency_ratio_by_cpu"][cpu_name()]) == {"onnx_fp32"}
    capsys.readouterr()
    code, out = run_gate(with_coreml, tiny_300w, baseline, capsys)
    assert code == 0 and "coreml_w8: accuracy gated, latency not: Core ML runs only on Apple devices" in out, out
    assert "latency not gated for coreml_fp16, coreml_w8" in out, out
    load = gate.untimed_runtime
    monkeypatch.setattr(gate, "untimed_runtime", lambda path: shifted(load(path)) if ".w8." in path.name else load(path))
    code, out = run_gate(with_coreml, tiny_300w, baseline, capsys)
    failures = out.split("gate FAILED")[1]
    assert code == 1 and "coreml_w8: NME of the release" in failures and "coreml_fp16" not in failures, out


def test_an_exported_format_missing_from_the_baseline_fails(with_coreml, exported, tiny_300w, baseline, capsys):
    code, out = run_gate(with_coreml, tiny_300w, baseline, capsys)
    assert code == 1 and "coreml_fp16: exported but not in the baseline" in out.split("gate FAILED")[1], out


def test_gate_fails_on_an_accuracy_regression(exported, tiny_300w, baseline, tmp_path, capsys):
    """The fresh export's output bias moved by 0.05 of the crop in x and y: every point 3 px off at 64 px."""
    models = copy_models(exported, tmp_path / "models")
    model = onnx.load(models / MODEL)
    output = model.graph.output[0].name
    next(n for n in model.graph.node if output in n.output).output[:] = [output + "_unperturbed"]
    shift = np.zeros((1, 68, 3), np.float32)
    shift[..., :2] = 0.05
    model.graph.initializer.append(onnx.numpy_helper.from_array(shift, "shift"))
    model.graph.node.append(onnx.helper.make_node("Add", [output + "_unperturbed", "shift"], [output]))
    onnx.save(model, models / MODEL)
    rewrite_sidecar(models / MODEL)
    code, out = run_gate(exported, tiny_300w, baseline, capsys, candidate=models)
    assert code == 1 and "onnx_fp32: NME of the fresh export" in out and "release" not in out.split("gate FAILED")[1], out
    code, out = run_gate(models, tiny_300w, baseline, capsys)
    assert code == 1 and "onnx_fp32: NME of the release" in out, out


def test_gate_fails_when_the_release_slows_on_a_known_cpu(exported, tiny_300w, baseline, monkeypatch, capsys):
    slowed_runtime(monkeypatch)
    code, out = run_gate(exported, tiny_300w, baseline, capsys)
    assert code == 1 and "onnx_fp32: latency release/reference" in out and "NME" not in out.split("gate FAILED")[1], out


def test_reference_ratios_of_another_cpu_are_reported_not_gated(exported, tiny_300w, baseline, monkeypatch, capsys):
    slowed_runtime(monkeypatch)
    monkeypatch.setattr(gate, "cpu_name", lambda: "Some Other CPU @ 3.0GHz")
    code, out = run_gate(exported, tiny_300w, baseline, capsys)
    assert code == 0 and "no reference ratios for this CPU (Some Other CPU @ 3.0GHz" in out, out
    assert "gated: accuracy)" in out, out


def test_gate_fails_when_the_fresh_export_is_slower_on_any_cpu(exported, tiny_300w, baseline, tmp_path, monkeypatch,
                                                                capsys):
    fresh = copy_models(exported, tmp_path / "fresh")
    slowed_runtime(monkeypatch, fresh)
    monkeypatch.setattr(gate, "cpu_name", lambda: "Some Other CPU @ 3.0GHz")
    code, out = run_gate(exported, tiny_300w, baseline, capsys, candidate=fresh)
    assert code == 1 and "onnx_fp32: latency fresh/release" in out, out
    assert "release/reference" not in out.split("gate FAILED")[1], out


def test_refresh_keeps_the_ratios_of_other_cpus(exported, tiny_300w, baseline, tmp_path, monkeypatch):
    path = tmp_path / "baseline.json"
    shutil.copy(baseline, path)
    monkeypatch.setattr(gate, "cpu_name", lambda: "Some Other CPU @ 3.0GHz")
    assert gate.cli(["--models", str(exported), "--data", str(tiny_300w), "--baseline", str(path), "--refresh",
                     *FAST_GATE]) == 0
    assert set(json.loads(path.read_text())["latency_ratio_by_cpu"]) == {cpu_name(), "Some Other CPU @ 3.0GHz"}


def test_a_candidate_from_another_checkpoint_is_refused(exported, tiny_300w, baseline, tmp_path, capsys):
    fresh = copy_models(exported, tmp_path / "fresh")
    meta = json.loads(sidecar_path(fresh / MODEL).read_text())
    rewrite_sidecar(fresh / MODEL, model={**meta["model"], "checkpoint_sha256": "0" * 64})
    code = gate.cli(["--models", str(exported), "--data", str(tiny_300w), "--baseline", str(baseline),
                     "--candidate", str(fresh), *FAST_GATE])
    err = capsys.readouterr().err
    assert code == 2 and "export the released student" in err and len(err.strip().splitlines()) == 1, err


def test_a_latency_burst_is_timed_again(monkeypatch):
    monkeypatch.setattr(gate, "latency_ratios", lambda pairs, args: {name: 1.05 for name in pairs})
    args, notes = argparse.Namespace(latency_tolerance=0.15, rounds=1, runs=1, warmup=0), []
    ratios = gate.confirm_slow({"a": 1.3, "b": 1.1}, {"a": 1.15, "b": 1.15}, {"a": None, "b": None}, args, notes)
    assert ratios == {"a": 1.05, "b": 1.1} and len(notes) == 1 and notes[0].startswith("a: latency ratio 1.300")


def test_gate_limits_are_each_formats_tolerance_from_the_format_records():
    """onnx_fp32 may worsen by 0.02 NME points, coreml_w8 by 0.08, onnx_int8 by 0.10: the tolerances export verifies
    against, so a format the gate passes would also pass its export."""
    row = {"nme": 3.0, "fr10": 1.0, "auc10": 0.6}
    base = {"formats": {name: {**row, "precision": get_format(name).precision}
                        for name in ("onnx_fp32", "onnx_int8", "coreml_w8", "tflite_fp32")},
            "latency_ratio_by_cpu": {"cpu": {"onnx_fp32": 2.0, "onnx_int8": 2.0, "tflite_fp32": 2.0}}}
    worse = {"onnx_fp32": 3.03, "onnx_int8": 3.09, "coreml_w8": 3.07}
    released = {name: {**base["formats"][name], "nme": nme} for name, nme in worse.items()}
    run = gate.Measured(released, {}, {"onnx_fp32": 2.0, "onnx_int8": 2.4}, {}, "cpu")
    rows, failures = gate.compare(base, run, tolerances([]), gate.LATENCY_TOLERANCE)
    assert [f.split(":")[0] for f in failures] == ["onnx_fp32", "onnx_int8", "tflite_fp32"]
    assert "NME" in failures[0] and "latency" in failures[1] and "not measured" in failures[2]
    limits = {r[0]: r[5] for r in rows if r[1] == "NME % (release)"}
    assert limits == {name: f"+{get_format(name).tolerance:.3f}" for name in worse} | {"tflite_fp32": "-"}
    assert ("coreml_w8", "latency release/reference", "-", "-", "-", "-", "not gated: never timed (see the note)") in rows
    run.released["tflite_fp32"] = base["formats"]["tflite_fp32"]
    assert not gate.compare(base, run, tolerances(["onnx_fp32=0.1"]), 0.25)[1]
