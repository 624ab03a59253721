"""The worked examples of the classic tutorials, reproduced with our modules and cells."""

import torch
from rnn_helpers import make_pair
from torch import nn

from forecast.nn import LSTM
from forecast.nn.cells import gru_cell, lstm_cell


def test_stepping_one_element_at_a_time_equals_the_whole_sequence():
    # The PyTorch "Sequence models and LSTMs" tutorial: nn.LSTM(3, 3) over 5 inputs.
    torch.manual_seed(1)
    lstm = LSTM(3, 3)
    inputs = [torch.randn(1, 3) for _ in range(5)]
    hidden = (torch.randn(1, 1, 3), torch.randn(1, 1, 3))
    stepped = hidden
    step_outputs = []
    for element in inputs:
        out, stepped = lstm(element.view(1, 1, -1), stepped)
        step_outputs.append(out)
    whole, final = lstm(torch.cat(inputs).view(len(inputs), 1, -1), hidden)
    torch.testing.assert_close(torch.cat(step_outputs), whole)
    torch.testing.assert_close(stepped[0], final[0])
    torch.testing.assert_close(stepped[1], final[1])
    assert not torch.allclose(whole[0], whole[-1])  # the state really evolves


def test_projection_shapes_of_the_lstmp_example():
    lstm = LSTM(input_size=4, hidden_size=5, proj_size=3, batch_first=True)
    output, (h_n, c_n) = lstm(torch.randn(2, 3, 4))
    assert output.shape == (2, 3, 3)
    assert h_n.shape == (1, 2, 3)
    assert c_n.shape == (1, 2, 5)
    assert lstm.weight_hr_l0.shape == (3, 5)
    torch.testing.assert_close(output[:, -1], h_n[0])


def test_two_stacked_lstm_cells_equal_a_two_layer_lstm():
    torch.manual_seed(2)
    cells = [nn.LSTMCell(4, 6), nn.LSTMCell(6, 6)]
    lstm = LSTM(4, 6, num_layers=2)
    state = {
        f"{name}_l{layer}": value
        for layer, cell in enumerate(cells)
        for name, value in cell.state_dict().items()
    }
    lstm.load_state_dict(state, strict=True)
    x = torch.randn(7, 3, 4)
    states = [(torch.zeros(3, 6), torch.zeros(3, 6)) for _ in cells]
    outputs = []
    for x_t in x:
        for layer, cell in enumerate(cells):
            states[layer] = cell(x_t, states[layer])
            x_t = states[layer][0]
        outputs.append(x_t)
    output, (h_n, c_n) = lstm(x)
    torch.testing.assert_close(output, torch.stack(outputs))
    torch.testing.assert_close(h_n, torch.stack([h for h, _ in states]))
    torch.testing.assert_close(c_n, torch.stack([c for _, c in states]))


def test_cell_functions_equal_torchs_cells():
    torch.manual_seed(3)
    x, h, c = torch.randn(5, 4), torch.randn(5, 6), torch.randn(5, 6)
    lstm = nn.LSTMCell(4, 6)
    h1, c1 = lstm_cell(x, h, c, lstm.weight_ih, lstm.weight_hh, lstm.bias_ih, lstm.bias_hh)
    h2, c2 = lstm(x, (h, c))
    torch.testing.assert_close(h1, h2)
    torch.testing.assert_close(c1, c2)
    gru = nn.GRUCell(4, 6)
    torch.testing.assert_close(
        gru_cell(x, h, gru.weight_ih, gru.weight_hh, gru.bias_ih, gru.bias_hh), gru(x, h)
    )


def test_projected_cell_equals_one_step_of_torchs_lstmp():
    ours, ref = make_pair("lstmp", 4, 6, dtype=torch.float64)
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    h, c = torch.randn(3, 3, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    weights = [getattr(ref, f"weight_{name}_l0") for name in ("ih", "hh")]
    h1, c1 = lstm_cell(x[0], h, c, *weights, ref.bias_ih_l0, ref.bias_hh_l0, ref.weight_hr_l0)
    _, (h2, c2) = ref(x, (h[None], c[None]))
    torch.testing.assert_close(h1, h2[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(c1, c2[0], atol=1e-12, rtol=0)
