// Naive f64 RetNet / TransNormerLLM. Every value is a double; weights are read from the TensorMap
// (already widened to f32 values, so bf16 checkpoints are exact here too).
#include "tests/testing/naive_retention.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace retain::testing {
namespace {

using Vec = std::vector<double>;

const engine::TensorToWrite& Get(const TensorMap& m, const std::string& name) {
  static const engine::TensorToWrite kEmpty;
  auto it = m.find(name);
  EXPECT_NE(it, m.end()) << "naive reference: no tensor " << name;
  return it == m.end() ? kEmpty : it->second;
}
bool Has(const TensorMap& m, const std::string& name) { return m.count(name) > 0; }

// y = W[row0 : row0 + rows] x for W [out, in].
Vec MatVec(const engine::TensorToWrite& w, const Vec& x, int64_t row0 = 0, int64_t rows = -1) {
  const int64_t in = w.shape.empty() ? 0 : w.shape[1];
  if (rows < 0) rows = w.shape.empty() ? 0 : w.shape[0];
  Vec y(rows, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double acc = 0;
    for (int64_t c = 0; c < in; ++c) acc += static_cast<double>(w.values[(row0 + r) * in + c]) * x[c];
    y[r] = acc;
  }
  return y;
}

void AddTo(Vec& y, const engine::TensorToWrite& b) {
  for (size_t i = 0; i < y.size(); ++i) y[i] += b.values[i];
}

// RMS or layer norm of x[lo, lo + n), times weight / plus bias when given (indexed from 0).
void Normalize(Vec& x, int lo, int n, double eps, bool layer, const engine::TensorToWrite* w,
               const engine::TensorToWrite* b) {
  double mean = 0;
  if (layer) {
    for (int i = 0; i < n; ++i) mean += x[lo + i];
    mean /= n;
  }
  double sq = 0;
  for (int i = 0; i < n; ++i) sq += (x[lo + i] - mean) * (x[lo + i] - mean);
  const double inv = 1.0 / std::sqrt(sq / n + eps);
  for (int i = 0; i < n; ++i) {
    double v = (x[lo + i] - mean) * inv;
    if (w != nullptr) v *= w->values[i];
    if (b != nullptr) v += b->values[i];
    x[lo + i] = v;
  }
}

double Silu(double x) { return x / (1.0 + std::exp(-x)); }
double Gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

}  // namespace

