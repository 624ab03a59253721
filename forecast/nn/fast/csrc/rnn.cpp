// The LSTM (optionally projected) and GRU layer loops in C++: forward and hand-written backward.
//
// The reference loop of forecast/nn/layers.py, differentiated by hand, without the interpreter
// between the steps and with the gate arithmetic of a step fused into one pass over [B, H]: per
// step, one matrix product (oneDNN with a prepacked weight where the caller passes one, else
// addmm) and one loop that reads the four gate pre-activations and the cell state once. torch's
// own CPU path runs ~8 separate elementwise kernels per step, each a pass over memory, plus
// dispatcher overhead.
//
// float32 uses vectorisable exp/tanh approximations (Cephes' single-precision polynomials,
// about 2 ulp); float64 uses <cmath> so that float64 results match torch to rounding.
// Compiled on first use by forecast/nn/fast/build.py; every entry point has a pure torch
// fallback (the reference).

// ATen and torch's pybind11 casters only: <torch/extension.h> adds the whole C++ frontend
// (modules, optimisers), and the build took 48 s with it against 30 s without
#include <ATen/ATen.h>
#include <torch/csrc/utils/pybind.h>

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

using at::Tensor;

// Elements of a step's [B, H] that make a thread's share worth waking it for: at 64 x 128,
// 512 (rows of 4) measured 30% faster per step than one thread, 8192 no better than one.
constexpr int64_t kGrainElements = 512;

inline float exp_approx(float x) {
  // Cephes expf: e^x = 2^n e^r, |r| <= ln2 / 2, e^r by a degree-6 polynomial.
  // a ternary, not std::min/max: those return references, which stop GCC vectorising
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 127]
  return p * __builtin_bit_cast(float, bits);
}

inline float sigmoid_of(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

inline float tanh_of(float x) {
  // Cephes tanhf: an odd polynomial near 0, 1 - 2 / (e^2|x| + 1) elsewhere; both computed so
  // that the loop vectorises, then one picked.
  const float s = x * x;
  const float small =
      ((((-5.70498872745e-3f * s + 2.06390887954e-2f) * s - 5.37397155531e-2f) * s +
        1.33314422036e-1f) * s - 3.33332819422e-1f) * s * x + x;
  const float ax = std::fabs(x);
  const float large = std::copysign(1.0f - 2.0f / (exp_approx(2.0f * ax) + 1.0f), x);
  return ax < 0.625f ? small : large;
}

inline double sigmoid_of(double x) { return 1.0 / (1.0 + std::exp(-x)); }

inline double tanh_of(double x) { return std::tanh(x); }

// Rows per thread: enough elements that a thread's share outweighs waking it.
int64_t grain_rows(int64_t hidden) { return std::max<int64_t>(1, kGrainElements / hidden); }

// x @ w^T through oneDNN's linear (float32): w prepacked by _reorder_linear_weight, or plain.
// Without a post-op: its fused "add" measured slower than adding in our own pass.
Tensor onednn_linear(const Tensor& x, const Tensor& w) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("mkldnn::_linear_pointwise", "")
                       .typed<Tensor(const Tensor&, const Tensor&, const c10::optional<Tensor>&,
                                     c10::string_view,
                                     c10::List<std::optional<c10::Scalar>>,
                                     std::optional<c10::string_view>)>();
  return op.call(x, w, c10::nullopt, "none", c10::List<std::optional<c10::Scalar>>(),
                 c10::nullopt);
}

// The gate arithmetic of one row: mm (h @ W_hh^T) plus xw (the input projection with both
// biases) are the i, f, g, o pre-activations [4H]; with c_prev [H] they give act [4H] (sigmoid
// i, f, o and tanh g), c [H] (skipped where null), tanh_c [H] and m = o * tanh(c) [H] (the
// output before any projection).
template <typename T>
inline void gate_pass(const T* __restrict__ mm, const T* __restrict__ xw,
                      const T* __restrict__ c_prev, T* __restrict__ act, T* __restrict__ c,
                      T* __restrict__ tanh_c, T* __restrict__ m, int64_t hidden) {
#pragma omp simd
  for (int64_t j = 0; j < hidden; ++j) {
    const T i = sigmoid_of(mm[j] + xw[j]);
    const T f = sigmoid_of(mm[hidden + j] + xw[hidden + j]);
    const T g = tanh_of(mm[2 * hidden + j] + xw[2 * hidden + j]);
    const T o = sigmoid_of(mm[3 * hidden + j] + xw[3 * hidden + j]);
    const T c_new = f * c_prev[j] + i * g;
    const T t = tanh_of(c_new);
    act[j] = i;
    act[hidden + j] = f;
    act[2 * hidden + j] = g;
    act[3 * hidden + j] = o;
    if (c != nullptr) c[j] = c_new;
    tanh_c[j] = t;
    m[j] = o * t;
  }
}

