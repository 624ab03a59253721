"""Build a recurrent backbone from (cell, impl, sizes): ours or torch's fused module."""

from torch import nn

from forecast.nn.rnn import GRU, LSTM

CELLS = ("lstm", "lstmp", "gru")
IMPLS = ("custom", "torch")


def build_backbone(
    cell: str,
    impl: str = "torch",
    *,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    proj_size: int = 0,
    dropout: float = 0.0,
    bidirectional: bool = False,
    batch_first: bool = True,
    bias: bool = True,
) -> nn.Module:
    """Return an `nn.LSTM`-compatible (or `nn.GRU`-compatible) module.

    `impl="custom"` gives `forecast.nn.LSTM` / `GRU`, `impl="torch"` torch's fused modules;
    both have the same parameter names and shapes, so their state dicts are interchangeable.

    `cell="lstmp"` is an LSTM with a projection and needs `proj_size > 0`; `lstm` and `gru`
    take no projection.
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if cell == "lstmp" and proj_size <= 0:
        raise ValueError("cell='lstmp' needs proj_size > 0 (the projected state size)")
    if cell in ("lstm", "gru") and proj_size != 0:
        raise ValueError(f"cell={cell!r} takes no projection: use cell='lstmp' for proj_size > 0")
    kwargs = dict(
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        bias=bias,
        batch_first=batch_first,
        dropout=dropout,
        bidirectional=bidirectional,
    )
    gru, lstm = (GRU, LSTM) if impl == "custom" else (nn.GRU, nn.LSTM)
    if cell == "gru":
        return gru(**kwargs)
    return lstm(proj_size=proj_size, **kwargs)


def backbone_output_size(rnn: nn.Module) -> int:
    """Features per time step of the backbone's output."""
    per_direction = getattr(rnn, "proj_size", 0) or rnn.hidden_size
    return per_direction * (2 if rnn.bidirectional else 1)
