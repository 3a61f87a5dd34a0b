"""facelm figures: every figure and its numbers from tiny students on synthetic faces (`--limit`), the region numbers
against a hand computation, the face grid's layout, and skips that are noted, never faked."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import released_export

from facelm import runtimes
from facelm.bench.run import peer_available
from facelm.checkpoint import model_spec, save_checkpoint
from facelm.cli import main as facelm
from facelm.engine import model_batch_fn
from facelm.inference import predict_faces
from facelm.models import create_model
from facelm.plots import GT_COLOUR, LABEL_HEIGHT, PRED_COLOUR, face_tile, tile_grid
from facelm.reports.figures import DLIB_LABEL, DLIB_MISSING, FIGURES, training_histories

ROOT = Path(__file__).resolve().parents[1]
ONNX = released_export(".onnx")
LIMIT = 6
REGIONS_68 = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48),
              "mouth": range(48, 68)}


@pytest.fixture(scope="module")
def data(tiny_300w, tmp_path_factory) -> Path:
    """A data root whose 300w/testset is the synthetic faces."""
    root = tmp_path_factory.mktemp("data")
    shutil.copytree(tiny_300w, root / "300w" / "testset")
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("weights")
    paths = []
    for seed, name in ((0, "teacher_tiny"), (1, "student_tiny")):
        torch.manual_seed(seed)
        model = create_model("mobilenetv2_025", heads={"300w": 68}, input_size=64).eval()
        paths.append(save_checkpoint(folder / f"{name}.pt", model, model_spec(model, "mobilenetv2_025", {"300w": "68"})))
    return paths[0], paths[1]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> Path:
    """One released export (ONNX fp32) with its sidecar: the smallest folder of exports."""
    pytest.importorskip("onnxruntime", reason="export runtimes not installed: pip install 'facelm[export]'")
    folder = tmp_path_factory.mktemp("export")
    for path in (ONNX, ONNX.with_name(f"{ONNX.name}.json")):
        shutil.copyfile(path, folder / path.name)
    return folder


def run_figures(data: Path, checkpoints: tuple[Path, Path], exports: Path, out: Path, *extra: str) -> dict:
    teacher, student = checkpoints
    argv = ["figures", "--data", str(data), "--teacher", str(teacher), "--student", str(student), "--exports",
            str(exports), "--out", str(out / "figures"), "--json", str(out / "figures.json"), "--limit", str(LIMIT),
            "--faces", "2", *extra]
    assert facelm(argv) == 0
    return json.loads((out / "figures.json").read_text())


@pytest.fixture(scope="module")
def result(data, checkpoints, exports, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("out")
    run = out / "run-a"
    run.mkdir()
    rows = [{"epoch": e, "train_loss": 10.0 / e, **({"eval_nme": 20.0 / e} if e % 2 == 0 else {})} for e in (1, 2, 3, 4)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_figures(data, checkpoints, exports, out, "--runs", str(run), str(out / "no-such-run")), out


def test_every_figure_and_its_numbers_are_written(result, checkpoints):
    report, out = result
    teacher, student = checkpoints
    for name, file in FIGURES.items():
        path = out / "figures" / file
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert report["figures"][name] == str(path)
    assert report["n"] == LIMIT
    assert {teacher.stem, student.stem, ONNX.name} <= set(report["models"])
    for label, row in report["models"].items():
        assert row["n"] == LIMIT and 0 <= row["auc10"] <= 1 and row["nme"] > 0, label
    assert set(report["regions"]) == {teacher.stem, student.stem}
    assert report["training"]["runs"] == ["run-a"]
    assert any("no-such-run" in note for note in report["skipped"])
    if not peer_available():
        assert any(n.startswith(DLIB_MISSING) for n in report["skipped"]) and DLIB_LABEL not in report["models"]
    else:
        assert report["models"][DLIB_LABEL]["n"] == LIMIT


def test_region_and_face_numbers_match_a_hand_computation(result, data, checkpoints):
    """Per-region NME = mean over the faces and the region's points of |pred - gt| / outer-eye-corner distance."""
    report, _ = result
    student = checkpoints[1]
    from facelm.annotations import load_annotations
    from facelm.faces import decode_all
    from facelm.schemes import get_scheme

    samples = load_annotations(data / "300w" / "testset", get_scheme(68))[:LIMIT]
    gt = np.stack([s.points for s in samples])
    run, _, _, size, _ = model_batch_fn(student, None)
    pred, _ = predict_faces(run, decode_all([s.image for s in samples]), list(gt), size)
    errors = np.linalg.norm(pred - gt, axis=-1) / np.linalg.norm(gt[:, 36] - gt[:, 45], axis=-1)[:, None] * 100
    for region, points in REGIONS_68.items():
        assert report["regions"][student.stem][region] == pytest.approx(errors[:, list(points)].mean(), rel=1e-4), region
    per_image = errors.mean(axis=1)
    assert report["models"][student.stem]["nme"] == pytest.approx(per_image.mean(), rel=1e-4)
    order = np.argsort(per_image)
    assert [f["image"] for f in report["faces"]["worst"]] == [samples[i].image.name for i in order[::-1][:2]]
    assert [f["image"] for f in report["faces"]["best"]] == [samples[i].image.name for i in order[:2]]
    assert report["faces"]["worst"][0]["nme"] == pytest.approx(per_image.max(), rel=1e-4)


