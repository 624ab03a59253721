"""Recurrent backbones in pure torch (no Lightning, Hydra or pandas)."""

from forecast.nn.backbone import backbone_output_size, build_backbone

__all__ = ["backbone_output_size", "build_backbone"]