std::vector<double> NaiveRetNetLogits(const TensorMap& t, const NaiveRetNet& cfg, const std::vector<int>& tokens) {
  const bool fla = cfg.kind == NaiveRetNetKind::kFla;
  const bool legacy = cfg.kind == NaiveRetNetKind::kTorchscaleLegacy;
  const std::string p = cfg.prefix;
  const auto& emb = Get(t, fla ? "model.embeddings.weight" : p + "embed_tokens.weight");
  const int vocab = static_cast<int>(emb.shape[0]), d = static_cast<int>(emb.shape[1]);
  const int n = static_cast<int>(tokens.size()), heads = cfg.n_head, dk = d / heads;
  auto layer_name = [&](int l, const std::string& fla_name, const std::string& ts_name) {
    return fla ? absl::StrCat("model.layers.", l, ".", fla_name) : absl::StrCat(p, "layers.", l, ".", ts_name);
  };
  const int value_width = static_cast<int>(Get(t, layer_name(0, "attn.v_proj.weight", "retention.v_proj.weight")).shape[0]);
  const int dv = value_width / heads;
  int layers = 0;
  while (Has(t, layer_name(layers, "attn.q_proj.weight", "retention.q_proj.weight"))) ++layers;
  auto opt = [&](const std::string& name) { return Has(t, name) ? &Get(t, name) : nullptr; };
  auto block_norm = [&](Vec& x, const std::string& base) {
    Normalize(x, 0, d, cfg.eps, legacy, &Get(t, base + ".weight"), legacy ? &Get(t, base + ".bias") : nullptr);
  };

  std::vector<Vec> x(n);
  for (int i = 0; i < n; ++i) {
    x[i].resize(d);
    for (int c = 0; c < d; ++c) x[i][c] = emb.values[static_cast<size_t>(tokens[i]) * d + c] * (cfg.scale_embedding ? std::sqrt(static_cast<double>(d)) : 1.0);
  }
  // Rotation frequencies (A.3): torchscale 10000^(−i/(dk/2−1)) on pairs (2i, 2i+1); fla
  // 10000^(−2i/dk) on pairs (i, i + dk/2).
  const int half = dk / 2;
  Vec theta(half);
  for (int i = 0; i < half; ++i) theta[i] = std::pow(10000.0, fla ? -2.0 * i / dk : -static_cast<double>(i) / std::max(half - 1, 1));
  auto rotate = [&](Vec& v, int pos) {
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < half; ++i) {
        const int a = h * dk + (fla ? i : 2 * i), b = a + (fla ? half : 1);
        const double c = std::cos(pos * theta[i]), s = std::sin(pos * theta[i]);
        const double x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x1 * c + x0 * s;
      }
    }
  };
  for (int l = 0; l < layers; ++l) {
    auto w = [&](const std::string& fla_name, const std::string& ts_name) -> const engine::TensorToWrite& {
      return Get(t, layer_name(l, fla_name, ts_name));
    };
    std::vector<Vec> q(n), k(n), v(n), g(n);
    for (int i = 0; i < n; ++i) {
      Vec hsn = x[i];
      if (fla) Normalize(hsn, 0, d, cfg.eps, false, &w("attn_norm.weight", ""), nullptr);
      else block_norm(hsn, layer_name(l, "", "retention_layer_norm"));
      q[i] = MatVec(w("attn.q_proj.weight", "retention.q_proj.weight"), hsn);
      k[i] = MatVec(w("attn.k_proj.weight", "retention.k_proj.weight"), hsn);
      v[i] = MatVec(w("attn.v_proj.weight", "retention.v_proj.weight"), hsn);
      g[i] = MatVec(w("attn.g_proj.weight", "retention.g_proj.weight"), hsn);
      if (legacy) {
        AddTo(q[i], w("", "retention.q_proj.bias"));
        AddTo(k[i], w("", "retention.k_proj.bias"));
        AddTo(v[i], w("", "retention.v_proj.bias"));
        AddTo(g[i], w("", "retention.g_proj.bias"));
      }
      rotate(q[i], i);
      rotate(k[i], i);
    }
    for (int i = 0; i < n; ++i) {
      Vec o(value_width, 0.0);
      for (int h = 0; h < heads; ++h) {
        const double gamma = 1.0 - std::pow(2.0, -5.0 - h);
        for (int m = 0; m <= i; ++m) {
          double dot = 0;
          for (int c = 0; c < dk; ++c) dot += q[i][h * dk + c] * k[m][h * dk + c];
          const double wgt = dot / std::sqrt(static_cast<double>(dk)) * std::pow(gamma, i - m);
          for (int e = 0; e < dv; ++e) o[h * dv + e] += wgt * v[m][h * dv + e];
        }
        const engine::TensorToWrite* gw = fla ? opt(layer_name(l, "attn.g_norm_swish_gate.weight", "")) : nullptr;
        Normalize(o, h * dv, dv, cfg.eps, legacy, gw, nullptr);
      }
      for (int e = 0; e < value_width; ++e) o[e] *= Silu(g[i][e]);
      Vec out = MatVec(w("attn.o_proj.weight", "retention.out_proj.weight"), o);
      if (legacy) AddTo(out, w("", "retention.out_proj.bias"));
      for (int c = 0; c < d; ++c) x[i][c] += out[c];
      // Feed-forward (A.7).
      Vec hsn = x[i];
      if (fla) Normalize(hsn, 0, d, cfg.eps, false, &w("mlp_norm.weight", ""), nullptr);
      else block_norm(hsn, layer_name(l, "", "final_layer_norm"));
      Vec a, lin;
      if (fla) {
        const auto& gate = w("mlp.gate_proj.weight", "");
        const std::string up_name = layer_name(l, "mlp.up_proj.weight", "");
        const int64_t f = Has(t, up_name) ? gate.shape[0] : gate.shape[0] / 2;
        a = MatVec(gate, hsn, 0, f);
        lin = Has(t, up_name) ? MatVec(Get(t, up_name), hsn) : MatVec(gate, hsn, f, f);
      } else {
        a = MatVec(w("", "ffn.fc1.weight"), hsn);
        if (legacy) AddTo(a, w("", "ffn.fc1.bias"));
        else lin = MatVec(w("", "ffn.gate.weight"), hsn);
      }
      for (size_t j = 0; j < a.size(); ++j) {
        a[j] = (!fla && cfg.gelu) ? Gelu(a[j]) : Silu(a[j]);
        if (!lin.empty()) a[j] *= lin[j];
      }
      Vec y = MatVec(w("mlp.down_proj.weight", "ffn.fc2.weight"), a);
      if (legacy) AddTo(y, w("", "ffn.fc2.bias"));
      for (int c = 0; c < d; ++c) x[i][c] += y[c];
    }
  }
  std::vector<double> logits;
  for (int i = 0; i < n; ++i) {
    Vec hsn = x[i];
    if (fla) Normalize(hsn, 0, d, cfg.eps, false, &Get(t, "model.norm.weight"), nullptr);
    else block_norm(hsn, p + "layer_norm");
    const Vec row = MatVec(Get(t, fla ? "lm_head.weight" : p + "output_projection.weight"), hsn);
    EXPECT_EQ(static_cast<int>(row.size()), vocab);
    logits.insert(logits.end(), row.begin(), row.end());
  }
  return logits;
}