// gate_pass over the B rows of a step ([B, 4H] and [B, H] operands), split over threads.
template <typename T>
void pointwise_forward(const T* mm, const T* xw, const T* c_prev, T* act, T* c, T* tanh_c,
                       T* m, int64_t batch, int64_t hidden) {
  const int64_t gates = 4 * hidden;
  at::parallel_for(0, batch, grain_rows(hidden), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      gate_pass<T>(mm + b * gates, xw + b * gates, c_prev + b * hidden, act + b * gates,
                   c + b * hidden, tanh_c + b * hidden, m + b * hidden, hidden);
    }
  });
}

// The backward of gate_pass for one row: d_m [H] (gradient of o * tanh(c)) plus d_out [H]
// where not null, d_c [H] from the step after (none where null), the row's act, c_prev and
// tanh_c -> d_gates [4H] and d_c_prev [H].
template <typename T>
inline void gate_pass_backward(const T* __restrict__ d_m, const T* __restrict__ d_out,
                               const T* __restrict__ d_c, const T* __restrict__ act,
                               const T* __restrict__ c_prev, const T* __restrict__ tanh_c,
                               T* __restrict__ d_gates, T* __restrict__ d_c_prev,
                               int64_t hidden) {
#pragma omp simd
  for (int64_t j = 0; j < hidden; ++j) {
    const T i = act[j], f = act[hidden + j], g = act[2 * hidden + j], o = act[3 * hidden + j];
    const T dm = d_out == nullptr ? d_m[j] : d_m[j] + d_out[j];
    const T t = tanh_c[j];
    const T dc = (d_c == nullptr ? T(0) : d_c[j]) + dm * o * (T(1) - t * t);
    d_gates[j] = dc * g * i * (T(1) - i);
    d_gates[hidden + j] = dc * c_prev[j] * f * (T(1) - f);
    d_gates[2 * hidden + j] = dc * i * (T(1) - g * g);
    d_gates[3 * hidden + j] = dm * t * o * (T(1) - o);
    d_c_prev[j] = dc * f;
  }
}

// gate_pass_backward over the B rows of a step, split over threads.
template <typename T>
void pointwise_backward(const T* d_m, const T* d_out, const T* d_c, const T* act,
                        const T* c_prev, const T* tanh_c, T* d_gates, T* d_c_prev,
                        int64_t batch, int64_t hidden) {
  const int64_t gates = 4 * hidden;
  at::parallel_for(0, batch, grain_rows(hidden), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t row = b * hidden;
      gate_pass_backward<T>(d_m + row, d_out == nullptr ? nullptr : d_out + row, d_c + row,
                            act + b * gates, c_prev + row, tanh_c + row, d_gates + b * gates,
                            d_c_prev + row, hidden);
    }
  });
}

// dst += src, n elements (a function: a pragma cannot sit inside AT_DISPATCH's macro argument)
template <typename T>
inline void add_into(T* __restrict__ dst, const T* __restrict__ src, int64_t n) {
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) dst[k] += src[k];
}

// dst[:, col:col + rows] = src^T for src [rows, cols] contiguous, dst [cols, ld]: a tiled
// transpose (torch's strided copy of a transposed view streams memory in the wrong order).
template <typename T>
void transpose_into(const T* __restrict__ src, int64_t rows, int64_t cols, T* __restrict__ dst,
                    int64_t ld, int64_t col) {
  constexpr int64_t tile = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += tile) {
    const int64_t r1 = std::min(rows, r0 + tile);
    for (int64_t c0 = 0; c0 < cols; c0 += tile) {
      const int64_t c1 = std::min(cols, c0 + tile);
      for (int64_t c = c0; c < c1; ++c) {
        for (int64_t r = r0; r < r1; ++r) dst[c * ld + col + r] = src[r * cols + c];
      }
    }
  }
}

