"""The Core ML reference executor: it runs saved ML Programs of every student family like PyTorch does."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facelm.checkpoint import model_spec
from facelm.contract import artefact_meta, format_meta
from facelm.errors import UserError
from facelm.formats import get_format
from facelm.models import SingleHead

ct = pytest.importorskip("coremltools", reason="Core ML toolchain not installed: pip install 'facelm[export]'")

from test_export import lively_student  # noqa: E402

from facelm.coreml_reference import MLProgram, load_reference  # noqa: E402
from facelm.export.exporters import coreml_program, deploy_model, save_mlpackage  # noqa: E402


def _student(arch: str, head: str = "fc") -> torch.nn.Module:
    net = lively_student(arch, head=head)
    net.spec = model_spec(net, arch, {"300w": "68"})
    return net


def _package(net, precision: str, path):
    model = deploy_model(SingleHead(net, "300w")).eval()
    meta = format_meta(artefact_meta(net.spec, "300w", "0" * 64, {}), get_format("coreml_fp16"))
    return save_mlpackage(coreml_program(model, torch.zeros(1, 3, 64, 64), precision), path, json.dumps(meta))


def _reference_and_torch(net, package) -> tuple[np.ndarray, np.ndarray]:
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = SingleHead(net, "300w").eval()(x).numpy()
    return load_reference(package)(x.numpy()), expected


@pytest.mark.parametrize("arch", ["mobilenetv2_025", "mobilenetv2_050", "shufflenetv2_050", "mobilenetv3_small"])
def test_fp32_program_matches_pytorch(arch, tmp_path):
    net = _student(arch)
    out, expected = _reference_and_torch(net, _package(net, "fp32", tmp_path / "m.mlpackage"))
    assert out.shape == expected.shape == (3, 68, 3)
    assert np.abs(out - expected).max() < 1e-6


def test_integral_head_program_matches_pytorch(tmp_path):
    """Upsampling, the softmax over each heatmap and the confidence read-out run like PyTorch."""
    net = _student("mobilenetv2_025", head="integral")
    out, expected = _reference_and_torch(net, _package(net, "fp32", tmp_path / "m.mlpackage"))
    assert out.shape == expected.shape == (3, 68, 3)
    assert np.abs(out - expected).max() < 1e-5


def test_fp16_and_w8_programs_are_close_and_really_reduced(tmp_path):
    import coremltools.optimize.coreml as cto

    net = _student("mobilenetv3_small")
    fp16 = _package(net, "fp16", tmp_path / "fp16.mlpackage")
    out16, expected = _reference_and_torch(net, fp16)
    assert 1e-5 < np.abs(out16 - expected).max() < 1e-3  # fp16 storage is emulated, not skipped
    config = cto.OptimizationConfig(cto.OpLinearQuantizerConfig(mode="linear_symmetric", granularity="per_channel",
                                                                weight_threshold=0))
    quantized = cto.linear_quantize_weights(ct.models.MLModel(str(fp16), skip_model_load=True), config)
    w8 = save_mlpackage(quantized, tmp_path / "w8.mlpackage", quantized.user_defined_metadata["facelm"])
    out8, _ = _reference_and_torch(net, w8)
    assert np.abs(out8 - expected).max() < 1e-2 and np.abs(out8 - out16).max() > 1e-4


def test_an_unimplemented_op_is_named(tmp_path):
    from coremltools.proto import Model_pb2

    package = _package(_student("mobilenetv2_025"), "fp32", tmp_path / "m.mlpackage")
    spec_file = package / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_file.read_bytes())
    function = spec.mlProgram.functions["main"]
    op = next(op for op in function.block_specializations[function.opset].operations if op.type == "relu")
    op.type = "gelu"
    spec_file.write_bytes(spec.SerializeToString())
    with pytest.raises(UserError, match="op\\(s\\) gelu not implemented by the reference executor"):
        MLProgram(package)
