// TransNormerLLM (arXiv 2307.14995), spec shared/spec/retnet-transnormer.md Part B, OpenNLPLab
// Hugging Face layout (model.embed_tokens, model.layers.N.token_mixer / channel_mixer). Layer:
//   x += out_proj( u ⊙ SRMS( retention(silu(q), silu(k), v) ) );  x += l3( (l1 h) ⊙ (l2 h) )
// with [q|k|v|u] = qkvu_proj(SRMS(x)) (one [4d, d] tensor, split here by rows), SRMS the
// weightless RMS norm (eps 1e-6) over all d channels, LRPE on the layers the config lists, no
// q/k scaling and no denominator. The output head is the embedding matrix (tied).
//
// Where the released code and the paper differ, the released weights were trained with the code,
// so the code wins:
//   - decay λ_{h,l} = exp(−s_h·(1 − l/(L−1) + 1e-5)) with ALiBi slopes s_h, per layer and head
//     (the paper writes exp(−(8h/H)(1 − l/L)));
//   - LRPE uses the stored, learned theta [H, 1, d_h] (not a recomputed formula);
//   - the GLU has no activation.
// One deliberate departure: the released code keeps the LRPE position in a module counter shared
// by every call (spec B.7), so a second prompt on the same instance starts at a stale offset. A
// stateless server must not do that: each session decodes from the position in its own state.
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/families.h"
#include "engine/model/scalar_decay_model.h"
#include "engine/model/weights.h"
#include "retain/engine/status_macros.h"

namespace retain::engine {
namespace {

struct TransNormerLayer {
  MatrixRef wq, wk, wv, wu, out, l1, l2, l3;
  const float* theta = nullptr;      // [H·d_h] on LRPE layers
  const float* log_decay = nullptr;  // [H]
  bool lrpe = false;
};

// ALiBi slopes as the released _build_slope_tensor computes them (in f64, then stored as f32).
std::vector<double> Slopes(int n) {
  auto power_of_2 = [](int m) {
    const double start = std::pow(2.0, -std::pow(2.0, -(std::log2(static_cast<double>(m)) - 3)));
    std::vector<double> s(m);
    for (int i = 0; i < m; ++i) s[i] = start * std::pow(start, i);
    return s;
  };
  const double lg = std::log2(static_cast<double>(n));
  if (lg == std::floor(lg)) return power_of_2(n);
  const int closest = 1 << static_cast<int>(std::floor(lg));
  std::vector<double> s = power_of_2(closest);
  const std::vector<double> twice = Slopes(2 * closest);
  for (int i = 0; static_cast<int>(s.size()) < n; i += 2) s.push_back(twice[i]);
  return s;
}

class TransNormerModel final : public ScalarDecayModel {
 public:
  TransNormerModel(const ModelConfig& c, const ModelOptions& o, std::unique_ptr<Backend> b)
      : ScalarDecayModel(c, o, std::move(b)) {}

  absl::Status Load(const SafetensorsFile& file);

 private:
  void RunLayers(const Step& step, float* x) override;
  void FinalNorm(float* x, int rows) override { Srms(x, rows, x); }
  void Srms(const float* x, int rows, float* y);