std::vector<double> NaiveTransNormerLogits(const TensorMap& t, const NaiveTransNormer& cfg,
                                           const std::vector<int>& tokens) {
  const auto& emb = Get(t, "model.embed_tokens.weight");
  const int d = static_cast<int>(emb.shape[1]), n = static_cast<int>(tokens.size());
  const int heads = cfg.n_head, dh = d / heads;
  const int layers = static_cast<int>(cfg.lrpe.size());
  // ALiBi slopes (B.3): 2^(−8(h+1)/H) for a power of two H; otherwise the power-of-two list for
  // P = 2^⌊log2 H⌋ followed by every second slope of the list for 2P.
  auto pow2_slopes = [](int m) {
    Vec s(m);
    for (int h = 0; h < m; ++h) s[h] = std::pow(2.0, -8.0 * (h + 1) / m);
    return s;
  };
  int p2 = 1;
  while (p2 * 2 <= heads) p2 *= 2;
  Vec slopes = pow2_slopes(p2);
  const Vec twice = pow2_slopes(2 * p2);
  for (int i = 0; static_cast<int>(slopes.size()) < heads; i += 2) slopes.push_back(twice[i]);

  std::vector<Vec> x(n);
  for (int i = 0; i < n; ++i) {
    x[i].resize(d);
    for (int c = 0; c < d; ++c) x[i][c] = emb.values[static_cast<size_t>(tokens[i]) * d + c] * (cfg.scale_embedding ? std::sqrt(static_cast<double>(d)) : 1.0);
  }
  for (int l = 0; l < layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    const auto& qkvu = Get(t, p + "token_mixer.qkvu_proj.weight");
    const bool lrpe = cfg.lrpe[l] != 0;
    const int kw = lrpe ? 2 * dh : dh;
    std::vector<Vec> q(n), k(n), v(n), u(n);
    for (int i = 0; i < n; ++i) {
      Vec hsn = x[i];
      Normalize(hsn, 0, d, 1e-6, false, nullptr, nullptr);
      Vec qi = MatVec(qkvu, hsn, 0, d), ki = MatVec(qkvu, hsn, d, d);
      v[i] = MatVec(qkvu, hsn, 2 * d, d);
      u[i] = MatVec(qkvu, hsn, 3 * d, d);
      for (int c = 0; c < d; ++c) qi[c] = Silu(qi[c]), ki[c] = Silu(ki[c]);
      q[i].assign(heads * kw, 0.0);
      k[i].assign(heads * kw, 0.0);
      for (int h = 0; h < heads; ++h) {
        for (int c = 0; c < dh; ++c) {
          const int j = h * dh + c;
          if (lrpe) {  // [x cos(nθ), x sin(nθ)] per head, θ the stored parameter
            const double th = i * static_cast<double>(Get(t, p + "token_mixer.lrpe.theta").values[j]);
            q[i][h * kw + c] = qi[j] * std::cos(th);
            q[i][h * kw + dh + c] = qi[j] * std::sin(th);
            k[i][h * kw + c] = ki[j] * std::cos(th);
            k[i][h * kw + dh + c] = ki[j] * std::sin(th);
          } else {
            q[i][h * kw + c] = qi[j];
            k[i][h * kw + c] = ki[j];
          }
        }
      }
    }
    for (int i = 0; i < n; ++i) {
      Vec o(d, 0.0);
      for (int h = 0; h < heads; ++h) {
        const double lambda = std::exp(-slopes[h] * (1.0 - static_cast<double>(l) / (layers - 1) + 1e-5));
        for (int m = 0; m <= i; ++m) {
          double dot = 0;
          for (int c = 0; c < kw; ++c) dot += q[i][h * kw + c] * k[m][h * kw + c];
          const double wgt = dot * std::pow(lambda, i - m);
          for (int e = 0; e < dh; ++e) o[h * dh + e] += wgt * v[m][h * dh + e];
        }
      }
      Normalize(o, 0, d, 1e-6, false, nullptr, nullptr);
      for (int c = 0; c < d; ++c) o[c] *= u[i][c];
      const Vec out = MatVec(Get(t, p + "token_mixer.out_proj.weight"), o);
      for (int c = 0; c < d; ++c) x[i][c] += out[c];
      Vec hsn = x[i];
      Normalize(hsn, 0, d, 1e-6, false, nullptr, nullptr);
      Vec a = MatVec(Get(t, p + "channel_mixer.l1.weight"), hsn);
      const Vec b = MatVec(Get(t, p + "channel_mixer.l2.weight"), hsn);
      for (size_t j = 0; j < a.size(); ++j) a[j] *= b[j];
      const Vec y = MatVec(Get(t, p + "channel_mixer.l3.weight"), a);
      for (int c = 0; c < d; ++c) x[i][c] += y[c];
    }
  }
  std::vector<double> logits;
  for (int i = 0; i < n; ++i) {
    Vec hsn = x[i];
    Normalize(hsn, 0, d, 1e-6, false, nullptr, nullptr);
    const Vec row = MatVec(emb, hsn);  // tied head
    logits.insert(logits.end(), row.begin(), row.end());
  }
  return logits;
}

}  // namespace retain::testing