// x @ w_t: oneDNN's linear with a prepacked weight where `packed` is given, else mm.
Tensor matmul(const Tensor& x, const Tensor& w_t, const c10::optional<Tensor>& packed) {
  if (packed.has_value()) return onednn_linear(x, *packed);
  return at::mm(x, w_t);
}

// a^T @ b for a [N, A], b [N, B] contiguous (a sum over N steps x rows): oneDNN where asked,
// given a^T laid out contiguously, which is where it is fastest here (twice MKL's speed).
Tensor weight_grad(const Tensor& a, const Tensor& b, bool onednn) {
  if (!onednn) return at::mm(a.t(), b);
  auto a_t = at::empty({a.size(1), a.size(0)}, a.options());
  transpose_into<float>(a.data_ptr<float>(), a.size(0), a.size(1), a_t.data_ptr<float>(),
                        a.size(0), 0);
  return onednn_linear(a_t, b.t());  // a^T @ (b^T)^T
}

void check_inputs(const std::vector<Tensor>& tensors) {
  for (const auto& t : tensors) {
    TORCH_CHECK(t.device().is_cpu(), "forecast fused LSTM: CPU tensors only");
    TORCH_CHECK(t.is_contiguous(), "forecast fused LSTM: contiguous tensors only");
    TORCH_CHECK(t.scalar_type() == tensors[0].scalar_type(), "forecast fused LSTM: one dtype");
  }
}

// xw [T, B, 4H] (input projection plus both biases), h0 [B, P], c0 [B, H], w_hh [4H, P],
// w_hr [P, H] or none; packed: oneDNN-packed (w_hh, w_hr) or none (float32 only). Returns
// (outputs [T, B, P], c_T, act [T, B, 4H], c [T, B, H], tanh_c [T, B, H]); the last three are
// what the backward needs, and undefined unless `save`.
std::vector<Tensor> lstm_forward(const Tensor& xw, const Tensor& h0, const Tensor& c0,
                                 const Tensor& w_hh, const c10::optional<Tensor>& w_hr,
                                 bool reverse, bool save,
                                 const c10::optional<Tensor>& packed_hh,
                                 const c10::optional<Tensor>& packed_hr) {
  check_inputs({xw, h0, c0, w_hh});
  const int64_t steps = xw.size(0), batch = xw.size(1), hidden = c0.size(1);
  const bool project = w_hr.has_value();
  const auto w_hh_t = w_hh.t();
  Tensor w_hr_t;
  if (project) {
    check_inputs({xw, *w_hr});
    w_hr_t = w_hr->t();
  }
  auto outputs = at::empty({steps, batch, h0.size(1)}, xw.options());
  // saved for the backward, or one step's scratch (two for c, which the next step reads)
  auto act = at::empty({save ? steps : 1, batch, 4 * hidden}, xw.options());
  auto cs = at::empty({save ? steps : 2, batch, hidden}, xw.options());
  auto tanh_cs = at::empty({save ? steps : 1, batch, hidden}, xw.options());
  auto m = project ? at::empty({batch, hidden}, xw.options()) : Tensor();
  // per step: the recurrent product, then one fused pass; row pointers, not tensor views
  // (a view costs a dispatch and an allocation, several per step)
  const int64_t gate_row = batch * 4 * hidden, state_row = batch * hidden;
  const int64_t out_row = batch * h0.size(1);
  Tensor h = h0;
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "lstm_forward", [&] {
    const scalar_t* c = c0.data_ptr<scalar_t>();
    const scalar_t* xw_ptr = xw.data_ptr<scalar_t>();
    scalar_t* out_ptr = outputs.data_ptr<scalar_t>();
    scalar_t* act_ptr = act.data_ptr<scalar_t>();
    scalar_t* cs_ptr = cs.data_ptr<scalar_t>();
    scalar_t* tanh_ptr = tanh_cs.data_ptr<scalar_t>();
    for (int64_t k = 0; k < steps; ++k) {
      const int64_t t = reverse ? steps - 1 - k : k;
      const int64_t slot = save ? t : 0;
      auto mm = matmul(h, w_hh_t, packed_hh).contiguous();  // [B, 4H]
      scalar_t* c_next = cs_ptr + (save ? t : k % 2) * state_row;
      scalar_t* m_t = project ? m.data_ptr<scalar_t>() : out_ptr + t * out_row;
      pointwise_forward<scalar_t>(mm.data_ptr<scalar_t>(), xw_ptr + t * gate_row, c,
                                  act_ptr + slot * gate_row, c_next, tanh_ptr + slot * state_row,
                                  m_t, batch, hidden);
      h = outputs[t];
      if (project) h.copy_(matmul(m, w_hr_t, packed_hr));
      c = c_next;
    }
  });
  const int64_t last = reverse ? 0 : steps - 1;
  auto c_last = steps == 0 ? c0.clone() : cs[save ? last : (steps - 1) % 2].clone();
  return {outputs, c_last, save ? act : Tensor(), save ? cs : Tensor(),
          save ? tanh_cs : Tensor()};
}