  std::vector<TransNormerLayer> layers_;
  float *h_, *q_, *k_, *v_, *u_, *o_, *tmp_, *f1_, *f2_;
  float *q2_ = nullptr, *k2_ = nullptr, *cos_ = nullptr, *sin_ = nullptr;  // LRPE layers only
};

absl::Status TransNormerModel::Load(const SafetensorsFile& file) {
  const int d = config_.n_embd, v = config_.vocab_size, f = config_.dim_ffn;
  const int heads = config_.n_head, dh = config_.head_size, n_layer = config_.n_layer;
  WeightLoader w(file, *backend_);
  emb_ = w.Embedding("model.embed_tokens.weight", v, d, config_.tie_embeddings);
  if (config_.tie_embeddings) {
    head_ = emb_;
    RETAIN_RETURN_IF_ERROR(CheckTiedHead(file, "model.embed_tokens.weight", "lm_head.weight", w));
  } else {
    head_ = w.Linear("lm_head.weight", v, d);
  }
  const std::vector<double> slopes = Slopes(heads);
  bool any_lrpe = false;
  std::vector<int> key_sizes;
  for (int l = 0; l < n_layer; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    TransNormerLayer L;
    MatrixRef* parts[] = {&L.wq, &L.wk, &L.wv, &L.wu};  // output chunks in this order
    for (int i = 0; i < 4; ++i) *parts[i] = w.LinearRows(p + "token_mixer.qkvu_proj.weight", 4 * d, d, i * d, d);
    L.out = w.Linear(p + "token_mixer.out_proj.weight", d, d);
    L.l1 = w.Linear(p + "channel_mixer.l1.weight", f, d);
    L.l2 = w.Linear(p + "channel_mixer.l2.weight", f, d);
    L.l3 = w.Linear(p + "channel_mixer.l3.weight", d, f);
    L.lrpe = config_.lrpe_layers[l] != 0;
    if (L.lrpe) L.theta = w.Vector(p + "token_mixer.lrpe.theta", heads * dh, {{heads, 1, dh}});
    any_lrpe = any_lrpe || L.lrpe;
    // slope_rate · (1 − l/(L−1) + 1e-5), an f32 tensor times a Python float, as in the code.
    const float factor = static_cast<float>(1.0 - static_cast<double>(l) / (n_layer - 1) + 1e-5);
    std::vector<float> log_decay(heads);
    for (int h = 0; h < heads; ++h) log_decay[h] = -(static_cast<float>(slopes[h]) * factor);
    L.log_decay = w.Upload(log_decay);
    key_sizes.push_back(L.lrpe ? 2 * dh : dh);
    layers_.push_back(L);
  }
  RETAIN_RETURN_IF_ERROR(w.Finish());
  weights_ = w.TakeBuffers();

  RETAIN_RETURN_IF_ERROR(Scratch(d, {&h_, &q_, &k_, &v_, &u_, &o_, &tmp_}));
  RETAIN_RETURN_IF_ERROR(Scratch(f, {&f1_, &f2_}));
  if (any_lrpe) {
    RETAIN_RETURN_IF_ERROR(Scratch(2 * static_cast<size_t>(d), {&q2_, &k2_}));
    RETAIN_RETURN_IF_ERROR(Scratch(d, {&cos_, &sin_}));
  }
  return InitScalarDecay(key_sizes);
}

void TransNormerModel::Srms(const float* x, int rows, float* y) {
  kernels::NormArgs n;
  n.kind = kernels::NormKind::kRms;
  n.rows = rows;
  n.width = n.group = config_.n_embd;
  n.eps = config_.layer_norm_eps;
  n.x = x;
  n.y = y;
  backend_->Norm(n);
}

void TransNormerModel::RunLayers(const Step& step, float* x) {
  Backend& be = *backend_;
  const int rows = step.rows, d = config_.n_embd, f = config_.dim_ffn;
  const size_t rd = static_cast<size_t>(rows) * d;
  if (config_.embed_scale != 1.0f) be.Scale(x, rd, config_.embed_scale);
  for (int l = 0; l < config_.n_layer; ++l) {
    const TransNormerLayer& L = layers_[l];
    // Token mixer.
    Srms(x, rows, h_);
    be.MatMuls({{h_, rows, L.wq, q_}, {h_, rows, L.wk, k_}, {h_, rows, L.wv, v_}, {h_, rows, L.wu, u_}});
    be.Silu(q_, rd);
    be.Silu(k_, rd);
    const float *q = q_, *k = k_;
    if (L.lrpe) {
      Angles(step, L.theta, d, cos_, sin_);
      be.Rotate({kernels::RotationStyle::kLrpe, rows, config_.n_head, config_.head_size, 1.0f, cos_, sin_, q_, q2_});
      be.Rotate({kernels::RotationStyle::kLrpe, rows, config_.n_head, config_.head_size, 1.0f, cos_, sin_, k_, k2_});
      q = q2_;
      k = k2_;
    }
    Retain(step, l, q, k, v_, L.log_decay, o_);
    Srms(o_, rows, o_);
    be.Mul(o_, u_, rd);
    be.MatMul({o_, rows, L.out, tmp_});
    be.Add(x, tmp_, rd);
    // Channel mixer (SGLU, no activation).
    Srms(x, rows, h_);
    be.MatMuls({{h_, rows, L.l1, f1_}, {h_, rows, L.l2, f2_}});
    be.Mul(f1_, f2_, static_cast<size_t>(rows) * f);
    be.MatMul({f1_, rows, L.l3, tmp_});
    be.Add(x, tmp_, rd);
  }
  AdvancePositions(step);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> LoadTransNormer(const ModelConfig& config, const ModelOptions& options,
                                                       const SafetensorsFile& file, std::unique_ptr<Backend> backend) {
  auto model = std::make_unique<TransNormerModel>(config, options, std::move(backend));
  RETAIN_RETURN_IF_ERROR(model->Load(file));
  return model;
}

}  // namespace retain::engine
