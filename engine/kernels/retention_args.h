// Named argument structs of the scalar-decay ops that RetNet and TransNormerLLM share (spec
// shared/spec/retnet-transnormer.md): retention in its three compute forms, rotations (RetNet's
// xPos-style and NeoX pairs, TransNormerLLM's LRPE), grouped norms, and the per-session position
// that drives the rotations. Conventions as in kernel_args.h: activations row-major f32, the rows
// of several sequences back to back, per-sequence state reached through one pointer per sequence.
#pragma once

#include <cstdint>

#include "engine/kernels/kernel_args.h"

namespace retain::kernels {

// A session's position (tokens it has seen) lives in its state block as two f32 words holding
// exact integers, lo = position mod 2^20 and hi = position / 2^20. Both stay below 2^24, so they
// are exactly representable, finite (a snapshot passes the engine's finite-float check) and
// survive export/import bit for bit; the range, 2^43 tokens, is beyond any session.
constexpr int kPositionWords = 2;
constexpr int64_t kPositionLoRange = int64_t{1} << 20;
constexpr int64_t kPositionHiRange = int64_t{1} << 23;

inline int64_t ReadPosition(const float* words) {
  return static_cast<int64_t>(words[0]) + static_cast<int64_t>(words[1]) * kPositionLoRange;
}
inline void WritePosition(float* words, int64_t position) {
  words[0] = static_cast<float>(position % kPositionLoRange);
  words[1] = static_cast<float>(position / kPositionLoRange);
}
// True when `words` are what WritePosition writes (used to vet imported snapshots).
inline bool IsPositionEncoding(const float* words) {
  for (int i = 0; i < kPositionWords; ++i) {
    const float w = words[i];
    const float limit = static_cast<float>(i == 0 ? kPositionLoRange : kPositionHiRange);
    if (!(w >= 0.0f && w < limit) || w != static_cast<float>(static_cast<int64_t>(w))) return false;
  }
  return true;
}

// How a sequence's rows of one step are computed. All three give the same outputs and the same
// final state up to rounding. A sequence with a single row always takes the recurrent path (the
// forms coincide there and the recurrent one is cheapest).
enum class RetentionForm : uint8_t {
  kRecurrent,  // token by token: S = γS + kᵀv; o = qS
  kChunkwise,  // chunks of chunk_size: intra-chunk masked products, inter-chunk via the state
  kParallel,   // every row against every earlier row of the step, plus the carried state: the
               // plain reference the other two are tested against
};

// Head `h` of row `r` in a [rows, n_head * width] buffer.
template <typename T>
inline T* HeadRow(T* base, int r, int n_head, int width, int h) {
  return base + (static_cast<size_t>(r) * n_head + h) * width;
}

// Scalar-decay linear attention (spec A.4-A.6, B.4-B.6), per head h with decay γ_h = exp(log_decay[h]):
//   o_n = γ^{i+1} q_n S₀ + Σ_{m ≤ n in this step} γ^{n−m} (q_n·k_m) v_m,   i = n − first row
//   S   ← γ^L S₀ + Σ_j γ^{L−1−j} k_jᵀ v_j           (state after the step's last row)
// Every power is formed as exp(j·log γ) with 0 ≤ j ≤ max(chunk, step rows), never as a running
// product or a negative exponent, so long sequences neither overflow nor underflow.
// State per sequence: [n_head, key_size, value_size] f32, updated in place. q and k already carry
// rotation, scale and feature map; o is raw (no norm).
struct RetentionArgs {
  SeqRows seqs;
  int n_head = 0, key_size = 0, value_size = 0;
  RetentionForm form = RetentionForm::kChunkwise;
  int chunk_size = 64;               // kChunkwise: rows per chunk, >= 1
  const float* q = nullptr;          // [rows, n_head * key_size]
  const float* k = nullptr;          // [rows, n_head * key_size]
  const float* v = nullptr;          // [rows, n_head * value_size]
  const float* log_decay = nullptr;  // [n_head] f32, <= 0
  float* const* states = nullptr;    // [num_seqs] -> [n_head, key_size, value_size]
  float* o = nullptr;                // [rows, n_head * value_size]
};

// Per-row angle tables: cos[r, i] = cos(p_r·θ_i), sin likewise, p_r = the sequence's position +
// (r − its first row). The product and the trigonometry are done in f64, stored as f32: exact
// for any position a session reaches, whatever the weight dtype.
struct RotaryAnglesArgs {
  SeqRows seqs;
  const float* const* positions = nullptr;  // [num_seqs] -> the session's position words
  int n_theta = 0;
  const float* theta = nullptr;  // [n_theta] f32
  float* cos = nullptr;          // [rows, n_theta]
  float* sin = nullptr;          // [rows, n_theta]
};

enum class RotationStyle : uint8_t {
  kInterleaved,  // torchscale RetNet: pairs (2i, 2i+1) of each head, angle table [rows, head_size/2]
  kHalfSplit,    // fla RetNet (NeoX): pairs (i, i + head_size/2), angle table [rows, head_size/2]
  kLrpe,         // TransNormerLLM: y_h = [x_h⊙cos(pθ_h), x_h⊙sin(pθ_h)], table [rows, n_head·head_size],
                 // output twice as wide: [rows, n_head, 2·head_size]
};

// y = scale · rotate(x). x [rows, n_head·head_size]; y may alias x except for kLrpe.
struct RotateArgs {
  RotationStyle style = RotationStyle::kInterleaved;
  int rows = 0, n_head = 0, head_size = 0;
  float scale = 1.0f;
  const float* cos = nullptr;
  const float* sin = nullptr;
  const float* x = nullptr;
  float* y = nullptr;
};

// Position of each sequence += its rows in this step.
struct AdvancePositionsArgs {
  SeqRows seqs;
  float* const* positions = nullptr;  // [num_seqs] -> position words
};

enum class NormKind : uint8_t {
  kRms,    // x / sqrt(mean(x²) + eps)
  kLayer,  // (x − mean) / sqrt(var + eps)
};

// Normalises each group of `group` consecutive channels of each row (group == width: the whole
// row; group == head width: per head), then y = normed·weight + bias, each optional and indexed
// by the channel within the group. Statistics accumulate in f64. y may alias x.
struct NormArgs {
  NormKind kind = NormKind::kRms;
  int rows = 0, width = 0, group = 0;
  float eps = 1e-6f;
  const float* x = nullptr;
  const float* weight = nullptr;  // [group] or nullptr
  const float* bias = nullptr;    // [group] or nullptr
  float* y = nullptr;
};

}  // namespace retain::kernels