// Gradients (xw, h0, c0, w_hh, w_hr) from those of (outputs, h_T, c_T) and the forward's
// saved tensors. packed_t: oneDNN-packed (w_hh^T, w_hr^T) or none; where given, the weight
// gradients go through oneDNN too.
std::vector<Tensor> lstm_backward(const Tensor& d_out, const Tensor& d_h_last,
                                  const Tensor& d_c_last, const Tensor& h0, const Tensor& c0,
                                  const Tensor& outputs, const Tensor& act, const Tensor& cs,
                                  const Tensor& tanh_cs, const Tensor& w_hh,
                                  const c10::optional<Tensor>& w_hr, bool reverse,
                                  const c10::optional<Tensor>& packed_hh_t,
                                  const c10::optional<Tensor>& packed_hr_t) {
  check_inputs({d_out, d_h_last, d_c_last, h0, c0, outputs, act, cs, tanh_cs, w_hh});
  const int64_t steps = d_out.size(0), batch = d_out.size(1), hidden = c0.size(1);
  const int64_t out_size = h0.size(1);
  const bool project = w_hr.has_value();
  const bool onednn = packed_hh_t.has_value();
  auto d_gates = at::empty_like(act);  // [T, B, 4H]
  // d_h at every step, before the projection's backward: the W_hr gradient is made of it
  auto d_hs = project ? at::empty_like(outputs) : Tensor();
  auto d_c_buf = at::empty({2, batch, hidden}, d_out.options());
  const int64_t gate_row = batch * 4 * hidden, state_row = batch * hidden;
  const int64_t out_row = batch * out_size;
  Tensor d_h = d_h_last;
  auto d_c = d_c_last;
  AT_DISPATCH_FLOATING_TYPES(d_out.scalar_type(), "lstm_backward", [&] {
    const scalar_t* d_out_ptr = d_out.data_ptr<scalar_t>();
    const scalar_t* act_ptr = act.data_ptr<scalar_t>();
    const scalar_t* cs_ptr = cs.data_ptr<scalar_t>();
    const scalar_t* tanh_ptr = tanh_cs.data_ptr<scalar_t>();
    scalar_t* d_gates_ptr = d_gates.data_ptr<scalar_t>();
    const scalar_t* d_c_ptr = d_c_last.data_ptr<scalar_t>();
    for (int64_t k = 0; k < steps; ++k) {
      const int64_t t = reverse ? k : steps - 1 - k;  // the forward's steps, last first
      const bool first = k == steps - 1;             // the forward's first step
      const scalar_t* c_prev =
          first ? c0.data_ptr<scalar_t>() : cs_ptr + (reverse ? t + 1 : t - 1) * state_row;
      scalar_t* d_c_prev = d_c_buf.data_ptr<scalar_t>() + (k % 2) * state_row;
      const scalar_t* d_m;
      const scalar_t* d_out_t = d_out_ptr + t * out_row;
      Tensor d_m_tensor;
      if (project) {
        auto d_h_t = d_hs[t];
        at::add_out(d_h_t, d_out[t], d_h);
        d_m_tensor = matmul(d_h_t, *w_hr, packed_hr_t).contiguous();  // [B, H]
        d_m = d_m_tensor.data_ptr<scalar_t>();
        d_out_t = nullptr;  // already in
      } else {
        d_m = d_h.data_ptr<scalar_t>();
      }
      pointwise_backward<scalar_t>(d_m, d_out_t, d_c_ptr, act_ptr + t * gate_row, c_prev,
                                   tanh_ptr + t * state_row, d_gates_ptr + t * gate_row,
                                   d_c_prev, batch, hidden);
      d_h = matmul(d_gates[t], w_hh, packed_hh_t).contiguous();  // [B, P]
      d_c_ptr = d_c_prev;
    }
  });
  if (steps > 0) d_c = d_c_buf[(steps - 1) % 2];
  // W_hh gradient: the sum over steps of h_{t-1}^T d_gates_t, h_{t-1} the state each step
  // started from (h0, then the outputs)
  auto h_prev = at::empty({steps, batch, out_size}, d_out.options());
  const int64_t first_step = reverse ? steps - 1 : 0;
  h_prev[first_step].copy_(h0);
  if (steps > 1) {
    h_prev.narrow(0, reverse ? 0 : 1, steps - 1)
        .copy_(outputs.narrow(0, reverse ? 1 : 0, steps - 1));
  }
  const auto flat = [](const Tensor& x) { return x.flatten(0, 1); };
  auto d_w_hh = weight_grad(flat(h_prev), flat(d_gates), onednn).t().contiguous();  // [4H, P]
  Tensor d_w_hr;
  if (project) {
    auto m = act.narrow(2, 3 * hidden, hidden) * tanh_cs;         // [T, B, H]
    d_w_hr = weight_grad(flat(d_hs), flat(m), onednn);            // [P, H]
  }
  return {d_gates, d_h.clone(), d_c.clone(), d_w_hh, d_w_hr};
}


