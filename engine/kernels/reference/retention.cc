// Reference scalar-decay kernels, written to mirror the spec's equations (retnet-transnormer.md
// A.4-A.6 and B.4-B.6). The three retention forms are separate functions on purpose: each is the
// readable statement of its form, and the forms tests compare them against each other.
#include "engine/kernels/reference/retention.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace retain::kernels::reference {
namespace {

// log(FLT_MIN): below this exp() of an f32 is denormal.
constexpr float kMinNormalLog = -87.0f;

// S = γ S + kᵀ v; o = q S, token by token (spec A.5, B.5).
void RecurrentHead(const RetentionArgs& a, int begin, int end, int h, float* s) {
  const int dk = a.key_size, dv = a.value_size;
  const float g = DecayPower(a.log_decay[h], 1);
  for (int r = begin; r < end; ++r) {
    const float* q = HeadRow(a.q, r, a.n_head, dk, h);
    const float* k = HeadRow(a.k, r, a.n_head, dk, h);
    const float* v = HeadRow(a.v, r, a.n_head, dv, h);
    float* o = HeadRow(a.o, r, a.n_head, dv, h);
    std::fill(o, o + dv, 0.0f);
    for (int d = 0; d < dk; ++d) {
      float* sd = s + static_cast<size_t>(d) * dv;
      const float kd = k[d], qd = q[d];
      for (int e = 0; e < dv; ++e) sd[e] = g * sd[e] + kd * v[e];
      for (int e = 0; e < dv; ++e) o[e] += qd * sd[e];
    }
  }
}

// Chunks of B rows (spec A.6, B.6, "state at the last token" convention): for a chunk of m rows,
//   o_i = γ^{i+1} q_i S + Σ_{j≤i} γ^{i−j} (q_i·k_j) v_j;   S ← γ^m S + Σ_j γ^{m−1−j} k_jᵀ v_j.
// Only in-chunk relative powers (0..B) are ever formed.
void ChunkwiseHead(const RetentionArgs& a, int begin, int end, int h, float* s) {
  const int dk = a.key_size, dv = a.value_size;
  const int chunk = std::max(1, std::min(a.chunk_size, end - begin));
  std::vector<float> pw(chunk + 1);
  for (int t = 0; t <= chunk; ++t) pw[t] = DecayPower(a.log_decay[h], t);
  std::vector<float> score(static_cast<size_t>(chunk) * chunk);
  std::vector<float> qs(static_cast<size_t>(chunk) * dk), ks(static_cast<size_t>(chunk) * dk);
  for (int c0 = begin; c0 < end; c0 += chunk) {
    const int m = std::min(chunk, end - c0);
    // Intra-chunk: masked, decayed scores, then their product with V.
    for (int i = 0; i < m; ++i) {
      const float* q = HeadRow(a.q, c0 + i, a.n_head, dk, h);
      for (int j = 0; j <= i; ++j) {
        const float* k = HeadRow(a.k, c0 + j, a.n_head, dk, h);
        float dot = 0;
        for (int d = 0; d < dk; ++d) dot += q[d] * k[d];
        score[static_cast<size_t>(i) * chunk + j] = dot * pw[i - j];
      }
      float* o = HeadRow(a.o, c0 + i, a.n_head, dv, h);
      std::fill(o, o + dv, 0.0f);
      for (int j = 0; j <= i; ++j) {
        const float w = score[static_cast<size_t>(i) * chunk + j];
        const float* v = HeadRow(a.v, c0 + j, a.n_head, dv, h);
        for (int e = 0; e < dv; ++e) o[e] += w * v[e];
      }
    }
    // Decayed copies: query rows weighted γ^{i+1}, key rows γ^{m−1−j}, laid out [key channel][row]
    // so the state pass below reads them contiguously.
    for (int i = 0; i < m; ++i) {
      const float* q = HeadRow(a.q, c0 + i, a.n_head, dk, h);
      const float* k = HeadRow(a.k, c0 + i, a.n_head, dk, h);
      for (int d = 0; d < dk; ++d) {
        qs[static_cast<size_t>(d) * chunk + i] = q[d] * pw[i + 1];
        ks[static_cast<size_t>(d) * chunk + i] = k[d] * pw[m - 1 - i];
      }
    }
    // Inter-chunk, one pass over the state: each row S[d] first feeds the outputs (old state),
    // then is decayed and receives the chunk's keys and values.
    for (int d = 0; d < dk; ++d) {
      float* sd = s + static_cast<size_t>(d) * dv;
      const float* qd = qs.data() + static_cast<size_t>(d) * chunk;
      const float* kd = ks.data() + static_cast<size_t>(d) * chunk;
      for (int i = 0; i < m; ++i) {
        float* o = HeadRow(a.o, c0 + i, a.n_head, dv, h);
        const float w = qd[i];
        for (int e = 0; e < dv; ++e) o[e] += w * sd[e];
      }
      const float decay = pw[m];
      for (int e = 0; e < dv; ++e) sd[e] *= decay;
      for (int j = 0; j < m; ++j) {
        const float w = kd[j];
        const float* v = HeadRow(a.v, c0 + j, a.n_head, dv, h);
        for (int e = 0; e < dv; ++e) sd[e] += w * v[e];
      }
    }
  }
}

// Every row against every earlier row of the step plus the carried state (spec A.4, B.4 with an
// initial state), accumulated in f64: the plainest statement, O(L²), the tests' reference.
void ParallelHead(const RetentionArgs& a, int begin, int end, int h, float* s) {
  const int dk = a.key_size, dv = a.value_size, len = end - begin;
  const float lg = a.log_decay[h];
  std::vector<double> acc(dv);
  for (int i = 0; i < len; ++i) {
    const float* q = HeadRow(a.q, begin + i, a.n_head, dk, h);
    std::fill(acc.begin(), acc.end(), 0.0);
    const double carried = DecayPower(lg, i + 1);
    for (int d = 0; d < dk; ++d) {
      const double w = carried * q[d];
      const float* sd = s + static_cast<size_t>(d) * dv;
      for (int e = 0; e < dv; ++e) acc[e] += w * sd[e];
    }
    for (int j = 0; j <= i; ++j) {
      const float* k = HeadRow(a.k, begin + j, a.n_head, dk, h);
      const float* v = HeadRow(a.v, begin + j, a.n_head, dv, h);
      double dot = 0;
      for (int d = 0; d < dk; ++d) dot += static_cast<double>(q[d]) * k[d];
      const double w = dot * DecayPower(lg, i - j);
      for (int e = 0; e < dv; ++e) acc[e] += w * v[e];
    }
    float* o = HeadRow(a.o, begin + i, a.n_head, dv, h);
    for (int e = 0; e < dv; ++e) o[e] = static_cast<float>(acc[e]);
  }
  const double whole = DecayPower(lg, len);
  for (int d = 0; d < dk; ++d) {
    float* sd = s + static_cast<size_t>(d) * dv;
    for (int e = 0; e < dv; ++e) acc[e] = whole * sd[e];
    for (int j = 0; j < len; ++j) {
      const double w = static_cast<double>(DecayPower(lg, len - 1 - j)) * HeadRow(a.k, begin + j, a.n_head, dk, h)[d];
      const float* v = HeadRow(a.v, begin + j, a.n_head, dv, h);
      for (int e = 0; e < dv; ++e) acc[e] += w * v[e];
    }
    for (int e = 0; e < dv; ++e) sd[e] = static_cast<float>(acc[e]);
  }
}

}  // namespace