def test_face_grid_has_one_tile_per_face_with_points_in_their_colours(result):
    import cv2

    _, out = result
    grid = cv2.imread(str(out / "figures" / FIGURES["faces"]))
    tile_h, gap, caption = 160 + LABEL_HEIGHT, 4, 24  # face_tile's default size, tile_grid's gap, with_caption's band
    assert grid.shape == (caption + 2 * tile_h + gap, 2 * 160 + gap, 3)  # 2 worst over 2 best

    image = np.zeros((100, 100, 3), np.uint8)
    gt = np.array([[20.0, 20.0]] * 34 + [[80.0, 80.0]] * 34, np.float32)
    pred = gt + (0, 30)  # away from every ground-truth point
    tile = face_tile(image, gt, pred, "1.00% x", size=64)
    assert tile.shape == (64 + LABEL_HEIGHT, 64, 3)
    from facelm.geometry import eval_crop_matrix, transform_points

    matrix = eval_crop_matrix(gt, 64)
    (gx, gy), (px, py) = np.rint(transform_points(np.stack([gt[0], pred[0]]), matrix)).astype(int)
    assert tuple(tile[gy, gx]) == GT_COLOUR and tuple(tile[py, px]) == PRED_COLOUR

    five = tile_grid([tile] * 5, cols=3, gap=2)
    assert five.shape == (2 * tile.shape[0] + 2, 3 * 64 + 2 * 2, 3)
    assert (five[tile.shape[0] + 2:, 2 * (64 + 2):] == 255).all()  # the sixth place is empty


def test_a_missing_runtime_is_skipped_with_a_note(data, checkpoints, exports, tmp_path, monkeypatch):
    def not_installed(path, threads):
        raise ImportError("No module named 'onnxruntime'")

    monkeypatch.setitem(runtimes.RUNTIMES, "onnxruntime", runtimes.Runtime("onnxruntime", not_installed, "onnxruntime"))
    report = run_figures(data, checkpoints, exports, tmp_path)
    assert ONNX.name not in report["models"]
    assert any(note.startswith(ONNX.name) and "not installed" in note for note in report["skipped"])
    assert any("training curves: no history" in note for note in report["skipped"]) and "training" not in report["figures"]


def test_training_history_falls_back_to_the_release_json(tmp_path):
    released, bare = tmp_path / "student_a.pt", tmp_path / "student_b.pt"
    history = [{"epoch": 1, "train_loss": 2.0}]
    released.with_suffix(".json").write_text(json.dumps({"history": history}))
    histories, source = training_histories([], [released, bare], [])
    assert histories == {"student_a": history} and str(released.with_suffix(".json")) in source


def test_without_test_faces_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DATA", raising=False)
    for argv in (["figures"], ["figures", "--data", str(tmp_path)]):
        assert facelm(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("facelm figures: error:") and "300w/testset" in err, err
