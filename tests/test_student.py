"""Distillation: the confidence-weighted loss, teacher-placed crops for unlabelled photos, and a smoke run."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from facelm.checkpoint import load_model, model_spec, save_checkpoint
from facelm.cli import main as facelm
from facelm.dataset import LandmarkCrops, Source, load_source
from facelm.engine import skip_trained_draws, torch_batch_fn
from facelm.errors import UserError
from facelm.labellers import settled_outputs
from facelm.losses import distillation_loss, get_coord_loss
from facelm.models import SingleHead, create_model
from facelm.student.pseudo import read_unlabelled
from facelm.student.train import unlabelled_source_name
from facelm.training import make_optimization


def _outputs(logits):
    xy = torch.rand(1, len(logits), 2)
    return torch.cat([xy, torch.tensor(logits, dtype=torch.float32).view(1, -1, 1)], dim=-1)


def test_teacher_confidence_scales_each_points_gradient():
    teacher = _outputs([20.0, 0.0, -20.0, np.log(0.25 / 0.75)])  # confidences 1, 0.5, ~0, 0.25
    student = _outputs([0.0] * 4).requires_grad_(True)
    loss, _ = distillation_loss(student, teacher, size=112, coord_loss=get_coord_loss("l1"), conf_weight=0.0)
    (grad,) = torch.autograd.grad(loss, student)
    unweighted = torch.sign(student[0, :, :2] - teacher[0, :, :2]).detach() * 112 / (1 * 4)  # d mean(|d|) / d xy
    ratio = (grad[0, :, :2] / unweighted).mean(dim=1)
    np.testing.assert_allclose(ratio.numpy(), [1.0, 0.5, 0.0, 0.25], atol=1e-6)


def test_confidence_mean_rescales_every_points_gradient_alike():
    teacher = _outputs([20.0, 0.0, np.log(0.25 / 0.75)])  # confidences 1, 0.5, 0.25
    student = _outputs([0.0] * 3).requires_grad_(True)
    loss_fn = get_coord_loss("l1")
    (plain,) = torch.autograd.grad(distillation_loss(student, teacher, 112, loss_fn, conf_weight=0.0)[0], student)
    normed_loss, _ = distillation_loss(student, teacher, 112, loss_fn, conf_weight=0.0, confidence_mean=0.25)
    (normed,) = torch.autograd.grad(normed_loss, student)
    np.testing.assert_allclose(normed[0, :, :2].numpy(), 4 * plain[0, :, :2].numpy(), rtol=1e-5)


def test_teacher_confidence_mean_is_the_mean_sigmoid_over_all_sources():
    from facelm.student.train import teacher_confidence_mean

    class _Item:
        def __init__(self, logits):
            self.teacher = np.zeros((len(logits), 1, 3), np.float32)
            self.teacher[:, 0, 2] = logits

    assert teacher_confidence_mean([_Item([0.0, 0.0]), _Item([np.log(3.0)])]) == pytest.approx((0.5 + 0.5 + 0.75) / 3)


def test_sample_weight_scales_each_faces_distillation_gradient():
    teacher = torch.cat([_outputs([5.0, 5.0]), _outputs([5.0, 5.0])])
    student = torch.cat([_outputs([0.0, 0.0]), _outputs([0.0, 0.0])]).requires_grad_(True)
    loss_fn = get_coord_loss("l1")
    (plain,) = torch.autograd.grad(distillation_loss(student, teacher, 112, loss_fn)[0], student)
    weighted_loss, _ = distillation_loss(student, teacher, 112, loss_fn, sample_weight=torch.tensor([0.25, 1.0]))
    (weighted,) = torch.autograd.grad(weighted_loss, student)
    np.testing.assert_allclose(weighted[0].numpy(), 0.25 * plain[0].numpy(), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(weighted[1].numpy(), plain[1].numpy(), rtol=1e-5, atol=1e-8)


def test_distillation_never_sends_gradient_into_the_teacher():
    teacher = _outputs([1.0, -1.0]).requires_grad_(True)
    student = _outputs([0.0, 0.0]).requires_grad_(True)
    loss, _ = distillation_loss(student, teacher, size=112, coord_loss=get_coord_loss("wing"))
    loss.backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0


def test_student_confidence_learns_the_teachers():
    teacher = _outputs([3.0, -3.0])
    low = _outputs([-3.0, 3.0])
    matched = torch.cat([teacher[..., :2], teacher[..., 2:]], dim=-1)
    loss_fn = get_coord_loss("l1")
    assert distillation_loss(matched, teacher, 112, loss_fn)[0] < distillation_loss(
        torch.cat([teacher[..., :2], low[..., 2:]], dim=-1), teacher, 112, loss_fn)[0]


def test_teacher_refined_boxes_settle():
    """A teacher that always finds the face filling the middle of its crop: the box stops moving after one pass."""
    template = np.stack(np.meshgrid(np.linspace(0.2, 0.8, 17), [0.2, 0.5, 0.8, 0.35]), -1).reshape(-1, 2)[:68]

    def fake_teacher(batch):
        out = np.zeros((len(batch), 68, 3), np.float32)
        out[..., :2] = template
        return out

    images = [np.zeros((120, 160, 3), np.uint8)] * 3
    boxes = [np.array([[40.0, 30.0], [100.0, 90.0]]) + i for i in range(3)]
    outputs, moves = settled_outputs(fake_teacher, images, boxes, size=64, passes=3)
    assert outputs.shape == (3, 68, 3)
    assert moves[1] < 1e-3 and moves[2] < 1e-3


def test_unlabelled_folder_boxes_are_read_and_checked(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((16, 16, 3), np.uint8))
    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1\na.jpg,1,2,10,12\n")
    folder = read_unlabelled(tmp_path)
    assert folder.images == [tmp_path / "a.jpg"] and folder.boxes.tolist() == [[1, 2, 10, 12]]
    (tmp_path / "boxes.csv").write_text("name,left,top\n")
    with pytest.raises(Exception, match="header must be"):
        read_unlabelled(tmp_path)


def test_photo_sources_are_named_for_their_dataset(tmp_path):
    assert unlabelled_source_name(tmp_path / "unlabeled" / "lfw") == "unlabelled-lfw"
    assert unlabelled_source_name(tmp_path / "ytf68" / "unlabeled") == "unlabelled-ytf68"
    assert unlabelled_source_name(tmp_path / "ytf68" / "unlabeled" / ".." / "unlabeled") == "unlabelled-ytf68"


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("resnet18", heads={"300w": 68, "ytf68": 68}, input_size=64).eval()
    for head in model.heads.values():
        head.set_mean_shape(torch.rand(68, 2) * 0.6 + 0.2)  # a trained teacher's heads start from a real shape
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    return save_checkpoint(path, model, model_spec(model, "resnet18", {"300w": "68", "ytf68": "68"}))


@pytest.fixture(scope="module")
def tiny_unlabelled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unlabelled")
    rng = np.random.default_rng(1)
    rows = []
    for i in range(8):
        cv2.imwrite(str(folder / f"u{i}.jpg"), rng.integers(0, 255, (80, 80, 3), dtype=np.uint8))
        rows.append(f"u{i}.jpg,20,20,60,60")
    (folder / "boxes.csv").write_text("image,x0,y0,x1,y1\n" + "\n".join(rows) + "\n")
    return folder


def test_teacher_targets_move_exactly_with_each_augmented_crop(tiny_300w):
    """A teacher that reproduces the ground truth must give targets equal to the augmented ground truth,
    through random crops, rotations and mirroring, with its confidences renumbered by the same flip."""
    loaded = load_source(Source.parse(f"300w:68:{tiny_300w}"))
    logits = np.tile(np.arange(68, dtype=np.float32), (len(loaded.samples), 1))[..., None]
    loaded.teacher = np.concatenate([np.stack([s.points for s in loaded.samples]), logits], axis=-1)
    crops = LandmarkCrops([loaded], 64, train=True)
    crops.reseed(3)
    flip_perm = np.asarray(loaded.source.scheme.flip_perm)
    mirrored = 0
    for index in range(len(crops)):
        item = crops[index]
        np.testing.assert_allclose(item["teacher"][:, :2].numpy(), item["target"].numpy(), atol=1e-5)
        order = item["teacher"][:, 2].numpy()
        assert np.array_equal(order, np.arange(68)) or np.array_equal(order, flip_perm)
        mirrored += np.array_equal(order, flip_perm)
    assert 0 < mirrored < len(crops)


def test_flip_averaging_cancels_a_horizontal_bias():
    """A model that is right up to a constant rightward shift on both a face and its mirror image: averaging the
    two views (mirror renumbered by the flip permutation, u -> 1 - u) must give the true points."""
    from facelm.inference import flip_averaged
    from facelm.schemes import get_scheme

    perm = list(get_scheme("68").flip_perm)
    truth = np.random.default_rng(0).uniform(0.2, 0.8, (68, 2)).astype(np.float32)
    truth_mirrored = np.stack([1 - truth[perm, 0], truth[perm, 1]], axis=1)

    def biased_model(batch):
        out = np.zeros((len(batch), 68, 3), np.float32)
        for i, crop in enumerate(batch):
            out[i, :, :2] = truth if crop[0, 0, 0] > 0 else truth_mirrored  # the marker pixel tells the view
            out[i, :, 0] += 0.03
        return out

    face = np.zeros((1, 3, 8, 8), np.float32)
    face[0, 0, 0, 0] = 1.0
    out = flip_averaged(biased_model, tuple(perm))(face)
    np.testing.assert_allclose(out[0, :, :2], truth, atol=1e-6)
    assert np.abs(biased_model(face)[0, :, :2] - truth).max() > 0.02


def test_two_distillation_steps_reduce_the_loss(tiny_300w, tiny_teacher, tmp_path):
    """The real training step (ground truth + cached teacher targets) on one real batch: the loss goes down."""
    from facelm.student import train
    from facelm.student.pseudo import labelled_outputs

    args = train.get_args_parser().parse_args(["--input-size", "64", "--lr", "3e-4", "--warmup-epochs", "0"])
    teacher, _ = load_model(tiny_teacher)
    teacher_head = SingleHead(teacher, "300w").eval()
    loaded = load_source(Source.parse(f"300w:68:{tiny_300w}"))
    loaded.teacher = labelled_outputs(loaded, torch_batch_fn(teacher_head), 64, "tiny", tmp_path)
    assert len(list(tmp_path.glob("labelled-300w-*.npz"))) == 1
    crops = LandmarkCrops([loaded], 64, train=True)
    crops.reseed(0)
    batch = next(iter(DataLoader(crops, batch_size=8)))
    torch.manual_seed(0)
    student = create_model("mobilenetv2_025", heads={"300w": 68}, input_size=64)
    optimizer, scheduler, _ = make_optimization(student, args, steps_per_epoch=2)
    coord_loss = get_coord_loss(args.loss)
    losses = []
    for _ in range(3):
        loss, parts = train.student_loss(student, batch, args, coord_loss)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    assert "kd_coord" in parts and "coord" in parts
    assert losses[2] < losses[0], losses


@pytest.fixture(scope="module")
def student_runs(tiny_300w, tiny_heldout, tiny_teacher, tiny_unlabelled, tmp_path_factory):
    """Both arms of the A/B on one schedule, in one runs folder: {mode: run folder}."""
    root = tmp_path_factory.mktemp("students")
    runs = {}
    for mode in ("labels", "distill"):
        assert facelm([
            "train-student", "--teacher", str(tiny_teacher), "--labelled", f"300w:68:{tiny_300w}",
            "--unlabelled", str(tiny_unlabelled), "--eval-data", str(tiny_heldout), "--test-data", str(tiny_heldout),
            "--arch", "mobilenetv2_025",
            "--input-size", "48", "--batch-size", "4", "--epochs", "2", "--steps-per-epoch", "2", "--workers", "0",
            "--mode", mode, "--cache", str(root / "cache"), "--out", str(root / "runs"), "--name", mode,
        ]) == 0
        runs[mode] = next((root / "runs").glob(f"*-{mode}"))
    return runs


@pytest.mark.parametrize("mode", ["distill", "labels"])
def test_student_run_writes_a_complete_run_folder(student_runs, mode):
    run = student_runs[mode]
    for name in ("config.json", "data_fingerprint.json", "teacher_fingerprint.json", "metrics.json", "last.pt", "ced.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["mode"] == mode and metrics["steps_per_epoch"] == 2 and "teacher_nme" in metrics
    assert len(list((run.parents[1] / "cache").glob("pseudo-*.npz"))) == 1  # the teacher's outputs are cached
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert ("kd_coord" in rows[0]) == (mode == "distill")


def test_student_report_and_release(student_runs, tiny_300w, tmp_path):
    runs_root = student_runs["distill"].parent
    data_root = tmp_path / "data"
    (data_root / "300w").mkdir(parents=True)
    (data_root / "300w" / "trainset").symlink_to(tiny_300w)
    assert facelm(["student-report", "--runs", str(runs_root), "--out", str(tmp_path / "results"),
                   "--data", str(data_root)]) == 0
    (ab,) = json.loads((tmp_path / "results" / "student_ab.json").read_text())["abs"]
    assert ab["labels"]["run"] == str(student_runs["labels"]) and ab["distill"]["run"] == str(student_runs["distill"])
    assert ab["nme_gain"] == pytest.approx(ab["labels"]["nme"] - ab["distill"]["nme"])
    fit = ab["training_fit"]
    assert fit["n"] == 12 and all(fit[k] > 0 for k in ("labels", "distill", "teacher", "teacher_targets"))
    assert facelm(["student-report", "--runs", str(runs_root), "--out", str(tmp_path / "r2"),
                   "--data", str(tmp_path / "nowhere")]) == 2
    families = json.loads((tmp_path / "results" / "student_families.json").read_text())
    trained = [r["arch"] for r in families["rows"] if r["run"]]
    assert trained == ["mobilenetv2_025"] and len(families["rows"]) >= 6 and all(r["params"] > 0 for r in families["rows"])

    assert facelm(["release", "--run", str(student_runs["distill"]), "--out", str(tmp_path / "weights"),
                   "--docs", str(tmp_path / "docs")]) == 0
    card = (tmp_path / "weights" / "student_mobilenetv2_025.md").read_text()
    assert "## Teacher" in card and "mirror-averaged targets: True" in card
    _, payload = load_model(tmp_path / "weights" / "student_mobilenetv2_025.pt")
    assert payload["teacher_fingerprint"]["head"] == "300w"


def test_pareto_times_each_family_as_int8_tflite_beside_dlib_and_the_teacher(student_runs, calib_300w, tiny_heldout,
                                                                               tmp_path, capsys):
    """Every trained family becomes a point: its test NME from the run, its int8 TFLite exported and verified by
    `facelm export`, timed at one thread with its reference-workload ratio; dlib and the teacher come from the
    committed reports; the figure and JSON are written and no student that loses to dlib is picked."""
    pytest.importorskip("ai_edge_litert", reason="export toolchain not installed: pip install 'facelm[export]'")
    runs_root = student_runs["distill"].parent
    assert facelm(["student-report", "--runs", str(runs_root), "--out", str(tmp_path / "results")]) == 0
    data = tmp_path / "data"
    (data / "300w").mkdir(parents=True)
    (data / "300w" / "trainset").symlink_to(calib_300w)
    (data / "300w" / "testset").symlink_to(tiny_heldout)
    argv = ["pareto", "--data", str(data), "--families", str(tmp_path / "results" / "student_families.json"),
            "--exports", str(tmp_path / "exports"), "--runs", "5", "--figure", str(tmp_path / "pareto.png"),
            "--json", str(tmp_path / "pareto.json")]
    assert facelm(argv) == 0
    result = json.loads((tmp_path / "pareto.json").read_text())
    student, dlib, teacher = result["points"]
    assert (student["kind"], dlib["kind"], teacher["kind"]) == ("student", "dlib", "teacher")
    assert student["run"] == str(student_runs["distill"]) and student["file"].endswith(".int8.tflite")
    assert student["nme"] == json.loads((student_runs["distill"] / "metrics.json").read_text())["test"]["nme"]
    assert student["p50_ms"] > 0 and student["reference_ratio"] > 0 and 0 < student["size_mb"] < 1
    assert dlib["nme"] < student["nme"] and result["pick"] is None
    assert (tmp_path / "pareto.png").stat().st_size > 10_000
    exported = sorted((tmp_path / "exports").rglob("*.int8.tflite"))
    assert facelm(argv) == 0 and sorted((tmp_path / "exports").rglob("*.int8.tflite")) == exported  # kept, not redone
    assert "no student beats dlib on common" in capsys.readouterr().out
    families = json.loads((tmp_path / "results" / "student_families.json").read_text())
    for row in families["rows"]:
        row["run"] = None
    (tmp_path / "empty.json").write_text(json.dumps(families))
    assert facelm([*argv[:3], "--families", str(tmp_path / "empty.json")]) == 2
    assert "holds no trained family" in capsys.readouterr().err


def test_report_keeps_the_rows_of_runs_whose_folders_are_gone(student_runs, tiny_300w, tmp_path, capsys):
    runs_root, out = tmp_path / "runs", tmp_path / "results"
    shutil.copytree(student_runs["distill"].parent, runs_root)
    data_root = tmp_path / "data"
    (data_root / "300w").mkdir(parents=True)
    (data_root / "300w" / "trainset").symlink_to(tiny_300w)
    report = ["student-report", "--runs", str(runs_root), "--out", str(out), "--data", str(data_root)]
    assert facelm(report) == 0
    before = json.loads((out / "student_ab.json").read_text())
    shutil.rmtree(runs_root / student_runs["labels"].name)
    assert facelm(report) == 0
    assert json.loads((out / "student_ab.json").read_text()) == before  # labels row and training fit carried over
    assert f"carried over from {out} (their folders are gone): {student_runs['labels'].name}" in capsys.readouterr().out

    recorded = {name: (out / name).read_text() for name in ("student_ab.json", "student_families.json")}
    better = runs_root / "99991231-000000-distill"  # a later distilled arm, paired with the labels arm that is gone
    shutil.copytree(runs_root / student_runs["distill"].name, better)
    metrics = json.loads((better / "metrics.json").read_text())
    (better / "metrics.json").write_text(json.dumps(metrics | {"nme": metrics["nme"] - 1.0}))
    assert facelm(report) == 0
    (ab,) = json.loads((out / "student_ab.json").read_text())["abs"]
    (old,) = before["abs"]
    assert ab["distill"]["run"] == str(better) and len(ab["variants"]) == 2
    assert ab["training_fit"]["labels"] == old["training_fit"]["labels"]  # carried for the run that is gone
    assert ab["training_fit"]["distill"] == pytest.approx(old["training_fit"]["distill"])  # same weights, evaluated
    assert list(ab["labels"]["eval_nme_by_epoch"]) == list(ab["distill"]["eval_nme_by_epoch"])
    shutil.rmtree(runs_root)
    for name, text in recorded.items():
        (out / name).write_text(text)
    assert facelm(report) == 0 and json.loads((out / "student_ab.json").read_text()) == before


def test_ab_pairs_only_runs_on_one_schedule_shipped_student_first():
    from facelm.student.report import ab_archs, ab_reports

    def row(arch, mode, epochs, nme):
        return {"arch": arch, "mode": mode, "schedule": {"epochs": epochs, "head": "fc", "labelled_limit": None}, "nme": nme,
                "fr10": 1.0, "run": f"{arch}-{mode}-{epochs}"}

    rows = [row("shufflenetv2_050", "labels", 16, 6.0), row("shufflenetv2_050", "distill", 16, 5.8),
            row("mobilenetv3_small", "labels", 16, 6.0), row("mobilenetv3_small", "distill", 10, 5.0),
            row("mobilenetv2_025", "labels", 16, 5.5), row("mobilenetv2_025", "distill", 16, 5.6),
            row("mobilenetv2_025", "distill", 16, 5.2)]
    assert ab_archs(rows) == ["mobilenetv2_025", "shufflenetv2_050"]
    (ab,) = ab_reports(rows, "mobilenetv2_025")
    assert ab["distill"]["nme"] == 5.2 and len(ab["variants"]) == 2 and ab["passed"]
    with pytest.raises(UserError, match="no A/B pair for mobilenetv3_small"):
        ab_reports(rows, "mobilenetv3_small")
    with pytest.raises(UserError, match="no A/B pair"):
        ab_archs(rows[2:4])


def test_ab_lists_labels_runs_with_a_distilled_arms_crops_per_step_as_controls():
    from facelm.reports.tables import ab_markdown
    from facelm.student.report import ab_reports

    def row(mode, batch, nme, photos=0, epochs=16, head="fc"):
        return {"arch": "mobilenetv2_035", "mode": mode, "schedule": {"epochs": epochs, "batch_size": batch,
                                                                       "head": head, "labelled_limit": None},
                "nme": nme, "fr10": 0.3, "auc10": 0.5, "spearman_conf_error": -0.4, "train_img_per_s": 100.0,
                "train_wall_seconds": 600.0, "eval_nme_by_epoch": {16: nme}, "run": f"{mode}-{batch}-{photos}-{epochs}",
                "unlabelled_per_batch": photos if mode == "distill" else None, "labelled_fraction": 0.5,
                "kd_labelled_weight": 0.25, "teacher": {"sha256": "dfe70da5" * 8}, "teacher_nme": 3.8}

    rows = [row("labels", 64, 5.0), row("distill", 64, 4.8, photos=64), row("labels", 128, 4.9),
            row("labels", 96, 4.7), row("labels", 128, 4.6, epochs=8), row("labels", 64, 4.5, head="integral"),
            row("distill", 64, 4.4, photos=64, head="integral"), row("labels", 64, 4.5, head="integral")]
    for r, suffix in zip(rows[-3:], ("-integral", "-integral", "-integral-rerun")):
        r["run"] += suffix
    integral, ab = ab_reports(rows, "mobilenetv2_035")
    assert integral["labels"]["run"] == "labels-64-0-16-integral-rerun"
    assert [r["run"] for r in ab["crop_controls"]] == ["labels-128-0-16"]
    assert ab["labels"]["run"] == "labels-64-0-16" and ab["passed"]  # the newer integral-head run is not the A arm
    assert [r["run"] for r in ab["head_controls"]] == ["distill-64-64-16-integral", "labels-64-0-16-integral-rerun"]
    table = ab_markdown(ab)
    assert table.count("| labels, batch 128 (control) |") == 2 and "batch 96" not in table
    assert table.count("| labels, integral head (control) |") == 2
    assert "| distill (B arm) |" in table


def test_ab_schedules_list_the_default_augmentation_first_then_the_longest_then_the_best():
    from facelm.student.report import paired_schedules

    default = {"epochs": 16, "labelled_limit": None, "head": "fc"}
    longer = {"epochs": 20, "labelled_limit": None, "head": "fc"}
    longer_integral = {**longer, "head": "integral"}
    light = {"epochs": 30, "labelled_limit": None, "rotation": 10.0, "photometric": 0.5, "head": "fc"}
    distilled_nme = {"fc": 4.0, "integral": 3.9}
    rows = [{"arch": "mobilenetv2_035", "mode": mode, "schedule": schedule, "nme": distilled_nme[schedule["head"]]}
            for schedule in (light, default, longer, longer_integral) for mode in ("labels", "distill")]
    assert paired_schedules(rows, "mobilenetv2_035") == [longer_integral, longer, default, light]


def test_a_replaced_teacher_is_found_by_its_sha256_or_refused(tmp_path):
    from facelm.runs import file_sha256
    from facelm.student.report import teacher_checkpoint

    released, earlier = tmp_path / "teacher.pt", tmp_path / "old.pt"
    released.write_bytes(b"first teacher")
    recorded = {"path": str(released), "sha256": file_sha256(released), "head": "300w"}
    assert teacher_checkpoint(recorded, []) == released
    earlier.write_bytes(b"first teacher")
    released.write_bytes(b"second teacher")
    with pytest.raises(UserError, match="no longer the teacher a run learnt from.*--teachers"):
        teacher_checkpoint(recorded, [])
    assert teacher_checkpoint(recorded, [released, earlier]) == earlier


def test_families_compare_students_distilled_from_one_teacher():
    from facelm.student.report import families_report, families_schedule

    def row(arch, sha, nme):
        return {"arch": arch, "mode": "distill", "schedule": {"epochs": 16, "input_size": 112, "head": "fc"}, "nme": nme,
                "teacher": {"sha256": sha}, "teacher_nme": {"old": 4.5, "new": 3.8}[sha], "run": f"{arch}-{sha}"}

    rows = [row("mobilenetv2_025", "old", 5.5), row("mobilenetv2_050", "old", 4.9), row("mobilenetv2_025", "new", 5.0)]
    schedule = families_schedule(rows)
    assert schedule["teacher_sha256"] == "old" and schedule["teacher_nme"] == 4.5
    table = {r["arch"]: r for r in families_report(rows, schedule)}
    assert table["mobilenetv2_025"]["nme"] == 5.5 and table["mobilenetv2_050"]["nme"] == 4.9


def test_pick_names_the_best_family_overall_and_within_the_size_budget():
    from facelm.reports.tables import pick_sentence

    table = [{"arch": "small", "run": "a", "nme": 5.5, "mflops": 17.7, "fp32_mb": 1.7},
             {"arch": "big", "run": "b", "nme": 5.1, "mflops": 32.3, "fp32_mb": 4.8},
             {"arch": "untrained", "run": None, "nme": None, "mflops": 1.0, "fp32_mb": 0.5}]
    sentence = pick_sentence(table, max_mb=2.0)
    assert sentence.startswith("Of 2 trained: lowest NME `big`") and "within 2.0 MB fp32: `small`" in sentence
    assert "none trained is within 1.0 MB" in pick_sentence(table, max_mb=1.0)


def test_distill_batches_draw_labelled_faces_at_the_set_fraction():
    from facelm.student.train import make_sampler

    draws = torch.tensor(list(make_sampler(100, 9900, 0.5, 20000, seed=0)))
    assert abs((draws < 100).float().mean().item() - 0.5) < 0.02 and draws.max() < 10000
    assert sorted(make_sampler(100, 0, 0.5, 100, seed=0)) == list(range(100))  # labels alone: plain passes


def test_labelled_limit_keeps_a_seeded_subset(tiny_300w):
    from facelm.student.train import labelled_subset

    item = load_source(Source.parse(f"300w:68:{tiny_300w}"))
    a, b = labelled_subset(item, 5, seed=0), labelled_subset(item, 5, seed=0)
    assert [s.image for s in a.samples] == [s.image for s in b.samples] and len(a.images) == len(a.weights) == 5
    assert {s.image for s in a.samples} <= {s.image for s in item.samples}
    assert [s.image for s in labelled_subset(item, 5, seed=1).samples] != [s.image for s in a.samples]
    assert labelled_subset(item, None, seed=0) is item and labelled_subset(item, 100, seed=0) is item
    with pytest.raises(UserError):
        labelled_subset(item, 0, seed=0)


def test_photos_ride_on_top_of_the_labels_arms_own_draws():
    from facelm.student.train import LabelledPlusUnlabelled, make_sampler

    batches = LabelledPlusUnlabelled(50, 1000, labelled=8, photos=4, steps=10, seed=3)
    labels_arm = make_sampler(50, 0, 0.75, 10 * 8, seed=3)  # what --mode labels draws on the same seed
    for _ in range(2):  # both keep their generators across epochs
        drawn = list(batches)
        assert len(drawn) == len(batches) == 10 and all(len(b) == 12 for b in drawn)
        assert [i for b in drawn for i in b[:8]] == list(labels_arm)
        photos = torch.tensor([i for b in drawn for i in b[8:]])
        assert photos.min() >= 50 and photos.max() < 1050
    with pytest.raises(UserError, match="--unlabelled-per-batch 4 needs unlabelled photos.*--unlabelled-per-batch 0"):
        LabelledPlusUnlabelled(50, 0, labelled=8, photos=4, steps=10, seed=3)


@pytest.mark.parametrize("photos", [4, 0])
def test_a_resumed_run_goes_on_with_the_draws_of_an_uninterrupted_one(photos):
    from facelm.student.train import LabelledPlusUnlabelled, make_sampler

    def loader() -> DataLoader:
        if photos:
            return DataLoader(range(1050), batch_sampler=LabelledPlusUnlabelled(50, 1000, 8, photos, steps=10, seed=3))
        return DataLoader(range(50), batch_size=8, drop_last=True, sampler=make_sampler(50, 0, 1.0, 80, seed=3))

    whole = loader()
    epochs = [[b.tolist() for b in whole] for _ in range(3)]
    assert epochs[2] != epochs[0]  # without the replay a resumed run would draw epoch 1's batches again
    resumed = loader()
    skip_trained_draws(resumed, 2)
    assert [b.tolist() for b in resumed] == epochs[2]


def test_report_gives_the_share_and_split_of_photos_on_top_of_a_full_batch():
    from facelm.reports.tables import share_text
    from facelm.student.report import labelled_share

    on_top = {"batch_size": 64, "unlabelled_per_batch": 32, "labelled_fraction": 0.75}
    assert labelled_share(on_top) == 0.667 and labelled_share(on_top | {"unlabelled_per_batch": 0}) == 0.75
    row = {"labelled_fraction": 0.667, "unlabelled_per_batch": 32, "schedule": {"batch_size": 64}}
    assert share_text(row) == "0.667 (64 faces + 32 photos)" and share_text(row | {"unlabelled_per_batch": 0}) == "0.667"


def test_a_run_on_other_labelled_sources_or_from_init_is_another_recipe_never_an_arm_of_the_plain_ab():
    """A labels-mode run on pseudo-labelled photos, or a run started from --init, must not stand in for the
    labels-alone or distilled arm of the A/B on the same schedule."""
    from facelm.student.report import data_recipe, latest, with_recorded_defaults

    base = {"epochs": 20, "batch_size": 128}
    plain = data_recipe({"labelled": None, "init": None})
    pseudo = data_recipe({"labelled": ["300w:68:/d/300w/trainset:train", "dlib68:68:/p/lfw/landmarks.csv"], "init": None})
    warm = data_recipe({"labelled": None, "init": "runs/student/20261207-000000-pretrain/last.pt"})
    assert plain == {"labelled_sources": None, "init": None}
    assert pseudo["labelled_sources"] == ["300w", "dlib68"] and warm["init"] == "20261207-000000-pretrain"
    rows = [{"arch": "a", "mode": "labels", "run": name, "schedule": with_recorded_defaults(base | recipe)}
            for name, recipe in (("plain", plain), ("pseudo", pseudo), ("warm", warm))]
    recorded = with_recorded_defaults(base)  # a row from before the data recipe was recorded
    assert latest(rows, "a", "labels", recorded)["run"] == "plain"
    assert latest(rows, "a", "labels", with_recorded_defaults(base | pseudo))["run"] == "pseudo"


def test_the_ab_lists_other_data_recipes_on_its_schedule_as_arms_of_their_own():
    from facelm.reports.tables import arm_name
    from facelm.student.report import data_recipe, recipe_arms, with_recorded_defaults

    base = {"epochs": 20, "batch_size": 128, "head": "integral"}
    schedule = with_recorded_defaults(base)
    pseudo = with_recorded_defaults(base | data_recipe({"labelled": ["300w:68:/a:train", "dlib68:68:/b.csv"]}))
    warm = with_recorded_defaults(base | data_recipe({"init": "runs/student/x-pretrain/last.pt"}))
    longer = with_recorded_defaults(base | {"epochs": 40} | data_recipe({"init": "runs/student/x-pretrain/last.pt"}))
    rows = [{"arch": "a", "mode": mode, "run": run, "schedule": s} for run, mode, s in
            (("labels", "labels", schedule), ("pseudo", "labels", pseudo), ("warm", "distill", warm),
             ("longer", "distill", longer))]
    arms = recipe_arms(rows, "a", schedule)
    assert [r["run"] for r in arms] == ["pseudo", "warm"]  # another schedule is not an arm
    assert arm_name(arms[0], schedule) == "labels, labels: 300w + dlib68"
    assert arm_name(arms[1], schedule) == "distill, labels: 300w, started from run `x-pretrain`"