// One LSTM step for many (state, input) pairs at once, the pairs of an outer product: unit u
// (U = B * G of them, u = b * G + g) meets each of M inputs of its group g. hw [U, 4H] is
// h_u @ W_hh^T + b_hh, xw [G, M, 4H] the inputs' x @ W_ih^T + b_ih, c [U, H]. Returns
// m = o * tanh(c') [U, M, H] (the new h before any projection). This is the parallel decoder's
// step (forecast/models/network.py): no pair is materialised, before the pass or after it.
Tensor lstm_outer_forward(const Tensor& hw, const Tensor& xw, const Tensor& c) {
  check_inputs({hw, xw, c});
  const int64_t units = hw.size(0), groups = xw.size(0), inputs = xw.size(1);
  const int64_t hidden = c.size(1);
  TORCH_CHECK(units % groups == 0 && hw.size(1) == 4 * hidden && xw.size(2) == 4 * hidden,
              "lstm_outer_forward: sizes do not fit");
  auto m = at::empty({units, inputs, hidden}, hw.options());
  AT_DISPATCH_FLOATING_TYPES(hw.scalar_type(), "lstm_outer_forward", [&] {
    const scalar_t* hw_ptr = hw.data_ptr<scalar_t>();
    const scalar_t* xw_ptr = xw.data_ptr<scalar_t>();
    const scalar_t* c_ptr = c.data_ptr<scalar_t>();
    scalar_t* m_ptr = m.data_ptr<scalar_t>();
    const int64_t gates = 4 * hidden;
    at::parallel_for(0, units * inputs, grain_rows(hidden), [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> scratch(gates + hidden);  // one pair's activations and tanh(c')
      for (int64_t row = begin; row < end; ++row) {
        const int64_t u = row / inputs, j = row % inputs, g = u % groups;
        gate_pass<scalar_t>(hw_ptr + u * gates, xw_ptr + (g * inputs + j) * gates,
                            c_ptr + u * hidden, scratch.data(), nullptr, scratch.data() + gates,
                            m_ptr + row * hidden, hidden);
      }
    });
  });
  return m;
}

