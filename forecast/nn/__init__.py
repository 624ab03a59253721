"""Recurrent backbones in pure torch (no Lightning, Hydra or pandas)."""

from forecast.nn.backbone import backbone_output_size, broadcast_step, build_backbone
from forecast.nn.dropout import Dropout
from forecast.nn.rnn import GRU, LSTM

__all__ = ["GRU", "LSTM", "Dropout", "backbone_output_size", "broadcast_step", "build_backbone"]
