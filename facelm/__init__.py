"""facelm: face-landmark training, distillation and mobile deployment."""

__version__ = "0.1.0"
