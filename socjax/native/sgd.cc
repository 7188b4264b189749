// One per-example SGD step of socjax's MLP on the CPU, called through the XLA FFI (socjax.native).
//
// The same update as socjax.step.xla_step, exact up to float32 rounding:
//     W <- (1 - lr*l2) W - lr * dL/dW      L: the data loss of one example ("mse" or "xent")
// computed with three exact rearrangements that XLA's dense step cannot make:
//   1. sparse input: a layer's input rows whose activation is 0 (blank pixels, inactive ReLUs)
//      get no gradient, so the forward pass and the update visit only the active rows;
//   2. lazy weight decay: each layer is stored as W = s*V with a double scale s; decay is
//      s *= (1 - lr*l2) and a gradient step is V -= (lr / s_new) * g, so the untouched weights
//      cost nothing; V is folded (V *= s, s = 1) when s falls below FOLD_BELOW;
//   3. ReLU sparsity: the backward dot product of an active row is fused with that row's update,
//      so each visited row is read and written once.
// Biases share their layer's scale when they decay (decay_biases), else their scale stays 1.
//
// Layout (socjax/native/step.py builds it): every layer but the last is V (fan_in, P(fan_out))
// row-major, the last is stored transposed, (fan_out, P(fan_in)); P rounds up to 16 floats and the
// padding stays exactly 0. Biases are (P(fan_out),) per layer. scales is (layers, 2) float32 holding
// each layer's double s as hi + lo. Every buffer may carry leading run dimensions (vmap over runs):
// the runs are independent and are spread over threads, one run per thread.
//
// SIMD: GCC vector extensions, 16 floats per vector; -march=x86-64-v3 makes them AVX2 pairs,
// -march=native AVX-512 where the CPU has it. Unaligned loads throughout (the buffers are XLA's).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int kLanes = 16;  // stored rows are padded to a multiple of 16 floats (64 bytes)
constexpr double kFoldBelow = 1.0 / 1024.0;  // fold a layer's scale into V below this

// One SIMD register of floats: 16 with AVX-512, else 8 (AVX2); kLanes is a multiple of both.
#ifdef __AVX512F__
constexpr int kWidth = 16;
#else
constexpr int kWidth = 8;
#endif
typedef float vf __attribute__((vector_size(kWidth * sizeof(float))));

inline vf ld(const float* p) {
  vf v;
  __builtin_memcpy(&v, p, sizeof v);  // an unaligned load
  return v;
}
inline void st(float* p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
inline vf splat(float s) { return vf{} + s; }

// Dot-product accumulators hold kLanes floats (two AVX2 registers or one AVX-512 register), and
// are summed by a fixed tree, so both instruction sets round every sum the same way.
struct acc16 {
  vf v[kLanes / kWidth] = {};
};
constexpr int kParts = kLanes / kWidth;
inline float hsum(const acc16& a) {
  float h[kLanes];
  std::memcpy(h, a.v, sizeof h);
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int k = 0; k < w; ++k) h[k] += h[k + w];
  return h[0];
}