// The backward of lstm_outer_forward: d_m [U, M, H] -> (d_hw [U, 4H], d_xw [G, M, 4H],
// d_c [U, H]), summing over the pairs each operand took part in. Each pair's activations are
// computed again from hw, xw and c rather than saved by the forward: saving them wrote and read
// back [U, M, 4H] (15 MB for the default model's batch), slower than the exp and tanh it spares.
// d_xw is summed per thread, then over threads.
std::vector<Tensor> lstm_outer_backward(const Tensor& d_m, const Tensor& hw, const Tensor& xw,
                                        const Tensor& c) {
  check_inputs({d_m, hw, xw, c});
  const int64_t units = d_m.size(0), inputs = d_m.size(1), hidden = d_m.size(2);
  const int64_t groups = xw.size(0), gates = 4 * hidden;
  TORCH_CHECK(units % groups == 0 && hw.size(0) == units && hw.size(1) == gates &&
                  xw.size(1) == inputs && xw.size(2) == gates && c.size(0) == units,
              "lstm_outer_backward: sizes do not fit");
  auto d_hw = at::empty({units, gates}, d_m.options());
  auto d_c = at::empty({units, hidden}, d_m.options());
  auto d_xw_per_thread = at::zeros({at::get_num_threads(), groups, inputs, gates}, d_m.options());
  AT_DISPATCH_FLOATING_TYPES(d_m.scalar_type(), "lstm_outer_backward", [&] {
    const scalar_t* d_m_ptr = d_m.data_ptr<scalar_t>();
    const scalar_t* hw_ptr = hw.data_ptr<scalar_t>();
    const scalar_t* xw_ptr = xw.data_ptr<scalar_t>();
    const scalar_t* c_ptr = c.data_ptr<scalar_t>();
    scalar_t* d_hw_ptr = d_hw.data_ptr<scalar_t>();
    scalar_t* d_c_ptr = d_c.data_ptr<scalar_t>();
    scalar_t* d_xw_all = d_xw_per_thread.data_ptr<scalar_t>();
    const int64_t per_thread = groups * inputs * gates;
    const int64_t per_unit = std::max<int64_t>(1, grain_rows(hidden) / inputs);
    at::parallel_for(0, units, per_unit, [&](int64_t begin, int64_t end) {
      scalar_t* d_xw_mine = d_xw_all + at::get_thread_num() * per_thread;
      // one pair at a time: its activations, tanh(c'), m, d_gates and d_c
      std::vector<scalar_t> scratch(gates + 3 * hidden + gates);
      scalar_t* act = scratch.data();
      scalar_t* tanh_c = act + gates;
      scalar_t* m = tanh_c + hidden;
      scalar_t* d_c_pair = m + hidden;
      scalar_t* dg = d_c_pair + hidden;
      for (int64_t u = begin; u < end; ++u) {
        const int64_t g = u % groups;
        scalar_t* dh = d_hw_ptr + u * gates;
        scalar_t* dc = d_c_ptr + u * hidden;
        std::fill(dh, dh + gates, scalar_t(0));
        std::fill(dc, dc + hidden, scalar_t(0));
        for (int64_t j = 0; j < inputs; ++j) {
          const scalar_t* x = xw_ptr + (g * inputs + j) * gates;
          gate_pass<scalar_t>(hw_ptr + u * gates, x, c_ptr + u * hidden, act, nullptr, tanh_c, m,
                              hidden);
          // a pair has no later step: its only gradient is d_m
          gate_pass_backward<scalar_t>(d_m_ptr + (u * inputs + j) * hidden, nullptr, nullptr, act,
                                       c_ptr + u * hidden, tanh_c, dg, d_c_pair, hidden);
          add_into<scalar_t>(dh, dg, gates);
          add_into<scalar_t>(dc, d_c_pair, hidden);
          add_into<scalar_t>(d_xw_mine + (g * inputs + j) * gates, dg, gates);
        }
      }
    });
  });
  return {d_hw, d_xw_per_thread.sum(0), d_c};
}

// ---- GRU ------------------------------------------------------------------------------------
//
// The reference GRU step (forecast/nn/cells.py: r, z, n with b_hn inside the reset product),
// its arithmetic fused into one pass per row as for the LSTM.

// One row: mm [3H] = h @ W_hh^T (no bias), b [3H] = b_hh or null, xw [3H] the input projection
// with b_ih, h_prev [H] -> rz [2H], n [H], hn [H] (= h W_hn^T + b_hn) and h [H].
template <typename T>
inline void gru_gate_pass(const T* __restrict__ mm, const T* __restrict__ b,
                          const T* __restrict__ xw, const T* __restrict__ h_prev,
                          T* __restrict__ rz, T* __restrict__ n_out, T* __restrict__ hn_out,
                          T* __restrict__ h, int64_t hidden) {
#pragma omp simd
  for (int64_t j = 0; j < hidden; ++j) {
    const T b_r = b == nullptr ? T(0) : b[j];
    const T b_z = b == nullptr ? T(0) : b[hidden + j];
    const T b_n = b == nullptr ? T(0) : b[2 * hidden + j];
    const T r = sigmoid_of(xw[j] + mm[j] + b_r);
    const T z = sigmoid_of(xw[hidden + j] + mm[hidden + j] + b_z);
    const T hn = mm[2 * hidden + j] + b_n;
    const T n = tanh_of(xw[2 * hidden + j] + r * hn);
    rz[j] = r;
    rz[hidden + j] = z;
    n_out[j] = n;
    hn_out[j] = hn;
    h[j] = n + z * (h_prev[j] - n);
  }
}