float DecayPower(float log_decay, int t) {
  const float x = static_cast<float>(t) * log_decay;
  return x < kMinNormalLog ? 0.0f : std::exp(x);
}

void Scale(float* x, size_t n, float s) {
  for (size_t i = 0; i < n; ++i) x[i] *= s;
}

void AddBias(float* x, const float* bias, int rows, int width) {
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < width; ++c) x[static_cast<size_t>(r) * width + c] += bias[c];
}

void Silu(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::exp(-x[i]));
}

void Gelu(float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::erf(x[i] * 0.70710678118654752f));
}

void Norm(const NormArgs& a) {
  const int g = a.group;
  for (int r = 0; r < a.rows; ++r) {
    for (int c0 = 0; c0 < a.width; c0 += g) {
      const size_t base = static_cast<size_t>(r) * a.width + c0;
      const float* x = a.x + base;
      float* y = a.y + base;
      double mean = 0;
      if (a.kind == NormKind::kLayer) {
        for (int c = 0; c < g; ++c) mean += x[c];
        mean /= g;
      }
      double sq = 0;
      for (int c = 0; c < g; ++c) sq += (x[c] - mean) * (x[c] - mean);
      const double inv = 1.0 / std::sqrt(sq / g + a.eps);
      for (int c = 0; c < g; ++c) {
        float out = static_cast<float>((x[c] - mean) * inv);
        if (a.weight != nullptr) out *= a.weight[c];
        if (a.bias != nullptr) out += a.bias[c];
        y[c] = out;
      }
    }
  }
}

