"""Checkpoint file contract: what a facelm checkpoint holds and how it is checked on load."""
from __future__ import annotations

from pathlib import Path

import torch

from facelm import __version__
from facelm.errors import UserError
from facelm.models import LandmarkNet, create_model
from facelm.schemes import get_scheme

CHECKPOINT_KIND = "facelm-checkpoint"
CHECKPOINT_VERSION = 1


def model_spec(model: LandmarkNet, arch: str, head_schemes: dict[str, str]) -> dict:
    """What is needed to rebuild the network: architecture, head type, heads with their schemes, input size."""
    return {"arch": arch, "head": model.head_type, "heads": dict(head_schemes), "input_size": model.input_size}


def save_checkpoint(path: Path, model: LandmarkNet, spec: dict, half: bool = False, **extra) -> Path:
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    payload = {"kind": CHECKPOINT_KIND, "version": CHECKPOINT_VERSION, "facelm": __version__, "spec": spec, "model": state}
    payload.update(extra)
    tmp = Path(path).with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return Path(path)


def read_checkpoint(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UserError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}); re-download or re-train it") from None
    if not isinstance(payload, dict) or payload.get("kind") != CHECKPOINT_KIND:
        raise UserError(f"{path}: not a facelm checkpoint; pass a file written by 'facelm train-teacher' or 'weights/'")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise UserError(
            f"{path}: checkpoint format v{payload.get('version')} but this facelm reads v{CHECKPOINT_VERSION}; "
            "use the facelm release that wrote it"
        )
    return payload


def build_model(spec: dict) -> LandmarkNet:
    heads = {name: get_scheme(scheme).n_points for name, scheme in spec["heads"].items()}
    # checkpoints written before the head type was recorded all have the FC head
    return create_model(spec["arch"], heads=heads, input_size=spec["input_size"], head=spec.get("head", "fc"))


def load_model(path: Path, use_ema: bool = True) -> tuple[LandmarkNet, dict]:
    """The network in eval mode, fp32, with EMA weights when the checkpoint has them."""
    payload = read_checkpoint(path)
    model = build_model(payload["spec"])
    state = payload.get("ema") if use_ema and payload.get("ema") else payload["model"]
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not fit {payload['spec']['arch']}: {str(exc).splitlines()[0]}") from None
    return model.eval(), payload