// The backward of one row: dh [H] (d_out + the gradient from the step after), the row's saved
// rz, n, hn and h_prev -> d_hw [3H] (gradient of h @ W_hh^T + b_hh), d_xw [3H] and the part of
// d_h_prev [H] that does not pass through W_hh (dh * z).
template <typename T>
inline void gru_gate_pass_backward(const T* __restrict__ d_out, const T* __restrict__ d_next,
                                   const T* __restrict__ rz, const T* __restrict__ n_in,
                                   const T* __restrict__ hn_in, const T* __restrict__ h_prev,
                                   T* __restrict__ d_hw, T* __restrict__ d_xw,
                                   T* __restrict__ d_h_prev, int64_t hidden) {
#pragma omp simd
  for (int64_t j = 0; j < hidden; ++j) {
    const T r = rz[j], z = rz[hidden + j], n = n_in[j], hn = hn_in[j];
    const T dh = d_out[j] + d_next[j];
    const T d_npre = dh * (T(1) - z) * (T(1) - n * n);
    const T d_zpre = dh * (h_prev[j] - n) * z * (T(1) - z);
    const T d_rpre = d_npre * hn * r * (T(1) - r);
    d_hw[j] = d_rpre;
    d_hw[hidden + j] = d_zpre;
    d_hw[2 * hidden + j] = d_npre * r;
    d_xw[j] = d_rpre;
    d_xw[hidden + j] = d_zpre;
    d_xw[2 * hidden + j] = d_npre;
    d_h_prev[j] = dh * z;
  }
}

// xw [T, B, 3H] (input projection plus b_ih), h0 [B, H], w_hh [3H, H], b_hh [3H] or none;
// packed_hh: oneDNN-packed w_hh or none. Returns (outputs [T, B, H], rz [T, B, 2H],
// n [T, B, H], hn [T, B, H]); the last three are what the backward needs, undefined unless
// `save`.
std::vector<Tensor> gru_forward(const Tensor& xw, const Tensor& h0, const Tensor& w_hh,
                                const c10::optional<Tensor>& b_hh, bool reverse, bool save,
                                const c10::optional<Tensor>& packed_hh) {
  check_inputs({xw, h0, w_hh});
  if (b_hh.has_value()) check_inputs({xw, *b_hh});
  const int64_t steps = xw.size(0), batch = xw.size(1), hidden = h0.size(1);
  const auto w_hh_t = w_hh.t();
  auto outputs = at::empty({steps, batch, hidden}, xw.options());
  auto rz = at::empty({save ? steps : 1, batch, 2 * hidden}, xw.options());
  auto ns = at::empty({save ? steps : 1, batch, hidden}, xw.options());
  auto hns = at::empty({save ? steps : 1, batch, hidden}, xw.options());
  const int64_t gate_row = batch * 3 * hidden, state_row = batch * hidden;
  Tensor h = h0;
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "gru_forward", [&] {
    const scalar_t* xw_ptr = xw.data_ptr<scalar_t>();
    const scalar_t* b = b_hh.has_value() ? b_hh->data_ptr<scalar_t>() : nullptr;
    scalar_t* out_ptr = outputs.data_ptr<scalar_t>();
    scalar_t* rz_ptr = rz.data_ptr<scalar_t>();
    scalar_t* n_ptr = ns.data_ptr<scalar_t>();
    scalar_t* hn_ptr = hns.data_ptr<scalar_t>();
    for (int64_t k = 0; k < steps; ++k) {
      const int64_t t = reverse ? steps - 1 - k : k;
      const int64_t slot = save ? t : 0;
      auto mm = matmul(h, w_hh_t, packed_hh).contiguous();  // [B, 3H]
      const scalar_t* mm_ptr = mm.data_ptr<scalar_t>();
      const scalar_t* h_prev = h.data_ptr<scalar_t>();
      at::parallel_for(0, batch, grain_rows(hidden), [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          gru_gate_pass<scalar_t>(mm_ptr + row * 3 * hidden, b,
                                  xw_ptr + t * gate_row + row * 3 * hidden, h_prev + row * hidden,
                                  rz_ptr + slot * 2 * state_row + row * 2 * hidden,
                                  n_ptr + slot * state_row + row * hidden,
                                  hn_ptr + slot * state_row + row * hidden,
                                  out_ptr + t * state_row + row * hidden, hidden);
        }
      });
      h = outputs[t];
    }
  });
  return {outputs, save ? rz : Tensor(), save ? ns : Tensor(), save ? hns : Tensor()};
}

