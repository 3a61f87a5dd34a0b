"""Mixed precision for training: which autocast dtype a device runs fastest, and the context that applies it.

Weights, optimizer state and the loss stay fp32; only the forward pass runs in the lower precision. On a CPU, bf16
pays only with native bf16 instructions (AVX512-BF16 or AMX), and by how much depends on the model and the batch:
measured on a 2-core AMD EPYC with avx512_bf16, ResNet-18 at 112 px, batch 64, 113 img/s in bf16 against 66 in fp32;
the depthwise mobilenetv2_035 student, batch 256, 261 against 221, but at batch 128 with the optimizer step 217
against 230. So `auto` times one step of the run's own model at its own batch in each.
"""
from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path
from typing import Callable

import torch

from facelm.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16_flags() -> list[str]:
    """The native bf16 instruction sets this CPU reports (Linux /proc/cpuinfo; none elsewhere)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in _CPU_BF16_FLAGS if flag in flags]


def resolve_precision(requested: str, device: str,
                      seconds_per_step: Callable[[str], float] | None = None) -> tuple[str, str]:
    """The precision to train in and why: `auto` picks bf16 on a CUDA GPU that has it, and on a CPU with native bf16
    where it is faster for this model (`seconds_per_step(precision)`, when given, times one training step)."""
    kind = torch.device(device).type
    if requested == "fp16" and kind != "cuda":
        raise UserError("--precision fp16 needs --device cuda (fp16 autocast with loss scaling); use bf16 or fp32 on a CPU")
    if requested != "auto":
        return requested, "as requested"
    if kind == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", f"{torch.cuda.get_device_name(0)} supports bf16"
        return "fp16", f"{torch.cuda.get_device_name(0)} has no bf16"
    flags = cpu_bf16_flags()
    if not flags:
        return "fp32", "CPU has no native bf16 (avx512_bf16/amx_bf16), where bf16 is emulated and slower"
    if seconds_per_step is None:
        return "bf16", f"CPU has {', '.join(flags)}"
    timed = {precision: seconds_per_step(precision) for precision in ("fp32", "bf16")}
    faster = min(timed, key=timed.get)
    return faster, (f"CPU has {', '.join(flags)}; one training step of this model took {timed['bf16']:.3f} s in bf16 "
                    f"and {timed['fp32']:.3f} s in fp32")


def step_timer(model: torch.nn.Module, batch_size: int, size: int, device: str) -> Callable[[str], float]:
    """Seconds of one forward and backward pass of a copy of `model` on a random batch, in a given precision, with the
    heads in fp32 as training runs them (the median of three, after one to warm up); `model` is left untouched."""
    probe = copy.deepcopy(model).to(device).train()
    batch = torch.randn(batch_size, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)

    def seconds(precision: str) -> float:
        times = []
        for _ in range(4):
            start = time.perf_counter()
            with autocast(precision, device):
                features = probe.forward_features(batch)
                outputs = [head_output(probe, features, head) for head in probe.heads]
            sum(out.abs().mean() for out in outputs).backward()
            probe.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
        return sorted(times[1:])[1]

    return seconds


def autocast(precision: str, device: str) -> contextlib.AbstractContextManager:
    """The forward-pass context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=_DTYPES[precision])


def grad_scaler(precision: str, device: str) -> torch.amp.GradScaler:
    """Loss scaling, which only fp16 needs (disabled otherwise, when it passes gradients through unchanged)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")


def head_output(model: torch.nn.Module, features: torch.Tensor, head: str) -> torch.Tensor:
    """One head's (B, K, 3) output in fp32 even inside a bf16/fp16 autocast: the trunk carries the compute, while
    the heads' read-outs (the mean-shape add, the soft-argmax over cell positions) would round points to about half a
    pixel in bf16."""
    with torch.autocast(features.device.type, enabled=False):
        return model.forward_head(features.float(), head)
