"""Model registry, multi-head outputs, partial supervision and the checkpoint contract."""
from __future__ import annotations

import json

import pytest
import torch

from facelm.checkpoint import build_model, load_model, model_spec, save_checkpoint
from facelm.errors import UserError
from facelm.losses import get_coord_loss
from facelm.models import HEADS as HEAD_TYPES
from facelm.models import SingleHead, create_model, list_models
from facelm.teacher.train import get_args_parser, multi_head_loss

HEADS = {"300w": 68, "wflw": 98}


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_every_head_predicts_xy_and_confidence(arch):
    model = create_model(arch, heads=HEADS, input_size=64).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"300w": (2, 68, 3), "wflw": (2, 98, 3)}


@pytest.mark.parametrize("head", list(HEAD_TYPES))
@pytest.mark.parametrize("arch", [m for m in list_models() if not m.startswith("resnet")])
def test_students_share_the_head_contract(arch, head):
    model = create_model(arch, heads={"300w": 68}, input_size=112, head=head).eval()
    with torch.no_grad():
        out = SingleHead(model, "300w")(torch.randn(2, 3, 112, 112))
    assert tuple(out.shape) == (2, 68, 3)


def test_model_stats_counts_params_and_macs():
    from facelm.models.stats import model_stats

    stats = model_stats("mobilenetv2_050", {"300w": 68}, 112)
    model = create_model("mobilenetv2_050", heads={"300w": 68}, input_size=112)
    assert stats["params"] == sum(p.numel() for p in model.parameters())
    assert 5 < stats["mmacs"] < 100 and stats["fp32_mb"] > stats["params"] * 4 / 1e6


def test_model_stats_gives_each_model_at_each_input_size(tmp_path):
    from facelm.models.stats import get_args_parser as stats_parser
    from facelm.models.stats import main as stats_main

    args = stats_parser().parse_args(["--models", "mobilenetv2_025", "--input-size", "64", "96",
                                         "--json", str(tmp_path / "stats.json")])
    rows = stats_main(args)
    assert [r["input_size"] for r in rows] == [64, 96]
    assert rows[1]["mmacs"] > rows[0]["mmacs"] * 2
    assert json.loads((tmp_path / "stats.json").read_text())["rows"] == rows


def test_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="resnet18"):
        create_model("resnet19", heads=HEADS)
    assert {"resnet18", "resnet34", "resnet50"} <= set(list_models())


@pytest.mark.parametrize("head", list(HEAD_TYPES))
def test_heads_start_from_the_mean_shape(head):
    model = create_model("resnet18", heads={"300w": 68}, input_size=64, head=head).eval()
    shape = torch.rand(68, 2) * 0.6 + 0.2  # where a crop puts a face's points
    model.heads["300w"].set_mean_shape(shape)
    with torch.no_grad():
        xy = model(torch.zeros(1, 3, 64, 64))["300w"][0, :, :2]
    assert torch.allclose(xy, shape, atol=0.05)


def test_integral_head_points_are_expected_heatmap_positions_inside_the_crop():
    torch.manual_seed(0)
    head = create_model("mobilenetv2_025", heads={"300w": 68}, input_size=64, head="integral").heads["300w"].eval()
    torch.nn.init.normal_(head.heatmap.weight, std=5.0)  # peaked maps, far from the prior
    with torch.no_grad():
        features = torch.randn(3, 256, 2, 2) * 4
        out = head(features)
        maps = head.heatmap(head.decode(features)).flatten(2) + head.log_prior
    weights = torch.softmax(maps, dim=-1)
    assert torch.allclose(out[..., :2], weights @ head.grid, atol=1e-6)
    side = 8  # 4x the 2x2 feature map
    assert out[..., :2].min() >= 0.5 / side and out[..., :2].max() <= 1 - 0.5 / side


def test_a_checkpoint_rebuilds_its_head_type_and_older_ones_the_fc_head(tmp_path):
    model = create_model("mobilenetv2_025", heads={"300w": 68}, input_size=64, head="integral").eval()
    spec = model_spec(model, "mobilenetv2_025", {"300w": "68"})
    loaded, payload = load_model(save_checkpoint(tmp_path / "m.pt", model, spec))
    assert payload["spec"]["head"] == "integral" and loaded.head_type == "integral"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x)["300w"], model(x)["300w"], atol=1e-6)
    older = {k: v for k, v in spec.items() if k != "head"}
    assert build_model(older).head_type == "fc"


def test_each_sample_trains_only_its_own_head():
    torch.manual_seed(0)
    model = create_model("resnet18", heads=HEADS, input_size=64)
    args = get_args_parser().parse_args(["--input-size", "64"])
    batch = {
        "image": torch.randn(4, 3, 64, 64),
        "target": torch.rand(4, 98, 2),
        "weight": torch.ones(4, 98),
        "head": torch.tensor([0, 0, 0, 0]),  # all samples belong to the 68-point head
    }
    loss, _ = multi_head_loss(model, batch, list(HEADS), args, get_coord_loss("l1"))
    loss.backward()
    assert model.heads["300w"].fc.weight.grad.abs().sum() > 0
    assert model.heads["wflw"].fc.weight.grad is None or model.heads["wflw"].fc.weight.grad.abs().sum() == 0
    assert model.trunk.stem[0][0].weight.grad.abs().sum() > 0


def test_checkpoint_round_trip_and_single_head(tmp_path):
    model = create_model("resnet18", heads=HEADS, input_size=64).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, model_spec(model, "resnet18", {"300w": "68", "wflw": "98"}), half=True)
    loaded, payload = load_model(path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(SingleHead(loaded, "wflw")(x), model(x)["wflw"], atol=2e-2)
    assert payload["spec"]["heads"] == {"300w": "68", "wflw": "98"}


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    torch.save({"some": "dict"}, tmp_path / "foreign.pt")
    model = create_model("resnet18", heads={"300w": 68}, input_size=64)
    save_checkpoint(tmp_path / "future.pt", model, model_spec(model, "resnet18", {"300w": "68"}))
    payload = torch.load(tmp_path / "future.pt", weights_only=False)
    payload["version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    payload["version"], payload["spec"]["arch"] = 1, "resnet34"
    torch.save(payload, tmp_path / "wrong_arch.pt")
    for name, message in [("missing.pt", "not found"), ("junk.pt", "not a readable"), ("foreign.pt", "not a facelm"),
                          ("future.pt", "format v99"), ("wrong_arch.pt", "do not fit resnet34")]:
        with pytest.raises(UserError, match=message) as err:
            load_model(tmp_path / name)
        assert "\n" not in str(err.value)


def test_eager_latency_is_timed_on_one_thread(monkeypatch):
    """Every timed call runs on one thread whatever the caller set, and the caller gets its thread count back."""
    from facelm.models import stats

    seen = []

    class Recording(SingleHead):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(torch.get_num_threads())
            return super().forward(x)

    monkeypatch.setattr(stats, "SingleHead", Recording)
    callers = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        timing = stats.eager_latency_ms("mobilenetv2_025", {"300w": 68}, 64, runs=5, warmup=1)
        assert seen == [1] * 6 and timing["threads"] == 1 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(callers)
    assert 0 < timing["eager_min_ms"] <= timing["eager_p50_ms"] <= timing["eager_p90_ms"]
