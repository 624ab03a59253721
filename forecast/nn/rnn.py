"""`LSTM` (with optional projection, LSTMP) and `GRU`: drop-in replacements for torch's modules.

Constructor, parameter names and shapes, gate order, initialisation, forward signature, output
shapes (batched, unbatched, `batch_first`, `PackedSequence`) and error messages follow
`torch.nn.LSTM` / `torch.nn.GRU`, so a state dict loads both ways with `strict=True`.

The stack (this file) -> layer (`layers.py`) -> cell (`cells.py`) is the reference, in public
torch ops. Per layer and direction, one matrix product projects the inputs of every time step,
then a loop does the recurrence. Where `backend` allows (see forecast/nn/fast), `_layer` hands
that layer to the CPU fast path instead: one decision per layer, made by `fast.use_fast`.
"""

import math
import numbers
import warnings

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.rnn import PackedSequence

from forecast.nn import fast, layers
from forecast.nn.dropout import dropout
from forecast.nn.fast import kernels
from forecast.nn.fast.onednn import InputProjection


class _RecurrentBase(nn.Module):
    """What LSTM and GRU share: parameters, argument checks, packing, the layer stack."""

    gates: int  # gate blocks stacked in weight_ih / weight_hh: 4 for LSTM, 3 for GRU

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        _check_sizes(input_size, hidden_size, num_layers, dropout, proj_size)
        # "auto" | "fast" | "reference" (forecast/nn/fast); an attribute, so it can change later
        self.backend = fast.default_backend() if backend is None else fast.check_backend(backend)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self._register_parameters(torch.device(device) if device else None, dtype)
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Features of h (per direction): proj_size when projecting, else hidden_size."""
        return self.proj_size or self.hidden_size

    def _register_parameters(self, device, dtype) -> None:
        # Registration order matches torch's, so `parameters()` lines up for optimisers too.
        kw = {"device": device, "dtype": dtype}
        gate_size = self.gates * self.hidden_size
        for layer in range(self.num_layers):
            layer_input = self.input_size if layer == 0 else self.output_size * self.num_directions
            for suffix in self._suffixes():
                shapes = {
                    "weight_ih": (gate_size, layer_input),
                    "weight_hh": (gate_size, self.output_size),
                }
                if self.bias:
                    shapes.update(bias_ih=(gate_size,), bias_hh=(gate_size,))
                if self.proj_size:
                    shapes["weight_hr"] = (self.proj_size, self.hidden_size)
                for name, shape in shapes.items():
                    param = nn.Parameter(torch.empty(shape, **kw))
                    self.register_parameter(f"{name}_l{layer}{suffix}", param)

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse")[: self.num_directions]

    def reset_parameters(self) -> None:
        """U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)) for every parameter, as torch does."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for param in self.parameters():
            nn.init.uniform_(param, -bound, bound)

    def flatten_parameters(self) -> None:
        """No-op, kept so code written for torch's cuDNN modules runs unchanged."""

    def _param(self, name: str, layer: int, suffix: str) -> Tensor | None:
        return getattr(self, f"{name}_l{layer}{suffix}", None)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s

    # -- the forward pass ------------------------------------------------------------------

    def _forward(self, input, states: list[Tensor] | None):
        """Shared forward: returns (output, final states) in the caller's layout."""
        device_type = (input.data if isinstance(input, PackedSequence) else input).device.type
        if torch.is_autocast_enabled(device_type):
            # Mixed precision (Lightning's 16-mixed / bf16-mixed): the layers before us hand over
            # half-precision values. The recurrence runs in the weights' precision, autocast off:
            # a cell state summed over hundreds of steps in bf16 (8 bits of mantissa) drifts,
            # and the hand-written backward is written for one dtype. The output keeps that
            # precision; the layers after us cast it again as autocast says.
            dtype = self.weight_ih_l0.dtype
            with torch.autocast(device_type, enabled=False):
                return self._forward(
                    input.to(dtype), None if states is None else [s.to(dtype) for s in states]
                )
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, states)
        if input.dim() not in (2, 3):
            raise ValueError(
                f"{type(self).__name__}: Expected input to be 2D or 3D, got {input.dim()}D instead"
            )
        batched = input.dim() == 3
        if not batched:
            input = input.unsqueeze(0 if self.batch_first else 1)
        if states is not None:
            self._check_state_dims(states, batched)
            if not batched:
                states = [s.unsqueeze(1) for s in states]
        x = input.transpose(0, 1) if self.batch_first else input  # [T, B, I]
        output, finals = self._run(x, states, mask=None)
        if self.batch_first:
            output = output.transpose(0, 1)
        if not batched:
            output = output.squeeze(0 if self.batch_first else 1)
            finals = [s.squeeze(1) for s in finals]
        return output, finals

    def _forward_packed(self, packed: PackedSequence, states: list[Tensor] | None):
        data, batch_sizes, sorted_indices, unsorted_indices = packed
        # Sequences in a PackedSequence are sorted by length, longest first, so at step t the
        # real rows are the first batch_sizes[t]: that is the mask.
        batch = int(batch_sizes[0])
        rows = torch.arange(batch, device=data.device)
        mask = rows < batch_sizes.to(data.device).unsqueeze(1)  # [T, B]
        x = data.new_zeros(len(batch_sizes), batch, data.size(-1)).index_put((mask,), data)
        if states is not None and sorted_indices is not None:
            states = [s.index_select(1, sorted_indices) for s in states]
        output, finals = self._run(x, states, mask=mask.unsqueeze(2))
        if unsorted_indices is not None:
            finals = [s.index_select(1, unsorted_indices) for s in finals]
        # Boolean indexing walks [T, B] row-major: exactly the packed order.
        packed_out = PackedSequence(output[mask], batch_sizes, sorted_indices, unsorted_indices)
        return packed_out, finals

    def _run(self, x: Tensor, states: list[Tensor] | None, mask: Tensor | None):
        """x: [T, B, I] time-major. Runs the layer stack; returns (output, final states)."""
        self._check_input(x)
        batch = x.size(1)
        if states is None:
            states = self._zero_states(batch, x)
        else:
            self._check_state_sizes(states, batch)
        finals: list[list[Tensor]] = [[] for _ in states]
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout and self.training:
                x = dropout(x, self.dropout, training=True)
            outputs = []
            for direction, suffix in enumerate(self._suffixes()):
                k = layer * self.num_directions + direction
                out, new = self._layer(x, [s[k] for s in states], layer, suffix, mask)
                outputs.append(out)
                for final, state in zip(finals, new, strict=True):
                    final.append(state)
            x = outputs[0] if len(outputs) == 1 else torch.cat(outputs, 2)  # [T, B, D * P]
        return x, [torch.stack(final) for final in finals]

    def _layer(self, x, states, layer, suffix, mask):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- argument checks, with torch's wording ---------------------------------------------

    def _state_sizes(self, batch: int) -> list[tuple[int, int, int]]:
        raise NotImplementedError  # pragma: no cover - abstract

    def _zero_states(self, batch: int, x: Tensor) -> list[Tensor]:
        return [x.new_zeros(size) for size in self._state_sizes(batch)]

    def _check_input(self, x: Tensor) -> None:
        if torch.jit.is_tracing():
            return  # the tracer fixes the sizes it is shown; the checks would only warn
        weight_dtype = self.weight_ih_l0.dtype
        if x.dtype != weight_dtype:
            raise ValueError(
                f"RNN input dtype ({x.dtype}) does not match weight dtype ({weight_dtype}). "
                f"Convert input: input.to({weight_dtype}), or convert model: model.to({x.dtype})"
            )
        if x.size(-1) != self.input_size:
            raise RuntimeError(
                "input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {x.size(-1)}"
            )

    def _check_state_dims(self, states: list[Tensor], batched: bool) -> None:
        want = 3 if batched else 2
        if all(s.dim() == want for s in states):
            return
        kind = "batched 3-D" if batched else "unbatched 2-D"
        dims = ", ".join(f"{s.dim()}-D" for s in states)
        if len(states) == 1:
            raise RuntimeError(
                f"For {kind} input, hx should also be {want}-D but got {dims} tensor"
            )
        raise RuntimeError(
            f"For {kind} input, hx and cx should also be {want}-D but got ({dims}) tensors"
        )

    def _check_state_sizes(self, states: list[Tensor], batch: int) -> None:
        if torch.jit.is_tracing():
            return
        for index, (state, size) in enumerate(zip(states, self._state_sizes(batch), strict=True)):
            if tuple(state.shape) != size:
                which = "hidden" if len(states) == 1 else f"hidden[{index}]"
                raise RuntimeError(f"Expected {which} size {size}, got {list(state.shape)}")


