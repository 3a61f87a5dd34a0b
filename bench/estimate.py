"""A projection of latency to a mid-range phone CPU from a model's multiply-accumulates. An estimate, not a
measurement: it is printed only where the bench runs on x86, and the assumption is printed with it."""
from __future__ import annotations

import platform

import numpy as np

from facelm.formats import ExportedModel

A76_GFLOPS = 15.0
A76_ASSUMPTION = ("one Cortex-A76 core (the big core of a mid-range phone, ~2.4 GHz) sustaining {gflops:g} GFLOP/s fp32, "
                  "about 40% of its 38.4 GFLOP/s NEON peak; 1 MAC = 2 FLOP; runtime overhead, memory stalls and int8 "
                  "speed-ups are not modelled")


def on_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def onnx_macs(path) -> int | None:
    """MACs at batch 1 of the Conv, Gemm and MatMul nodes of an ONNX graph (None without the onnx package)."""
    try:
        import onnx
    except ImportError:
        return None
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*graph.value_info, *graph.output, *graph.input]}
    shapes.update({t.name: list(t.dims) for t in graph.initializer})
    total = 0
    for node in graph.node:
        if node.op_type == "Conv":  # output C*H*W times (C_in / groups) * kh * kw
            total += int(np.prod(shapes[node.output[0]][1:])) * int(np.prod(shapes[node.input[1]][1:]))
        elif node.op_type in ("Gemm", "MatMul") and node.input[1] in shapes:
            total += int(np.prod(shapes[node.input[1]]))
    return total


def model_macs(model: ExportedModel, models: list[ExportedModel]) -> tuple[int | None, str]:
    """MACs from the sidecar, else counted in an ONNX export of the same checkpoint, with where they came from."""
    if "macs" in model.meta["model"]:
        return int(model.meta["model"]["macs"]), "sidecar"
    checkpoint = model.meta["model"]["checkpoint_sha256"]
    for other in models:
        if other.meta["model"]["checkpoint_sha256"] == checkpoint and other.path.suffix == ".onnx":
            macs = onnx_macs(other.path)
            if macs is not None:
                return macs, f"counted in the graph of {other.path.name}: no 'macs' in the sidecar"
    return None, "no 'macs' in the sidecar and no ONNX export with the onnx package to count them"


def mobile_estimates(models: list[ExportedModel], budget_ms: float, gflops: float = A76_GFLOPS) -> list[dict]:
    """One projection per checkpoint (all its formats share the network)."""
    rows, seen = [], set()
    for model in models:
        checkpoint = model.meta["model"]["checkpoint_sha256"]
        if checkpoint in seen:
            continue
        seen.add(checkpoint)
        macs, source = model_macs(model, models)
        row = {"model": model.label, "macs_m": None if macs is None else macs / 1e6, "macs_source": source, "ms": None}
        if macs is not None:
            row["ms"] = 2 * macs / (gflops * 1e9) * 1e3
            row["within_budget"] = row["ms"] <= budget_ms
        rows.append(row)
    return rows


def estimate_lines(rows: list[dict], budget_ms: float, gflops: float = A76_GFLOPS) -> list[str]:
    lines = ["Mobile estimate (a projection, not a measurement): " + A76_ASSUMPTION.format(gflops=gflops) + "."]
    for r in rows:
        if r["ms"] is None:
            lines.append(f"  {r['model']}: no estimate ({r['macs_source']})")
        else:
            verdict = "within" if r["within_budget"] else "over"
            lines.append(f"  {r['model']}: {r['macs_m']:.2f} M MACs ({r['macs_source']}) -> ~{r['ms']:.2f} ms, "
                         f"{verdict} the {budget_ms:g} ms budget")
    return lines