// Gradients (xw, h0, w_hh, b_hh) from those of (outputs, h_T) and the forward's saved
// tensors. packed_hh_t: oneDNN-packed w_hh^T or none; where given, the weight gradient goes
// through oneDNN too.
std::vector<Tensor> gru_backward(const Tensor& d_out, const Tensor& d_h_last, const Tensor& h0,
                                 const Tensor& outputs, const Tensor& rz, const Tensor& ns,
                                 const Tensor& hns, const Tensor& w_hh, bool reverse,
                                 const c10::optional<Tensor>& packed_hh_t) {
  check_inputs({d_out, d_h_last, h0, outputs, rz, ns, hns, w_hh});
  const int64_t steps = d_out.size(0), batch = d_out.size(1), hidden = h0.size(1);
  const bool onednn = packed_hh_t.has_value();
  auto d_hw = at::empty({steps, batch, 3 * hidden}, d_out.options());
  auto d_xw = at::empty({steps, batch, 3 * hidden}, d_out.options());
  auto d_direct = at::empty({batch, hidden}, d_out.options());
  const int64_t gate_row = batch * 3 * hidden, state_row = batch * hidden;
  Tensor d_h = d_h_last;
  AT_DISPATCH_FLOATING_TYPES(d_out.scalar_type(), "gru_backward", [&] {
    const scalar_t* d_out_ptr = d_out.data_ptr<scalar_t>();
    const scalar_t* out_ptr = outputs.data_ptr<scalar_t>();
    const scalar_t* rz_ptr = rz.data_ptr<scalar_t>();
    const scalar_t* n_ptr = ns.data_ptr<scalar_t>();
    const scalar_t* hn_ptr = hns.data_ptr<scalar_t>();
    scalar_t* d_hw_ptr = d_hw.data_ptr<scalar_t>();
    scalar_t* d_xw_ptr = d_xw.data_ptr<scalar_t>();
    scalar_t* direct_ptr = d_direct.data_ptr<scalar_t>();
    for (int64_t k = 0; k < steps; ++k) {
      const int64_t t = reverse ? k : steps - 1 - k;  // the forward's steps, last first
      const bool first = k == steps - 1;             // the forward's first step
      const scalar_t* h_prev =
          first ? h0.data_ptr<scalar_t>() : out_ptr + (reverse ? t + 1 : t - 1) * state_row;
      const scalar_t* d_next = d_h.data_ptr<scalar_t>();
      at::parallel_for(0, batch, grain_rows(hidden), [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const int64_t s = row * hidden;
          gru_gate_pass_backward<scalar_t>(
              d_out_ptr + t * state_row + s, d_next + s, rz_ptr + t * 2 * state_row + 2 * s,
              n_ptr + t * state_row + s, hn_ptr + t * state_row + s, h_prev + s,
              d_hw_ptr + t * gate_row + 3 * s, d_xw_ptr + t * gate_row + 3 * s, direct_ptr + s,
              hidden);
        }
      });
      d_h = matmul(d_hw[t], w_hh, packed_hh_t).add_(d_direct);  // [B, H]
    }
  });
  auto h_prev = at::empty({steps, batch, hidden}, d_out.options());
  h_prev[reverse ? steps - 1 : 0].copy_(h0);
  if (steps > 1) {
    h_prev.narrow(0, reverse ? 0 : 1, steps - 1)
        .copy_(outputs.narrow(0, reverse ? 1 : 0, steps - 1));
  }
  const auto flat = [](const Tensor& x) { return x.flatten(0, 1); };
  auto d_w_hh = weight_grad(flat(h_prev), flat(d_hw), onednn).t().contiguous();  // [3H, H]
  return {d_xw, d_h.clone(), d_w_hh, flat(d_hw).sum(0)};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("lstm_forward", &lstm_forward, "LSTM layer loop, forward");
  module.def("lstm_backward", &lstm_backward, "LSTM layer loop, backward");
  module.def("lstm_outer_forward", &lstm_outer_forward, "LSTM step over an outer product");
  module.def("lstm_outer_backward", &lstm_outer_backward, "its backward");
  module.def("gru_forward", &gru_forward, "GRU layer loop, forward");
  module.def("gru_backward", &gru_backward, "GRU layer loop, backward");
}