class LSTM(_RecurrentBase):
    """Drop-in `torch.nn.LSTM`: gates i, f, g, o; `proj_size > 0` makes it an LSTMP.

    forward(input, hx=None) -> (output, (h_n, c_n)), with h_n [D * num_layers, B, proj_size or
    hidden_size] and c_n [D * num_layers, B, hidden_size].
    """

    gates = 4

    def forward(self, input, hx: tuple[Tensor, Tensor] | None = None):
        output, (h_n, c_n) = self._forward(input, None if hx is None else list(hx))
        return output, (h_n, c_n)

    def _state_sizes(self, batch: int) -> list[tuple[int, int, int]]:
        layers = self.num_layers * self.num_directions
        return [(layers, batch, self.output_size), (layers, batch, self.hidden_size)]

    def _layer(self, x, states, layer, suffix, mask):
        w_ih = self._param("weight_ih", layer, suffix)
        b_ih, b_hh = self._param("bias_ih", layer, suffix), self._param("bias_hh", layer, suffix)
        # Both biases are added outside the gate nonlinearities, so fold them into one.
        bias = None if b_ih is None else b_ih + b_hh
        args = [
            states[0],
            states[1],
            self._param("weight_hh", layer, suffix),
            self._param("weight_hr", layer, suffix),
        ]
        reverse = suffix == "_reverse"
        if fast.use_fast(self.backend, [x, w_ih, *args], mask):
            xw = InputProjection.apply(x, w_ih, bias)  # [T, B, 4H]
            out, h, c = kernels.lstm_layer(xw, *args, reverse)
        else:
            xw = F.linear(x, w_ih, bias)  # [T, B, 4H]
            out, h, c = layers.lstm_layer(xw, *args, reverse, mask)
        return out, (h, c)


