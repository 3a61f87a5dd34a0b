"""Model registry: names map to constructor functions, nothing more."""
from __future__ import annotations

from typing import Callable

from torch import nn

from facelm.errors import UserError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__} registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, **kwargs) -> nn.Module:
    if name not in _MODELS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(list_models())}")
    return _MODELS[name](**{k: v for k, v in kwargs.items() if v is not None})
