// Named argument structs shared by every kernel implementation (reference, cpu, and later cuda).
// Activations are row-major [rows, width] f32. A "step" holds the rows of several sequences back
// to back: sequence s owns rows [row_begin[s], row_begin[s+1]). Per-sequence recurrent state is
// reached through one pointer per sequence (slots need not be contiguous).
#pragma once

#include <cstddef>
#include <cstdint>

#include "retain/engine/dtype.h"

namespace retain::kernels {

using engine::DType;

enum class MatrixLayout {
  kRowMajor,  // element (r, c) at r·cols + c
  // Rows in panels of kPackRows, each panel column-major: element (r, c) at
  // (r / kPackRows · cols + c) · kPackRows + r % kPackRows; the last panel is zero-padded. A
  // product then reads one contiguous stream per panel and needs no horizontal sums.
  kPanels,
};
constexpr int kPackRows = 64;

// A weight matrix of nn.Linear shape [rows = out, cols = in], stored as dtype in `layout`.
struct MatrixRef {
  DType dtype = DType::kF32;
  int rows = 0;
  int cols = 0;
  const void* data = nullptr;
  MatrixLayout layout = MatrixLayout::kRowMajor;
};

inline size_t ElementIndex(const MatrixRef& m, size_t r, size_t c) {
  if (m.layout == MatrixLayout::kRowMajor) return r * m.cols + c;
  return (r / kPackRows * m.cols + c) * kPackRows + r % kPackRows;
}

// Elements a matrix of this shape occupies in a layout (panels round rows up).
inline size_t StoredElements(MatrixLayout layout, int rows, int cols) {
  const size_t r = layout == MatrixLayout::kRowMajor ? rows : (rows + kPackRows - 1) / kPackRows * kPackRows;
  return r * static_cast<size_t>(cols);
}

struct SeqRows {
  int num_seqs = 0;
  const int* row_begin = nullptr;  // [num_seqs + 1]
};

// y[M, N] = x[M, K] · Wᵀ, W = [N, K].
struct MatMulArgs {
  const float* x = nullptr;
  int m = 0;
  MatrixRef w;
  float* y = nullptr;
};

// prev[t] = x[t-1] within each sequence, prev[first row] = *state; then *state = x[last row].
struct TokenShiftArgs {
  SeqRows seqs;
  int width = 0;
  const float* x = nullptr;       // [rows, width]
  float* const* states = nullptr;  // [num_seqs] -> [width]
  float* prev = nullptr;          // [rows, width]
};

// RWKV-7 per-token preparation of the WKV inputs, after the projections and LoRAs (spec §3.1):
//   w = exp(-0.606531·σ(w0 + wz)); ia = σ(a0 + az); kk = normalize_head(k⊙k_k);
//   k ← k⊙(1 + (ia-1)⊙k_a); a = -kk; b = kk⊙ia;
//   layer 0: v_first = v, else v ← v + (v_first - v)⊙σ(v0 + vz).
// Outputs overwrite: wz -> w, az -> a, k in place, v in place; b written to `b`.
struct Rwkv7PrepareArgs {
  int rows = 0, n_head = 0, head_size = 0;
  bool first_layer = false;
  float* k = nullptr;
  float* v = nullptr;
  float* wz = nullptr;
  float* az = nullptr;
  const float* vz = nullptr;  // unused on the first layer
  float* v_first = nullptr;   // written on the first layer, read otherwise
  float* b = nullptr;
  const float *w0 = nullptr, *a0 = nullptr, *v0 = nullptr, *k_k = nullptr, *k_a = nullptr;
};

// RWKV-7 WKV scan (spec §3.2), state per head [N value][N key] f32, updated in place:
//   S = S·diag(w) + (S·a) bᵀ + v kᵀ;  y = S·r
struct Wkv7Args {
  SeqRows seqs;
  int n_head = 0, head_size = 0;
  const float *r = nullptr, *w = nullptr, *k = nullptr, *v = nullptr, *a = nullptr, *b = nullptr;
  float* const* states = nullptr;  // [num_seqs] -> [n_head, N, N]
  float* y = nullptr;              // [rows, C]
};

// y ← (GroupNorm_H(y) + Σ_j(r⊙k⊙r_k)_h · v_h) ⊙ g
struct Rwkv7OutputArgs {
  int rows = 0, n_head = 0, head_size = 0;
  float eps = 64e-5f;
  float* y = nullptr;
  const float *r = nullptr, *k = nullptr, *v = nullptr, *g = nullptr;
  const float *ln_w = nullptr, *ln_b = nullptr, *r_k = nullptr;
};

// RWKV-4 WKV scan (spec §2.2), log-sum-exp stabilised. State per sequence: aa, bb, pp, each [C].
struct Wkv4Args {
  SeqRows seqs;
  int width = 0;
  const float* k = nullptr;
  const float* v = nullptr;
  const float* time_first = nullptr;  // u
  const float* time_decay = nullptr;  // already -exp(raw)
  float* const* aa = nullptr;
  float* const* bb = nullptr;
  float* const* pp = nullptr;
  float* wkv = nullptr;  // [rows, C]
};

}  // namespace retain::kernels
