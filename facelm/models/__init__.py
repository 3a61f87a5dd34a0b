"""Model families; importing this package registers them all."""
from facelm.models import mobilenetv2, mobilenetv3, resnet, shufflenetv2  # noqa: F401  (register the families)
from facelm.models._registry import create_model, list_models, register_model
from facelm.models.heads import HEADS, LandmarkHead, LandmarkNet, SingleHead

__all__ = ["create_model", "list_models", "register_model", "HEADS", "LandmarkHead", "LandmarkNet", "SingleHead"]
