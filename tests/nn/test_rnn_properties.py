"""Property tests: over random sizes our modules agree with torch's in shape and value."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rnn_helpers import flat_states, make_pair


@st.composite
def configurations(draw):
    cell = draw(st.sampled_from(("lstm", "lstmp", "gru")))
    hidden = draw(st.integers(2 if cell == "lstmp" else 1, 7))
    kwargs = {
        "num_layers": draw(st.integers(1, 3)),
        "bidirectional": draw(st.booleans()),
        "batch_first": draw(st.booleans()),
        "bias": draw(st.booleans()),
    }
    if cell == "lstmp":
        kwargs["proj_size"] = draw(st.integers(1, hidden - 1))
    sizes = {
        "input": draw(st.integers(1, 5)),
        "batch": draw(st.integers(1, 4)),
        "steps": draw(st.integers(1, 6)),
    }
    return cell, hidden, kwargs, sizes


@settings(max_examples=40, deadline=None)
@given(configurations(), st.integers(0, 2**16))
def test_random_sizes_match_torch(configuration, seed):
    cell, hidden, kwargs, sizes = configuration
    ours, ref = make_pair(cell, sizes["input"], hidden, seed=seed, **kwargs)
    shape = (sizes["steps"], sizes["batch"], sizes["input"])
    if kwargs["batch_first"]:
        shape = (shape[1], shape[0], shape[2])
    x = torch.randn(shape, dtype=torch.float64)
    out, hidden_ours = ours(x)
    ref_out, hidden_ref = ref(x)
    assert out.shape == ref_out.shape
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=0)
    for a, b in zip(flat_states(hidden_ours), flat_states(hidden_ref), strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
