// One per-example SGD step of socjax's MLP on the CPU, called through the XLA FFI (socjax.native).
//
// The same update as socjax.step.xla_step, exact up to float32 rounding:
//     W <- (1 - lr*l2) W - lr * dL/dW      L: the data loss of one example ("mse" or "xent")
// computed with three exact rearrangements that XLA's dense step cannot make:
//   1. sparse input: a layer's input rows whose activation is 0 (blank pixels, inactive ReLUs)
//      get no gradient, so the forward pass and the update visit only the active rows;
//   2. lazy weight decay: each layer is stored as W = s*V with a double scale s; decay is
//      s *= (1 - lr*l2) and a gradient step is V -= (lr / s_new) * g, so the untouched weights
//      cost nothing; V is folded (V *= s, s = 1) when s falls below kFoldBelow;
//   3. ReLU sparsity: the backward dot product of an active row is fused with that row's update,
//      so each visited row is read and written once.
// Biases share their layer's scale when they decay (decay_biases), else their scale stays 1.
//
// Layout (socjax/native/step.py builds it): every layer but the last is V (fan_in, P(fan_out))
// row-major, the last is stored transposed, (fan_out, P(fan_in)); P rounds up to 16 floats and the
// padding stays exactly 0. Biases are (P(fan_out),) per layer. scales is (layers, 2) float32 holding
// each layer's double s as hi + lo. Every buffer may carry leading run dimensions (vmap over runs):
// the runs are independent and are spread over XLA's CPU threads, one run per thread.
// The second handler, SocjaxSgdStepStats, also accumulates --weight-stats (see Stats below).
//
// SIMD: GCC vector extensions, one register wide (8 floats with -march=x86-64-v3, AVX2; 16 with
// AVX-512 under -march=native); dot products accumulate 16 lanes and sum them by a fixed tree on
// either. Unaligned loads throughout (the buffers are XLA's).

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <chrono>
#include <memory>
#include <mutex>
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
typedef int32_t vi __attribute__((vector_size(kWidth * sizeof(int32_t))));  // and of int32
inline vi ldi(const int32_t* p) {
  vi v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void sti(int32_t* p, vi v) { __builtin_memcpy(p, &v, sizeof v); }
inline vf absv(vf x) { return x < 0.0f ? -x : x; }

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

// A layer's histogram increments within a step: slot vectors are stored as they come (one vector
// store) and counted in batches by a scalar loop into four copies of the histogram used in turn, so
// that runs of equal slots (neighbouring weights often share a bin) do not wait on each other.
struct Tally {
  static constexpr int64_t kBatch = 4096;
  std::vector<int32_t> counts, pending = std::vector<int32_t>(kBatch);
  int64_t stride = 0, fill = 0;
  void reset(int64_t slots) {  // flush leaves the counts at zero; this only sizes them
    if (stride != slots + 1) {
      stride = slots + 1;  // + the dump slot
      counts.assign(4 * stride, 0);
    }
  }
  void add(vi s) {
    sti(pending.data() + fill, s);
    fill += kWidth;
    if (fill == kBatch) drain();
  }
  void drain() {
    int32_t* c = counts.data();
    const int32_t* k = pending.data();
    for (int64_t i = 0; i < fill; i += 4) {
      ++c[k[i]];
      ++c[stride + k[i + 1]];
      ++c[2 * stride + k[i + 2]];
      ++c[3 * stride + k[i + 3]];
    }
    fill = 0;
  }
  void flush(int32_t* hist) {  // into hist (stride - 1 slots, the dump slot dropped), then zero
    drain();
    for (int64_t j = 0; j + 1 < stride; ++j) {
      hist[j] += counts[j] + counts[stride + j] + counts[2 * stride + j] + counts[3 * stride + j];
      counts[j] = counts[stride + j] = counts[2 * stride + j] = counts[3 * stride + j] = 0;
    }
    counts[stride - 1] = counts[2 * stride - 1] = counts[3 * stride - 1] = counts[4 * stride - 1] = 0;
  }
};

// The scratch of one run's step: activations, active-row lists and deltas, per layer.
struct Scratch {
  std::vector<std::vector<float>> a;      // a[l]: input of layer l, padded; a[0] is x
  std::vector<std::vector<int32_t>> act;  // rows of layer l with a[l] != 0: the first count[l] entries
  std::vector<int32_t> count;
  std::vector<float> delta, back, out, bias_old;
  Tally tally;  // --weight-stats histogram increments of the layer being updated

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
    bias_old.assign(widest, 0.0f);
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

// For each listed row i: back[i] = V[i, :] . delta (the old row), then V[i, :] -= coef * a[i] * delta
// (times M[i, :] when kMasked: the 0/1 mask m, laid out as v; as coef * a[i] * (delta * M), so a
// mask of ones gives the unmasked update bit for bit, the same product fused the same way). Two
// rows per pass share the delta loads. With back == nullptr only the update is done.
template <bool kMasked = false>
void update_rows(float* v, int64_t row, const int32_t* idx, int32_t count, const float* a, float coef,
                 const float* delta, int64_t width, float* back, const float* m = nullptr) {
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
        if constexpr (kMasked) {
          st(p0 + at, w0 - c0 * (d * ld(m + idx[r] * row + at)));
          st(p1 + at, w1 - c1 * (d * ld(m + idx[r + 1] * row + at)));
        } else {
          st(p0 + at, w0 - c0 * d);
          st(p1 + at, w1 - c1 * d);
        }
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
        if constexpr (kMasked)
          st(p + at, w - c * (d * ld(m + idx[r] * row + at)));
        else
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

// --weight-stats (socjax.weight_stats): per weight, the sums over the epoch of dw^2 and |dw| and the
// number of steps with a nonzero gradient ("touched"), plus a per-layer histogram of |dw| over those
// steps. The cost follows the touched weights: an untouched weight's pure-decay increments are
// (s_{u+1} - s_u) * V, so with P2(u) = sum_{u' < u} (s_{u'+1} - s_{u'})^2 (P1 likewise, of
// |s_{u'+1} - s_{u'}|) a weight whose stored value went from V to V' at step u adds
//     dw^2 + V^2 P2(u) - V'^2 P2(u + 1)        (|dw| + |V| P1(u) - |V'| P1(u + 1) for sum |dw|)
// and the end of the epoch (or a fold) adds V^2 P2 (|V| P1) to every weight: by Abel summation
// this is the sum over every step, decay steps included. The touched steps' own dw, dw^2 and |dw|
// are also summed apart (the non-decay moments). Biases are few: they are counted densely.

struct Bins {  // quarter-octave bins of |dw| from the float's bits, as weight_stats._bin
  int64_t lo, per_octave, count;
  float edge[3];  // 2^(1/4), 2^(1/2), 2^(3/4) as float32
};

// Rows of a run's accumulator block (kRows, w_size + b_size), each weights then biases.
enum Row { kSq, kAbs, kLiveSum, kLiveSq, kLiveAbs, kRows };

struct Stats {  // one run's accumulators; nullptr members when not accumulating
  float* sq = nullptr;         // (kRows, w_size + b_size): row kSq, sum of dw^2 (weights telescoped),
                               // kAbs the same for |dw|; kLive*: dw, dw^2, |dw| over touched steps
  float* ab = nullptr;         // sq + n: row kAbs
  int64_t n = 0;               // w_size + b_size: the stride between rows
  int32_t* touched = nullptr;  // the same layout: steps with a nonzero gradient
  float* prefix = nullptr;     // (layers, 4): P1 (hi, lo), P2 (hi, lo) since the epoch's start or a fold
  int32_t* hist = nullptr;     // (layers, bins.count + 2): [under, bins..., over]
  Bins bins{};
};

struct Decay {  // one layer's scale in this step, for the stats
  float so, sn, p1, p1n, p2, p2n;
};

// Histogram slots of kWidth values of |dw| at once (weight_stats._bin in vector form); `dump` where
// the weight was not touched or dw is 0.
inline vi slots(vf x, vi live, const Bins& b, int32_t dump) {
  vi bits;
  std::memcpy(&bits, &x, sizeof bits);
  vi octave = (bits >> 23) - 127;
  vi mbits = (bits & 0x7FFFFF) | 0x3F800000;
  vf m;
  std::memcpy(&m, &mbits, sizeof m);
  vi pos = (octave - static_cast<int32_t>(b.lo)) * static_cast<int32_t>(b.per_octave) - (m >= b.edge[0]) -
           (m >= b.edge[1]) - (m >= b.edge[2]);
  pos = pos < -1 ? vi{} - 1 : pos;
  pos = pos > static_cast<int32_t>(b.count) ? vi{} + static_cast<int32_t>(b.count) : pos;
  return (live & (x != 0.0f)) ? pos + 1 : vi{} + dump;
}

// Account one step of kWidth stored weights that went from vo to vn; m (-1/0) marks a nonzero
// gradient. acc points at the first weight's row kSq; rows are n floats apart.
inline void account(const Decay& d, float* acc, int64_t n, int32_t* touched, vf vo, vf vn, vi m, Tally& tally,
                    const Bins& bins) {
  const vf dw = d.sn * (vn - vo) + (d.sn - d.so) * vo;
  const vf dw2 = dw * dw, adw = absv(dw);
  float *sq = acc + kSq * n, *ab = acc + kAbs * n;
  float *ls = acc + kLiveSum * n, *lsq = acc + kLiveSq * n, *lab = acc + kLiveAbs * n;
  st(sq, ld(sq) + (m ? dw2 + vo * vo * d.p2 - vn * vn * d.p2n : vf{}));
  st(ab, ld(ab) + (m ? adw + absv(vo) * d.p1 - absv(vn) * d.p1n : vf{}));
  st(ls, ld(ls) + (m ? dw : vf{}));
  st(lsq, ld(lsq) + (m ? dw2 : vf{}));
  st(lab, ld(lab) + (m ? adw : vf{}));
  sti(touched, ldi(touched) - m);
  tally.add(slots(absv(dw), m, bins, static_cast<int32_t>(bins.count + 2)));
}

// The stats version of update_rows (one row per pass): each touched weight is accounted.
void update_rows_stats(float* v, int64_t row, const int32_t* idx, int32_t count, const float* a, float coef,
                       const float* delta, int64_t width, float* back, const Decay& d, float* acc, int64_t n,
                       int32_t* touched, Tally& tally, const Bins& bins) {
  for (int32_t r = 0; r < count; ++r) {
    const int64_t at = idx[r] * row;
    float* p = v + at;
    vf c = splat(coef * a[idx[r]]);
    acc16 s;
    for (int64_t j = 0; j < width; j += kLanes)
      for (int q = 0; q < kParts; ++q) {
        const int64_t k = j + q * kWidth;
        vf dl = ld(delta + k), wo = ld(p + k);
        vf wn = wo - c * dl;
        s.v[q] += wo * dl;
        st(p + k, wn);
        account(d, acc + at + k, n, touched + at + k, wo, wn, dl != 0.0f, tally, bins);
      }
    if (back) back[idx[r]] = hsum(s);
  }
}

// Biases, densely: dw of every entry, its square and size, and whether its gradient (delta) was
// nonzero. acc points at the first bias's row kSq; rows are n floats apart.
void account_biases(float* acc, int64_t n, int32_t* touched, const float* vo, const float* vn, const float* delta,
                    int64_t count, float so, float sn) {
  for (int64_t j = 0; j < count; ++j) {
    const float dw = sn * (vn[j] - vo[j]) + (sn - so) * vo[j];
    acc[kSq * n + j] += dw * dw;
    acc[kAbs * n + j] += std::fabs(dw);
    if (delta[j] != 0.0f) {
      acc[kLiveSum * n + j] += dw;
      acc[kLiveSq * n + j] += dw * dw;
      acc[kLiveAbs * n + j] += std::fabs(dw);
      touched[j] += 1;
    }
  }
}

// A pruned network's fixed 0/1 masks in the stored layout (w: as the weights, b: as the biases): every
// gradient update is multiplied by them, so a pruned element (stored 0) stays exactly 0 under decay
// and SGD. nullptr members: no mask.
struct Mask {
  const float* w = nullptr;
  const float* b = nullptr;
};

// One SGD step of one run, in place. Returns the data loss and whether argmax(out) == label; with
// stats.sq set, also accumulates the weight statistics (not together with a mask).
void step_one(const Layout& lay, const Settings& set, Scratch& sc, const float* x, int32_t label, float lr,
              float l2, float* w, float* b, float* scales, float* loss_out, float* correct_out,
              const Stats& stats = Stats{}, const Mask& mask = Mask{}) {
  const int L = lay.layers;
  double s_old[64], s_new[64];
  Decay decay[64];
  const double factor = 1.0 - static_cast<double>(lr) * static_cast<double>(l2);
  for (int l = 0; l < L; ++l) {
    s_old[l] = get_scale(scales + 2 * l);
    s_new[l] = s_old[l] * factor;
    if (stats.sq) {
      const float* pre = stats.prefix + 4 * l;
      const double p1 = get_scale(pre), p2 = get_scale(pre + 2), ds = s_new[l] - s_old[l];
      decay[l] = Decay{static_cast<float>(s_old[l]), static_cast<float>(s_new[l]), static_cast<float>(p1),
                       static_cast<float>(p1 + std::fabs(ds)), static_cast<float>(p2), static_cast<float>(p2 + ds * ds)};
      put_scale(stats.prefix + 4 * l, p1 + std::fabs(ds));
      put_scale(stats.prefix + 4 * l + 2, p2 + ds * ds);
    }
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
  float* vb_old = sc.bias_old.data();  // a layer's biases before the update, for the stats
  {
    const float coef = static_cast<float>(lr / s_new[last]);
    float* back = sc.back.data();
    const int64_t at = lay.w_at[last];
    if (stats.sq) sc.tally.reset(stats.bins.count + 2);
    for (int64_t j = 0; j < width; j += kWidth) {
      vf g{}, aj = ld(a + j);
      for (int64_t k = 0; k < classes; ++k) {
        float* p = vt + k * width + j;
        vf wk = ld(p);
        vf wn = wk - (coef * delta[k]) * (mask.w ? aj * ld(mask.w + at + k * width + j) : aj);
        g += wk * delta[k];
        st(p, wn);
        if (stats.sq) {
          const int64_t e = at + k * width + j;
          account(decay[last], stats.sq + e, stats.n, stats.touched + e, wk, wn,
                  (aj != 0.0f) & (delta[k] != 0.0f ? -1 : 0), sc.tally, stats.bins);
        }
      }
      st(back + j, g);
    }
    if (stats.sq) sc.tally.flush(stats.hist + last * (stats.bins.count + 2));
    const float cb = static_cast<float>(lr / bias_scale(s_new, last));
    if (stats.sq) std::memcpy(vb_old, vb, padded(classes) * sizeof(float));
    for (int64_t k = 0; k < classes; ++k) vb[k] -= cb * (delta[k] * (mask.b ? mask.b[lay.b_at[last] + k] : 1.0f));
    if (stats.sq) {
      const int64_t e = lay.w_size + lay.b_at[last];
      account_biases(stats.sq + e, stats.n, stats.touched + e, vb_old, vb, delta, classes,
                     static_cast<float>(bias_scale(s_old, last)), static_cast<float>(bias_scale(s_new, last)));
    }
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
    if (stats.sq) std::memcpy(vb_old, vbl, width_l * sizeof(float));
    for (int64_t j = 0; j < width_l; j += kWidth)
      st(vbl + j, ld(vbl + j) - cb * (ld(delta + j) * (mask.b ? ld(mask.b + lay.b_at[l] + j) : splat(1.0f))));
    const float coef = static_cast<float>(lr / s_new[l]);
    float* back = l > 0 ? sc.back.data() : nullptr;
    if (mask.w) {
      update_rows<true>(v, width_l, sc.act[l].data(), sc.count[l], sc.a[l].data(), coef, delta, width_l, back,
                        mask.w + lay.w_at[l]);
      continue;
    }
    if (!stats.sq) {
      update_rows(v, width_l, sc.act[l].data(), sc.count[l], sc.a[l].data(), coef, delta, width_l, back);
      continue;
    }
    const int64_t e = lay.w_size + lay.b_at[l];
    account_biases(stats.sq + e, stats.n, stats.touched + e, vb_old, vbl, delta, width_l,
                   static_cast<float>(bias_scale(s_old, l)), static_cast<float>(bias_scale(s_new, l)));
    const int64_t at = lay.w_at[l];
    sc.tally.reset(stats.bins.count + 2);
    update_rows_stats(v, width_l, sc.act[l].data(), sc.count[l], sc.a[l].data(), coef, delta, width_l, back,
                      decay[l], stats.sq + at, stats.n, stats.touched + at, sc.tally, stats.bins);
    sc.tally.flush(stats.hist + l * (stats.bins.count + 2));
  }
  // the new scales; fold a layer whose scale got small
  for (int l = 0; l < L; ++l) {
    double s = s_new[l];
    if (s < kFoldBelow) {
      const int64_t rows = l == L - 1 ? lay.n[l + 1] : lay.n[l];
      float* v = w + lay.w_at[l];
      const vf f = splat(static_cast<float>(s));
      if (stats.sq) {  // close every weight's pending decay, then start the prefix sums again
        const vf p1 = splat(decay[l].p1n), p2 = splat(decay[l].p2n);
        float *sq = stats.sq + lay.w_at[l], *ab = stats.ab + lay.w_at[l];
        for (int64_t i = 0; i < rows * lay.row[l]; i += kWidth) {
          vf vv = ld(v + i);
          st(sq + i, ld(sq + i) + vv * vv * p2);
          st(ab + i, ld(ab + i) + absv(vv) * p1);
        }
        std::fill(stats.prefix + 4 * l, stats.prefix + 4 * l + 4, 0.0f);
      }
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

// The runs of a vmapped call are spread over XLA's intra-op thread pool. Steps come every few tens
// of microseconds, and a task scheduled per step often starts too late to help, so the helpers
// stay: a helper is a pool task that serves job after job, spinning between them, and returns to
// the pool after kLinger without a job (at the end of an epoch, say). The caller claims runs too,
// so a job completes however many helpers arrive. A claim carries the job's generation in its high
// 32 bits: a helper that saw an old job can claim nothing from a new one.
class Crew {
 public:
  using Fn = void (*)(const void* ctx, int64_t run);

  void run(ffi::ThreadPool& threads, int64_t runs, Fn fn, const void* ctx) {
    const int64_t want = std::min<int64_t>(runs, threads.num_threads() + 1) - 1;
    std::unique_lock<std::mutex> mine(busy_, std::try_to_lock);  // one job at a time
    if (want <= 0 || !mine.owns_lock()) {
      for (int64_t r = 0; r < runs; ++r) fn(ctx, r);
      return;
    }
    const uint64_t gen = ++generation_;
    fn_.store(fn, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    runs_.store(runs, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    next_.store(gen << 32, std::memory_order_release);
    posted_.store(gen, std::memory_order_release);
    for (int64_t h = helpers_.load(); h < want; h = helpers_.load())
      if (helpers_.compare_exchange_weak(h, h + 1)) threads.Schedule([this] { serve(); });
    work(gen);
    while (done_.load(std::memory_order_acquire) < runs) __builtin_ia32_pause();
  }

 private:
  static constexpr auto kLinger = std::chrono::milliseconds(2);

  void work(uint64_t gen) {  // claim and step runs of job `gen` until none is left
    const Fn fn = fn_.load(std::memory_order_relaxed);
    const void* ctx = ctx_.load(std::memory_order_relaxed);
    const int64_t runs = runs_.load(std::memory_order_relaxed);
    for (uint64_t claim = next_.load(std::memory_order_acquire);;) {
      const int64_t r = static_cast<int64_t>(claim & 0xffffffffu);
      if ((claim >> 32) != gen || r >= runs) return;
      if (!next_.compare_exchange_weak(claim, claim + 1, std::memory_order_acq_rel)) continue;
      fn(ctx, r);
      done_.fetch_add(1, std::memory_order_release);
      claim = next_.load(std::memory_order_acquire);
    }
  }

  void serve() {
    uint64_t seen = 0;
    auto idle_since = std::chrono::steady_clock::now();
    for (int spins = 0;; ++spins) {
      const uint64_t gen = posted_.load(std::memory_order_acquire);
      if (gen != seen) {
        seen = gen;
        work(gen);
        idle_since = std::chrono::steady_clock::now();
        spins = 0;
      } else if (spins % 64 == 63 && std::chrono::steady_clock::now() - idle_since > kLinger) {
        helpers_.fetch_sub(1);
        return;
      } else {
        __builtin_ia32_pause();
      }
    }
  }

  std::mutex busy_;
  std::atomic<uint64_t> posted_{0}, next_{0};
  uint64_t generation_ = 0;
  std::atomic<Fn> fn_{nullptr};
  std::atomic<const void*> ctx_{nullptr};
  std::atomic<int64_t> runs_{0}, done_{0}, helpers_{0};
};

Crew& crew() {
  static Crew* c = new Crew();  // never destroyed: helpers may still be returning to the pool at exit
  return *c;
}

template <typename F>
void for_each_run(ffi::ThreadPool& threads, int64_t runs, const F& one) {
  if (runs == 1) return one(0);
  crew().run(threads, runs, [](const void* ctx, int64_t r) { (*static_cast<const F*>(ctx))(r); }, &one);
}

template <ffi::DataType T>
void alias(ffi::Buffer<T>& in, ffi::ResultBuffer<T>& out) {
  // outputs alias the inputs (input_output_aliases); copy if XLA ever hands separate buffers
  if (out->untyped_data() != in.untyped_data()) std::memcpy(out->untyped_data(), in.untyped_data(), in.size_bytes());
}

// What both handlers start with: the layer count and every buffer checked against the layout, and
// the parameter buffers aliased to their outputs.
ffi::Error prepare(const Layout& lay, int64_t runs, ffi::Buffer<ffi::F32>& x, ffi::Buffer<ffi::F32>& lr,
                   ffi::Buffer<ffi::F32>& l2, ffi::Buffer<ffi::F32>& w_in, ffi::Buffer<ffi::F32>& b_in,
                   ffi::Buffer<ffi::F32>& s_in, ffi::ResultBuffer<ffi::F32>& w, ffi::ResultBuffer<ffi::F32>& b,
                   ffi::ResultBuffer<ffi::F32>& s) {
  if (lay.layers < 1 || lay.layers > 63) return ffi::Error::InvalidArgument("socjax_sgd_step: 1 to 63 layers");
  if (runs < 1 || static_cast<int64_t>(x.element_count()) != runs * lay.n[0] ||
      static_cast<int64_t>(w_in.element_count()) != runs * lay.w_size ||
      static_cast<int64_t>(b_in.element_count()) != runs * lay.b_size ||
      static_cast<int64_t>(s_in.element_count()) != runs * 2 * lay.layers ||
      static_cast<int64_t>(lr.element_count()) != runs || static_cast<int64_t>(l2.element_count()) != runs)
    return ffi::Error::InvalidArgument("socjax_sgd_step: buffer sizes do not match the layer sizes");
  alias(w_in, w);
  alias(b_in, b);
  alias(s_in, s);
  return ffi::Error::Success();
}

template <typename PerRun, typename MaskOf>
void step_runs(ffi::ThreadPool& threads, const Layout& lay, const Settings& set, int64_t runs,
               ffi::Buffer<ffi::F32>& x, ffi::Buffer<ffi::S32>& label, ffi::Buffer<ffi::F32>& lr,
               ffi::Buffer<ffi::F32>& l2, ffi::ResultBuffer<ffi::F32>& w, ffi::ResultBuffer<ffi::F32>& b,
               ffi::ResultBuffer<ffi::F32>& s, ffi::ResultBuffer<ffi::F32>& loss_out,
               ffi::ResultBuffer<ffi::F32>& correct_out, const PerRun& stats_of, const MaskOf& mask_of) {
  auto one = [&](int64_t r) {
    thread_local Scratch sc;
    thread_local std::vector<int64_t> fitted;
    if (fitted != lay.n) {
      sc.fit(lay);
      fitted = lay.n;
    }
    step_one(lay, set, sc, x.typed_data() + r * lay.n[0], label.typed_data()[r], lr.typed_data()[r],
             l2.typed_data()[r], w->typed_data() + r * lay.w_size, b->typed_data() + r * lay.b_size,
             s->typed_data() + r * 2 * lay.layers, loss_out->typed_data() + r, correct_out->typed_data() + r,
             stats_of(r), mask_of(r));
  };
  for_each_run(threads, runs, one);
}

// The plain step, and with nonempty mask buffers (each run's weights- and biases-shaped 0/1 masks,
// see Mask) the step of a pruned network.
ffi::Error Step(ffi::ThreadPool threads, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::S32> label,
                ffi::Buffer<ffi::F32> lr, ffi::Buffer<ffi::F32> l2, ffi::Buffer<ffi::F32> w_in,
                ffi::Buffer<ffi::F32> b_in, ffi::Buffer<ffi::F32> s_in, ffi::Buffer<ffi::F32> w_mask,
                ffi::Buffer<ffi::F32> b_mask, ffi::Span<const int64_t> sizes, int64_t loss, int64_t decay_biases,
                ffi::ResultBuffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> b, ffi::ResultBuffer<ffi::F32> s,
                ffi::ResultBuffer<ffi::F32> loss_out, ffi::ResultBuffer<ffi::F32> correct_out) {
  const Layout lay(sizes);
  const int64_t runs = static_cast<int64_t>(label.element_count());
  if (auto e = prepare(lay, runs, x, lr, l2, w_in, b_in, s_in, w, b, s); e.failure()) return e;
  const bool masked = w_mask.element_count() > 0;
  if (masked && (static_cast<int64_t>(w_mask.element_count()) != runs * lay.w_size ||
                 static_cast<int64_t>(b_mask.element_count()) != runs * lay.b_size))
    return ffi::Error::InvalidArgument("socjax_sgd_step: mask buffers do not match the layer sizes");
  step_runs(threads, lay, Settings{static_cast<int>(loss), decay_biases != 0}, runs, x, label, lr, l2, w, b, s,
            loss_out, correct_out, [](int64_t) { return Stats{}; }, [&](int64_t r) {
              return masked ? Mask{w_mask.typed_data() + r * lay.w_size, b_mask.typed_data() + r * lay.b_size}
                            : Mask{};
            });
  return ffi::Error::Success();
}

ffi::Error StepStats(ffi::ThreadPool threads, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::S32> label,
                     ffi::Buffer<ffi::F32> lr, ffi::Buffer<ffi::F32> l2, ffi::Buffer<ffi::F32> w_in,
                     ffi::Buffer<ffi::F32> b_in, ffi::Buffer<ffi::F32> s_in, ffi::Buffer<ffi::F32> acc_in,
                     ffi::Buffer<ffi::S32> touched_in, ffi::Buffer<ffi::F32> prefix_in, ffi::Buffer<ffi::S32> hist_in,
                     ffi::Span<const int64_t> sizes, int64_t loss, int64_t decay_biases, int64_t octave_lo,
                     int64_t per_octave, int64_t num_bins, ffi::ResultBuffer<ffi::F32> w,
                     ffi::ResultBuffer<ffi::F32> b, ffi::ResultBuffer<ffi::F32> s, ffi::ResultBuffer<ffi::F32> acc,
                     ffi::ResultBuffer<ffi::S32> touched, ffi::ResultBuffer<ffi::F32> prefix,
                     ffi::ResultBuffer<ffi::S32> hist, ffi::ResultBuffer<ffi::F32> loss_out,
                     ffi::ResultBuffer<ffi::F32> correct_out) {
  const Layout lay(sizes);
  const int64_t runs = static_cast<int64_t>(label.element_count());
  if (auto e = prepare(lay, runs, x, lr, l2, w_in, b_in, s_in, w, b, s); e.failure()) return e;
  const int64_t n = lay.w_size + lay.b_size;
  if (static_cast<int64_t>(acc_in.element_count()) != runs * kRows * n ||
      static_cast<int64_t>(touched_in.element_count()) != runs * n ||
      static_cast<int64_t>(prefix_in.element_count()) != runs * 4 * lay.layers ||
      static_cast<int64_t>(hist_in.element_count()) != runs * lay.layers * (num_bins + 2))
    return ffi::Error::InvalidArgument("socjax_sgd_step_stats: statistics buffers do not match the layer sizes");
  alias(acc_in, acc);
  alias(touched_in, touched);
  alias(prefix_in, prefix);
  alias(hist_in, hist);
  Bins bins{octave_lo, per_octave, num_bins, {}};
  for (int q = 1; q <= 3; ++q) bins.edge[q - 1] = static_cast<float>(std::pow(2.0, q / static_cast<double>(per_octave)));
  auto stats_of = [&](int64_t r) {
    Stats st;
    st.sq = acc->typed_data() + r * kRows * n;
    st.ab = st.sq + kAbs * n;
    st.n = n;
    st.touched = touched->typed_data() + r * n;
    st.prefix = prefix->typed_data() + r * 4 * lay.layers;
    st.hist = hist->typed_data() + r * lay.layers * (num_bins + 2);
    st.bins = bins;
    return st;
  };
  step_runs(threads, lay, Settings{static_cast<int>(loss), decay_biases != 0}, runs, x, label, lr, l2, w, b, s,
            loss_out, correct_out, stats_of, [](int64_t) { return Mask{}; });
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
                                  .Arg<ffi::Buffer<ffi::F32>>()  // weight mask, as the weights, or empty
                                  .Arg<ffi::Buffer<ffi::F32>>()  // bias mask, as the biases, or empty
                                  .Attr<ffi::Span<const int64_t>>("sizes")
                                  .Attr<int64_t>("loss")
                                  .Attr<int64_t>("decay_biases")
                                  .Ret<ffi::Buffer<ffi::F32>>()   // weights
                                  .Ret<ffi::Buffer<ffi::F32>>()   // biases
                                  .Ret<ffi::Buffer<ffi::F32>>()   // scales
                                  .Ret<ffi::Buffer<ffi::F32>>()   // loss ()
                                  .Ret<ffi::Buffer<ffi::F32>>());  // correct () 0/1

XLA_FFI_DEFINE_HANDLER_SYMBOL(SocjaxSgdStepStats, StepStats,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x (784,)
                                  .Arg<ffi::Buffer<ffi::S32>>()  // label ()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // lr ()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // l2 ()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // weights, flat
                                  .Arg<ffi::Buffer<ffi::F32>>()  // biases, flat
                                  .Arg<ffi::Buffer<ffi::F32>>()  // scales (layers, 2)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // acc (5, weights + biases): see Row
                                  .Arg<ffi::Buffer<ffi::S32>>()  // touched (weights + biases)
                                  .Arg<ffi::Buffer<ffi::F32>>()  // prefix (layers, 4)
                                  .Arg<ffi::Buffer<ffi::S32>>()  // hist (layers, bins + 2)
                                  .Attr<ffi::Span<const int64_t>>("sizes")
                                  .Attr<int64_t>("loss")
                                  .Attr<int64_t>("decay_biases")
                                  .Attr<int64_t>("octave_lo")
                                  .Attr<int64_t>("per_octave")
                                  .Attr<int64_t>("num_bins")
                                  .Ret<ffi::Buffer<ffi::F32>>()   // weights
                                  .Ret<ffi::Buffer<ffi::F32>>()   // biases
                                  .Ret<ffi::Buffer<ffi::F32>>()   // scales
                                  .Ret<ffi::Buffer<ffi::F32>>()   // acc
                                  .Ret<ffi::Buffer<ffi::S32>>()   // touched
                                  .Ret<ffi::Buffer<ffi::F32>>()   // prefix
                                  .Ret<ffi::Buffer<ffi::S32>>()   // hist
                                  .Ret<ffi::Buffer<ffi::F32>>()   // loss ()
                                  .Ret<ffi::Buffer<ffi::F32>>());  // correct () 0/1
