"""Mixed precision for training: which autocast dtype a device runs fastest, and the context that applies it.

Weights, optimizer state and the loss stay fp32; only the forward pass runs in the lower precision. On a CPU, bf16
pays only with native bf16 instructions (AVX512-BF16 or AMX): measured on a 2-core AMD EPYC with avx512_bf16,
ResNet-18 at 112 px trains at 121 img/s in bf16 against 69 img/s in fp32. Without them, bf16 is emulated and slower.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

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


def resolve_precision(requested: str, device: str) -> tuple[str, str]:
    """The precision to train in and why: `auto` picks bf16 on a CPU with native bf16 or a CUDA GPU that has it."""
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
    if flags:
        return "bf16", f"CPU has {', '.join(flags)}"
    return "fp32", "CPU has no native bf16 (avx512_bf16/amx_bf16), where bf16 is emulated and slower"


def autocast(precision: str, device: str) -> contextlib.AbstractContextManager:
    """The forward-pass context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=_DTYPES[precision])


def grad_scaler(precision: str, device: str) -> torch.amp.GradScaler:
    """Loss scaling, which only fp16 needs (disabled otherwise, when it passes gradients through unchanged)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")