class GRU(_RecurrentBase):
    """Drop-in `torch.nn.GRU`: gates r, z, n with `b_hn` inside the reset product.

    forward(input, hx=None) -> (output, h_n), h_n [D * num_layers, B, hidden_size].
    """

    gates = 3

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        backend: str | None = None,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            proj_size=0,
            device=device,
            dtype=dtype,
            backend=backend,
        )

    def forward(self, input, hx: Tensor | None = None):
        output, (h_n,) = self._forward(input, None if hx is None else [hx])
        return output, h_n

    def _state_sizes(self, batch: int) -> list[tuple[int, int, int]]:
        return [(self.num_layers * self.num_directions, batch, self.hidden_size)]

    def _layer(self, x, states, layer, suffix, mask):
        w_ih, b_ih = self._param("weight_ih", layer, suffix), self._param("bias_ih", layer, suffix)
        args = [
            states[0],
            self._param("weight_hh", layer, suffix),
            self._param("bias_hh", layer, suffix),
        ]
        reverse = suffix == "_reverse"
        if fast.use_fast(self.backend, [x, w_ih, *args], mask):
            xw = InputProjection.apply(x, w_ih, b_ih)  # [T, B, 3H]
            out, h = kernels.gru_layer(xw, *args, reverse)
        else:
            xw = F.linear(x, w_ih, b_ih)  # [T, B, 3H]
            out, h = layers.gru_layer(xw, *args, reverse, mask)
        return out, (h,)


def _check_sizes(input_size, hidden_size, num_layers, dropout, proj_size) -> None:
    """The constructor checks of torch's RNNBase, with its messages."""
    if (
        not isinstance(dropout, numbers.Number)
        or isinstance(dropout, bool)
        or not 0 <= dropout <= 1
    ):
        raise ValueError(
            "dropout should be a number in range [0, 1] representing the probability of an "
            "element being zeroed"
        )
    if dropout > 0 and num_layers == 1:
        warnings.warn(
            "dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
            f"expects num_layers greater than 1, but got dropout={dropout} and "
            f"num_layers={num_layers}",
            stacklevel=3,
        )
    for name, value in (
        ("input_size", input_size),
        ("hidden_size", hidden_size),
        ("num_layers", num_layers),
    ):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
        if value <= 0:
            raise ValueError(f"{name} must be greater than zero")
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if proj_size >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")