inline int64_t padded(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// Where each layer lives in the flat buffers of one run.
struct Layout {
  int layers = 0;
  std::vector<int64_t> n;        // widths, layers + 1
  std::vector<int64_t> row;      // floats per stored row of layer l
  std::vector<int64_t> w_at, b_at;
  int64_t w_size = 0, b_size = 0;

  explicit Layout(ffi::Span<const int64_t> sizes) {
    layers = static_cast<int>(sizes.size()) - 1;
    n.assign(sizes.begin(), sizes.end());
    for (int l = 0; l < layers; ++l) {
      bool last = l == layers - 1;
      row.push_back(last ? padded(n[l]) : padded(n[l + 1]));
      w_at.push_back(w_size);
      b_at.push_back(b_size);
      w_size += (last ? n[l + 1] : n[l]) * row.back();
      b_size += padded(n[l + 1]);
    }
  }
};

// The scratch of one run's step: activations, active-row lists and deltas, per layer.
struct Scratch {
  std::vector<std::vector<float>> a;      // a[l]: input of layer l, padded; a[0] is x
  std::vector<std::vector<int32_t>> act;  // rows of layer l with a[l] != 0: the first count[l] entries
  std::vector<int32_t> count;
  std::vector<float> delta, back, out;

  void fit(const Layout& lay) {
    a.resize(lay.layers);
    act.resize(lay.layers);
    count.assign(lay.layers, 0);
    int64_t widest = 0;
    for (int l = 0; l < lay.layers; ++l) {
      a[l].assign(padded(lay.n[l]), 0.0f);
      act[l].resize(lay.n[l]);
      widest = std::max(widest, padded(lay.n[l + 1]));
      widest = std::max(widest, padded(lay.n[l]));
    }
    delta.assign(widest, 0.0f);
    back.assign(widest, 0.0f);
    out.assign(padded(lay.n[lay.layers]), 0.0f);
  }
};

// The active rows of a[0:n]: branch-free.
inline int32_t active_rows(const float* a, int64_t n, int32_t* idx) {
  int32_t count = 0;
  for (int32_t i = 0; i < n; ++i) {
    idx[count] = i;
    count += a[i] != 0.0f;
  }
  return count;
}

// The rows are at scattered addresses, which the hardware prefetcher cannot guess: while one group
// of rows is processed, the next group's rows are prefetched line by line (kLanes floats = 64 bytes).
inline const float* ahead(const float* v, int64_t row, const int32_t* idx, int32_t count, int32_t k) {
  return v + idx[k < count ? k : count - 1] * row;
}

// acc[0:width] += sum over the listed rows i of a[i] * V[i, :], four rows per pass.
void gather_rows(float* acc, const float* v, int64_t row, const int32_t* idx, int32_t count, const float* a,
                 int64_t width) {
  int32_t r = 0;
  for (; r + 4 <= count; r += 4) {
    const float *p0 = v + idx[r] * row, *p1 = v + idx[r + 1] * row, *p2 = v + idx[r + 2] * row,
                *p3 = v + idx[r + 3] * row;
    const float *n0 = ahead(v, row, idx, count, r + 4), *n1 = ahead(v, row, idx, count, r + 5),
                *n2 = ahead(v, row, idx, count, r + 6), *n3 = ahead(v, row, idx, count, r + 7);
    vf c0 = splat(a[idx[r]]), c1 = splat(a[idx[r + 1]]), c2 = splat(a[idx[r + 2]]), c3 = splat(a[idx[r + 3]]);
    for (int64_t j = 0; j < width; j += kLanes) {
      __builtin_prefetch(n0 + j);
      __builtin_prefetch(n1 + j);
      __builtin_prefetch(n2 + j);
      __builtin_prefetch(n3 + j);
      for (int q = 0; q < kParts; ++q) {
        const int64_t at = j + q * kWidth;
        st(acc + at, ld(acc + at) + c0 * ld(p0 + at) + c1 * ld(p1 + at) + c2 * ld(p2 + at) + c3 * ld(p3 + at));
      }
    }
  }
  for (; r < count; ++r) {
    const float* p = v + idx[r] * row;
    vf c = splat(a[idx[r]]);
    for (int64_t j = 0; j < width; j += kWidth) st(acc + j, ld(acc + j) + c * ld(p + j));
  }
}

// For each listed row i: back[i] = V[i, :] . delta (the old row), then V[i, :] -= coef * a[i] * delta.
// Two rows per pass share the delta loads. With back == nullptr only the update is done.
void update_rows(float* v, int64_t row, const int32_t* idx, int32_t count, const float* a, float coef,
                 const float* delta, int64_t width, float* back) {
  int32_t r = 0;
  for (; r + 2 <= count; r += 2) {
    float *p0 = v + idx[r] * row, *p1 = v + idx[r + 1] * row;
    const float *n0 = ahead(v, row, idx, count, r + 2), *n1 = ahead(v, row, idx, count, r + 3);
    vf c0 = splat(coef * a[idx[r]]), c1 = splat(coef * a[idx[r + 1]]);
    acc16 s0, s1;
    for (int64_t j = 0; j < width; j += kLanes) {
      __builtin_prefetch(n0 + j, 1);
      __builtin_prefetch(n1 + j, 1);
      for (int q = 0; q < kParts; ++q) {
        const int64_t at = j + q * kWidth;
        vf d = ld(delta + at), w0 = ld(p0 + at), w1 = ld(p1 + at);
        s0.v[q] += w0 * d;
        s1.v[q] += w1 * d;
        st(p0 + at, w0 - c0 * d);
        st(p1 + at, w1 - c1 * d);
      }
    }
    if (back) {
      back[idx[r]] = hsum(s0);
      back[idx[r + 1]] = hsum(s1);
    }
  }
  for (; r < count; ++r) {
    float* p = v + idx[r] * row;
    vf c = splat(coef * a[idx[r]]);
    acc16 s;
    for (int64_t j = 0; j < width; j += kLanes)
      for (int q = 0; q < kParts; ++q) {
        const int64_t at = j + q * kWidth;
        vf d = ld(delta + at), w = ld(p + at);
        s.v[q] += w * d;
        st(p + at, w - c * d);
      }
    if (back) back[idx[r]] = hsum(s);
  }
}

struct Settings {
  int loss;  // 0 mse, 1 xent
  bool decay_biases;
};

inline double get_scale(const float* s) { return static_cast<double>(s[0]) + static_cast<double>(s[1]); }
inline void put_scale(float* s, double v) {
  s[0] = static_cast<float>(v);
  s[1] = static_cast<float>(v - static_cast<double>(s[0]));
}

// One SGD step of one run, in place. Returns the data loss and whether argmax(out) == label.
void step_one(const Layout& lay, const Settings& set, Scratch& sc, const float* x, int32_t label, float lr,
              float l2, float* w, float* b, float* scales, float* loss_out, float* correct_out) {
  const int L = lay.layers;
  double s_old[64], s_new[64];
  const double factor = 1.0 - static_cast<double>(lr) * static_cast<double>(l2);
  for (int l = 0; l < L; ++l) {
    s_old[l] = get_scale(scales + 2 * l);
    s_new[l] = s_old[l] * factor;
  }
  auto bias_scale = [&](const double* s, int l) { return set.decay_biases ? s[l] : 1.0; };

  // forward: hidden layers (row-major V), visiting only active input rows
  std::memcpy(sc.a[0].data(), x, lay.n[0] * sizeof(float));
  for (int l = 0; l + 1 < L; ++l) {
    const int64_t width = lay.row[l];
    const float* v = w + lay.w_at[l];
    const float* vb = b + lay.b_at[l];
    float* z = sc.a[l + 1].data();  // becomes relu(z) in place
    sc.count[l] = active_rows(sc.a[l].data(), lay.n[l], sc.act[l].data());
    std::fill(z, z + width, 0.0f);
    gather_rows(z, v, width, sc.act[l].data(), sc.count[l], sc.a[l].data(), width);
    vf s = splat(static_cast<float>(s_old[l])), sb = splat(static_cast<float>(bias_scale(s_old, l)));
    for (int64_t j = 0; j < width; j += kWidth) {
      vf zj = s * ld(z + j) + sb * ld(vb + j);
      st(z + j, zj > 0.0f ? zj : vf{});
    }
  }
  // last layer, stored transposed: out[k] = s * V^T[k, :] . a + sb * vb[k]
  const int last = L - 1;
  const int64_t width = lay.row[last], classes = lay.n[L];
  float* vt = w + lay.w_at[last];
  float* vb = b + lay.b_at[last];
  const float* a = sc.a[last].data();
  for (int64_t k = 0; k < classes; ++k) {
    acc16 acc;
    const float* p = vt + k * width;
    for (int64_t j = 0; j < width; j += kLanes)
      for (int q = 0; q < kParts; ++q) acc.v[q] += ld(p + j + q * kWidth) * ld(a + j + q * kWidth);
    sc.out[k] = static_cast<float>(s_old[last]) * hsum(acc) + static_cast<float>(bias_scale(s_old, last)) * vb[k];
  }
  // loss, output delta dL/dout, argmax (the first maximum, as jnp.argmax)
  float* out = sc.out.data();
  float* delta = sc.delta.data();
  int64_t best = 0;
  for (int64_t k = 1; k < classes; ++k)
    if (out[k] > out[best]) best = k;
  *correct_out = best == label ? 1.0f : 0.0f;
  if (set.loss == 0) {
    float total = 0.0f;
    for (int64_t k = 0; k < classes; ++k) {
      delta[k] = out[k] - (k == label ? 1.0f : 0.0f);
      total += delta[k] * delta[k];
    }
    *loss_out = 0.5f * total;
  } else {
    float top = out[best], sum = 0.0f;
    for (int64_t k = 0; k < classes; ++k) sum += std::exp(out[k] - top);
    float log_sum = std::log(sum);
    for (int64_t k = 0; k < classes; ++k) delta[k] = std::exp(out[k] - top - log_sum) - (k == label ? 1.0f : 0.0f);
    *loss_out = log_sum - (out[label] - top);
  }

  // backward through the last layer: back = W^T-old . delta (for the layer below), then the update
  {
    const float coef = static_cast<float>(lr / s_new[last]);
    float* back = sc.back.data();
    for (int64_t j = 0; j < width; j += kWidth) {
      vf g{}, aj = ld(a + j);
      for (int64_t k = 0; k < classes; ++k) {
        float* p = vt + k * width + j;
        vf wk = ld(p);
        g += wk * delta[k];
        st(p, wk - (coef * delta[k]) * aj);
      }
      st(back + j, g);
    }
    const float cb = static_cast<float>(lr / bias_scale(s_new, last));
    for (int64_t k = 0; k < classes; ++k) vb[k] -= cb * delta[k];
  }
  // hidden layers, top down: delta of layer l's output = s_old[l+1] * back, where l's output is active
  for (int l = L - 2; l >= 0; --l) {
    const int64_t width_l = lay.row[l];
    const float* al1 = sc.a[l + 1].data();
    const float s_up = static_cast<float>(s_old[l + 1]);
    for (int64_t j = 0; j < width_l; j += kWidth) {
      vf aj = ld(al1 + j);
      st(delta + j, aj > 0.0f ? s_up * ld(sc.back.data() + j) : vf{});
    }
    float* v = w + lay.w_at[l];
    float* vbl = b + lay.b_at[l];
    const float cb = static_cast<float>(lr / bias_scale(s_new, l));
    for (int64_t j = 0; j < width_l; j += kWidth) st(vbl + j, ld(vbl + j) - cb * ld(delta + j));
    update_rows(v, width_l, sc.act[l].data(), sc.count[l], sc.a[l].data(), static_cast<float>(lr / s_new[l]), delta,
                width_l, l > 0 ? sc.back.data() : nullptr);
  }
  // the new scales; fold a layer whose scale got small
  for (int l = 0; l < L; ++l) {
    double s = s_new[l];
    if (s < kFoldBelow) {
      const int64_t rows = l == L - 1 ? lay.n[l + 1] : lay.n[l];
      float* v = w + lay.w_at[l];
      const vf f = splat(static_cast<float>(s));
      for (int64_t i = 0; i < rows * lay.row[l]; i += kWidth) st(v + i, ld(v + i) * f);
      if (set.decay_biases) {
        float* vbl = b + lay.b_at[l];
        for (int64_t j = 0; j < padded(lay.n[l + 1]); ++j) vbl[j] *= static_cast<float>(s);
      }
      s = 1.0;
    }
    put_scale(scales + 2 * l, s);
  }
}

// The runs of a vmapped call are spread over XLA's intra-op thread pool: the calling thread and the
// pool's threads claim runs from a shared counter, so however few pool threads are free, every run
// is done once and the call returns when all are. A task that starts late finds nothing to claim;
// it holds the shared state, not the caller's stack.
struct Claims {
  std::atomic<int64_t> next{0}, done{0};
};

template <typename F>
void for_each_run(ffi::ThreadPool& threads, int64_t runs, const F& one) {
  const int64_t helpers = std::min<int64_t>(runs, threads.num_threads() + 1) - 1;
  if (helpers <= 0) {
    for (int64_t r = 0; r < runs; ++r) one(r);
    return;
  }
  auto claims = std::make_shared<Claims>();
  // `one` lives on the caller's stack until every claimed run is done; a late task claims none
  auto work = [claims, runs, &one] {
    for (int64_t r; (r = claims->next.fetch_add(1)) < runs;) {
      one(r);
      claims->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int64_t h = 0; h < helpers; ++h) threads.Schedule(decltype(work)(work));
  work();
  while (claims->done.load(std::memory_order_acquire) < runs) __builtin_ia32_pause();
}

ffi::Error Step(ffi::ThreadPool threads, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::S32> label, ffi::Buffer<ffi::F32> lr,
                ffi::Buffer<ffi::F32> l2, ffi::Buffer<ffi::F32> w_in, ffi::Buffer<ffi::F32> b_in,
                ffi::Buffer<ffi::F32> s_in, ffi::Span<const int64_t> sizes, int64_t loss, int64_t decay_biases,
                ffi::ResultBuffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> b, ffi::ResultBuffer<ffi::F32> s,
                ffi::ResultBuffer<ffi::F32> loss_out, ffi::ResultBuffer<ffi::F32> correct_out) {
  if (sizes.size() < 2 || sizes.size() > 64) return ffi::Error::InvalidArgument("socjax_sgd_step: 1 to 63 layers");
  const Layout lay(sizes);
  const int64_t runs = static_cast<int64_t>(label.element_count());
  if (runs < 1 || static_cast<int64_t>(x.element_count()) != runs * lay.n[0] ||
      static_cast<int64_t>(w_in.element_count()) != runs * lay.w_size ||
      static_cast<int64_t>(b_in.element_count()) != runs * lay.b_size ||
      static_cast<int64_t>(s_in.element_count()) != runs * 2 * lay.layers ||
      static_cast<int64_t>(lr.element_count()) != runs || static_cast<int64_t>(l2.element_count()) != runs)
    return ffi::Error::InvalidArgument("socjax_sgd_step: buffer sizes do not match the layer sizes");
  // outputs alias the inputs (input_output_aliases); copy if XLA ever hands separate buffers
  if (w->typed_data() != w_in.typed_data()) std::memcpy(w->typed_data(), w_in.typed_data(), w_in.size_bytes());
  if (b->typed_data() != b_in.typed_data()) std::memcpy(b->typed_data(), b_in.typed_data(), b_in.size_bytes());
  if (s->typed_data() != s_in.typed_data()) std::memcpy(s->typed_data(), s_in.typed_data(), s_in.size_bytes());
  const Settings set{static_cast<int>(loss), decay_biases != 0};
  auto one = [&](int r) {
    thread_local Scratch sc;
    thread_local std::vector<int64_t> fitted;
    if (fitted != lay.n) {
      sc.fit(lay);
      fitted = lay.n;
    }
    step_one(lay, set, sc, x.typed_data() + r * lay.n[0], label.typed_data()[r], lr.typed_data()[r],
             l2.typed_data()[r], w->typed_data() + r * lay.w_size, b->typed_data() + r * lay.b_size,
             s->typed_data() + r * 2 * lay.layers, loss_out->typed_data() + r, correct_out->typed_data() + r);
  };
  for_each_run(threads, runs, one);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(SocjaxSgdStep, Step,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x (784,)
                                  .Arg<ffi::Buffer<ffi::S32>>()  // label ()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // lr ()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // l2 ()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // weights, flat
                                  .Arg<ffi::Buffer<ffi::F32>>()  // biases, flat
                                  .Arg<ffi::Buffer<ffi::F32>>()  // scales (layers, 2)
                                  .Attr<ffi::Span<const int64_t>>("sizes")
                                  .Attr<int64_t>("loss")
                                  .Attr<int64_t>("decay_biases")
                                  .Ret<ffi::Buffer<ffi::F32>>()   // weights
                                  .Ret<ffi::Buffer<ffi::F32>>()   // biases
                                  .Ret<ffi::Buffer<ffi::F32>>()   // scales
                                  .Ret<ffi::Buffer<ffi::F32>>()   // loss ()
                                  .Ret<ffi::Buffer<ffi::F32>>());  // correct () 0/1
