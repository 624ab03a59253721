"""Recurrent backbones in pure torch (no Lightning, Hydra or pandas).

cell (`cells.py`) -> layer (`layers.py`) -> stack (`rnn.py`: `LSTM`, `GRU`) is the reference;
`fast/` is the CPU fast path, chosen per layer by the modules' `backend`.
"""

from forecast.nn.backbone import backbone_output_size, broadcast_step, build_backbone
from forecast.nn.dropout import Dropout
from forecast.nn.fast import BACKENDS
from forecast.nn.rnn import GRU, LSTM

__all__ = [
    "BACKENDS",
    "GRU",
    "LSTM",
    "Dropout",
    "backbone_output_size",
    "broadcast_step",
    "build_backbone",
]