void RotaryAngles(const RotaryAnglesArgs& a) {
  for (int s = 0; s < a.seqs.num_seqs; ++s) {
    const int begin = a.seqs.row_begin[s], end = a.seqs.row_begin[s + 1];
    const int64_t first = ReadPosition(a.positions[s]);
    for (int r = begin; r < end; ++r) {
      const double p = static_cast<double>(first + (r - begin));
      for (int i = 0; i < a.n_theta; ++i) {
        const double angle = p * static_cast<double>(a.theta[i]);
        a.cos[static_cast<size_t>(r) * a.n_theta + i] = static_cast<float>(std::cos(angle));
        a.sin[static_cast<size_t>(r) * a.n_theta + i] = static_cast<float>(std::sin(angle));
      }
    }
  }
}

void Rotate(const RotateArgs& a) {
  const int n = a.head_size, half = n / 2, width = a.n_head * n;
  for (int r = 0; r < a.rows; ++r) {
    const float* x = a.x + static_cast<size_t>(r) * width;
    if (a.style == RotationStyle::kLrpe) {
      const float* cs = a.cos + static_cast<size_t>(r) * width;
      const float* sn = a.sin + static_cast<size_t>(r) * width;
      float* y = a.y + static_cast<size_t>(r) * 2 * width;
      for (int h = 0; h < a.n_head; ++h) {
        for (int c = 0; c < n; ++c) {
          const int j = h * n + c;
          y[2 * h * n + c] = a.scale * x[j] * cs[j];
          y[2 * h * n + n + c] = a.scale * x[j] * sn[j];
        }
      }
      continue;
    }
    const float* cs = a.cos + static_cast<size_t>(r) * half;
    const float* sn = a.sin + static_cast<size_t>(r) * half;
    float* y = a.y + static_cast<size_t>(r) * width;
    for (int h = 0; h < a.n_head; ++h) {
      for (int i = 0; i < half; ++i) {
        // Pair (lo, hi): interleaved (2i, 2i+1) or NeoX half-split (i, i + n/2).
        const int lo = h * n + (a.style == RotationStyle::kInterleaved ? 2 * i : i);
        const int hi = lo + (a.style == RotationStyle::kInterleaved ? 1 : half);
        const float x0 = x[lo], x1 = x[hi];
        y[lo] = a.scale * (x0 * cs[i] - x1 * sn[i]);
        y[hi] = a.scale * (x1 * cs[i] + x0 * sn[i]);
      }
    }
  }
}

void AdvancePositions(const AdvancePositionsArgs& a) {
  for (int s = 0; s < a.seqs.num_seqs; ++s) {
    const int rows = a.seqs.row_begin[s + 1] - a.seqs.row_begin[s];
    WritePosition(a.positions[s], ReadPosition(a.positions[s]) + rows);
  }
}

void RetentionHead(const RetentionArgs& a, int seq, int h) {
  const int begin = a.seqs.row_begin[seq], end = a.seqs.row_begin[seq + 1];
  if (end <= begin) return;
  float* s = a.states[seq] + static_cast<size_t>(h) * a.key_size * a.value_size;
  if (end - begin == 1 || a.form == RetentionForm::kRecurrent) {
    RecurrentHead(a, begin, end, h, s);
  } else if (a.form == RetentionForm::kParallel) {
    ParallelHead(a, begin, end, h, s);
  } else {
    ChunkwiseHead(a, begin, end, h, s);
  }
}

void Retention(const RetentionArgs& a) {
  for (int s = 0; s < a.seqs.num_seqs; ++s)
    for (int h = 0; h < a.n_head; ++h) RetentionHead(a, s, h);
}

}  // namespace retain::kernels::reference
