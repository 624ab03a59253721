"""Build a recurrent backbone from (cell, impl, sizes): ours or torch's fused module."""

from torch import nn

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
    if impl == "custom":
        raise NotImplementedError("impl='custom' arrives with the recurrent core (issue 5)")
    kwargs = dict(
        input_size=input_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        bias=bias,
        batch_first=batch_first,
        dropout=dropout,
        bidirectional=bidirectional,
    )
    if cell == "gru":
        return nn.GRU(**kwargs)
    return nn.LSTM(proj_size=proj_size, **kwargs)


def backbone_output_size(rnn: nn.Module) -> int:
    """Features per time step of the backbone's output."""
    per_direction = getattr(rnn, "proj_size", 0) or rnn.hidden_size
    return per_direction * (2 if rnn.bidirectional else 1)
