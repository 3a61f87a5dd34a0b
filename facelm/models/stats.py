"""`facelm model-stats`: parameters, multiply-accumulates and fp32 size of each registered model, as JSON + table."""
from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from facelm.models._registry import create_model, list_models
from facelm.models.heads import HEADS, SingleHead
from facelm.runs import write_json


def model_stats(name: str, heads: dict[str, int], input_size: int, head_type: str = "fc") -> dict:
    """Stats of the single-head inference graph (the first head, of `head_type`), as shipped."""
    model = create_model(name, heads=heads, input_size=input_size, head=head_type).eval()
    head = next(iter(heads))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        SingleHead(model, head)(torch.zeros(1, 3, input_size, input_size))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    params = sum(p.numel() for p in model.trunk.parameters()) + sum(p.numel() for p in model.heads[head].parameters())
    return {"model": name, "input_size": input_size, "head_type": head_type, "params": params,
            "mmacs": counter.get_total_flops() / 2e6,
            "fp32_mb": len(buffer.getvalue()) / 1e6}


def eager_latency_ms(name: str, heads: dict[str, int], input_size: int, head_type: str = "fc", runs: int = 200,
                     warmup: int = 20) -> dict:
    """PyTorch eager latency of the single-head graph at batch 1 on one thread: p50 / p90 / min ms. The caller's
    thread count is restored."""
    model = SingleHead(create_model(name, heads=heads, input_size=input_size, head=head_type).eval(), next(iter(heads)))
    x = torch.zeros(1, 3, input_size, input_size)
    times = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for i in range(warmup + runs):
                start = time.perf_counter()
                model(x)
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1e3)
        timed_on = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
    p50, p90 = np.percentile(times, [50, 90])
    return {"eager_p50_ms": float(p50), "eager_p90_ms": float(p90), "eager_min_ms": float(min(times)),
            "threads": timed_on}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("facelm model-stats", add_help=add_help)
    p.add_argument("--models", nargs="+", default=list_models(), help="models (default: all registered)")
    p.add_argument("--points", type=int, default=68, help="points of the shipped head (default: 68)")
    p.add_argument("--input-size", type=int, nargs="+", default=[112],
                   help="input size(s), each model at each (default: 112)")
    p.add_argument("--head-type", nargs="+", default=["fc"], choices=list(HEADS),
                   help="landmark head(s) to count, each model with each (default: fc)")
    p.add_argument("--time", action="store_true", help="also time PyTorch eager at batch 1 on one thread (p50/p90/min ms)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    return p


def main(args: argparse.Namespace) -> list[dict]:
    rows = [model_stats(name, {"head": args.points}, size, head_type)
            for size in args.input_size for name in args.models for head_type in args.head_type]
    if args.time:
        rows = [{**r, **eager_latency_ms(r["model"], {"head": args.points}, r["input_size"], r["head_type"])}
                for r in rows]
    print("| model | px | head | params | MMACs | fp32 MB |" + (" eager p50 ms | p90 ms | min ms |" if args.time else ""))
    print("|---|---|---|---|---|---|" + ("---|---|---|" if args.time else ""))
    for r in rows:
        timing = f" {r['eager_p50_ms']:.3f} | {r['eager_p90_ms']:.3f} | {r['eager_min_ms']:.3f} |" if args.time else ""
        print(f"| {r['model']} | {r['input_size']} | {r['head_type']} | {r['params'] / 1e6:.3f} M | {r['mmacs']:.1f} | {r['fp32_mb']:.2f} |{timing}")
    if args.json:
        write_json(args.json, {"rows": rows})
    return rows
