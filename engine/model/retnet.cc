// RetNet (arXiv 2307.08621), spec shared/spec/retnet-transnormer.md Part A, in three checkpoint
// variants (ModelConfig::retnet_variant, decided at config load from the tensors present):
//   torchscale         RetNetDecoder since Sep 2023: RMSNorm (weight), no biases, GLU FFN
//                      fc2(act(fc1 x)·gate x), per-head RMSNorm without weight, interleaved
//                      rotation θ_i = 10000^(−i/(dk/2−1)), k scaled by dk^−½, embeddings ×√d
//                      unless no_scale_embedding. Names optionally under "decoder.".
//   torchscale-2023-07 the paper's code: LayerNorm (weight + bias), biased projections, FFN
//                      fc2(act(fc1 x + b1)) + b2, per-head LayerNorm without affine; otherwise as above.
//   fla                fla-hub HF checkpoints: RMSNorm, SwiGLU down(silu(gate x)·up x) with gate/up
//                      fused in one [2F, d] tensor (2024 uploads, split here by rows) or stored
//                      apart, per-head RMSNorm with a weight [dv] shared by the heads, NeoX rotation
//                      θ_i = 10000^(−2i/dk), q scaled by dk^−½, no embedding scale.
// Retention is computed in its raw form (spec A.4): torchscale's extra row normalisers are
// positive per-(head, row) factors that the per-head norm removes up to its eps.
// Decay γ_h = 1 − 2^(−5−h) for every variant; kept as log γ in f32.
#include <cmath>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/families.h"
#include "engine/model/scalar_decay_model.h"
#include "engine/model/weights.h"
#include "retain/engine/status_macros.h"

namespace retain::engine {
namespace {

struct RetNetLayer {
  const float *attn_norm_w = nullptr, *attn_norm_b = nullptr;
  MatrixRef wq, wk, wv, wg, wo;
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bg = nullptr, *bo = nullptr;
  const float* head_norm_w = nullptr;
  const float *ffn_norm_w = nullptr, *ffn_norm_b = nullptr;
  MatrixRef ffn_act, ffn_lin, ffn_out;  // out(act(ffn_act x) [· ffn_lin x]); ffn_lin empty: no gate
  const float *ffn_act_b = nullptr, *ffn_out_b = nullptr;
};

class RetNetModel final : public ScalarDecayModel {
 public:
  RetNetModel(const ModelConfig& c, const ModelOptions& o, std::unique_ptr<Backend> b)
      : ScalarDecayModel(c, o, std::move(b)) {}

  absl::Status Load(const SafetensorsFile& file);

 private:
  bool torchscale() const { return config_.retnet_variant != RetNetVariant::kFla; }
  bool legacy() const { return config_.retnet_variant == RetNetVariant::kTorchscaleLegacy; }
  kernels::NormKind block_norm() const { return legacy() ? kernels::NormKind::kLayer : kernels::NormKind::kRms; }
  absl::Status LoadTorchscale(const SafetensorsFile& file, WeightLoader& w);
  absl::Status LoadFla(const SafetensorsFile& file, WeightLoader& w);
  void RunLayers(const Step& step, float* x) override;
  void FinalNorm(float* x, int rows) override;
  void BlockNorm(const float* x, int rows, const float* w, const float* b, float* y);

  std::vector<RetNetLayer> layers_;
  const float *final_norm_w_ = nullptr, *final_norm_b_ = nullptr;
  const float *theta_ = nullptr, *log_decay_ = nullptr;  // [dk/2], [H]
  float *h_, *q_, *k_, *v_, *g_, *o_, *tmp_, *f1_, *f2_, *cos_, *sin_;
};

std::vector<float> RotationTheta(const ModelConfig& c) {
  const int half = c.head_size / 2;
  std::vector<float> theta(half);
  for (int i = 0; i < half; ++i) {
    // torchscale: 1 / 10000^linspace(0, 1, dk/2); fla: 1 / 10000^(2i/dk).
    const double e = c.retnet_variant == RetNetVariant::kFla ? 2.0 * i / c.head_size
                                                             : (half > 1 ? static_cast<double>(i) / (half - 1) : 0.0);
    theta[i] = static_cast<float>(std::pow(10000.0, -e));
  }
  return theta;
}

std::vector<float> LogDecay(int heads) {
  std::vector<float> d(heads);
  for (int h = 0; h < heads; ++h) d[h] = static_cast<float>(std::log(1.0 - std::pow(2.0, -5.0 - h)));
  return d;
}

absl::Status RetNetModel::LoadTorchscale(const SafetensorsFile& file, WeightLoader& w) {
  const int d = config_.n_embd, v = config_.vocab_size, f = config_.dim_ffn;
  const int vw = config_.n_head * config_.value_head_size;
  const std::string p = config_.tensor_prefix;
  const bool lg = legacy();
  const std::vector<Shape> vec_d = {{d}};
  auto bias = [&](const std::string& name, int n) { return lg ? w.Vector(name, n, {{n}}) : nullptr; };
  emb_ = w.Embedding(p + "embed_tokens.weight", v, d, config_.tie_embeddings);
  if (config_.tie_embeddings) {
    head_ = emb_;
    RETAIN_RETURN_IF_ERROR(CheckTiedHead(file, p + "embed_tokens.weight", p + "output_projection.weight", w));
  } else {
    head_ = w.Linear(p + "output_projection.weight", v, d);
  }
  final_norm_w_ = w.Vector(p + "layer_norm.weight", d, vec_d);
  final_norm_b_ = bias(p + "layer_norm.bias", d);
  for (int l = 0; l < config_.n_layer; ++l) {
    const std::string q = absl::StrCat(p, "layers.", l, ".");
    const std::string r = q + "retention.";
    RetNetLayer L;
    L.attn_norm_w = w.Vector(q + "retention_layer_norm.weight", d, vec_d);
    L.attn_norm_b = bias(q + "retention_layer_norm.bias", d);
    L.wq = w.Linear(r + "q_proj.weight", d, d);
    L.wk = w.Linear(r + "k_proj.weight", d, d);
    L.wv = w.Linear(r + "v_proj.weight", vw, d);
    L.wg = w.Linear(r + "g_proj.weight", vw, d);
    L.wo = w.Linear(r + "out_proj.weight", d, vw);
    L.bq = bias(r + "q_proj.bias", d);
    L.bk = bias(r + "k_proj.bias", d);
    L.bv = bias(r + "v_proj.bias", vw);
    L.bg = bias(r + "g_proj.bias", vw);
    L.bo = bias(r + "out_proj.bias", d);
    L.ffn_norm_w = w.Vector(q + "final_layer_norm.weight", d, vec_d);
    L.ffn_norm_b = bias(q + "final_layer_norm.bias", d);
    L.ffn_act = w.Linear(q + "ffn.fc1.weight", f, d);
    if (!lg) L.ffn_lin = w.Linear(q + "ffn.gate.weight", f, d);
    L.ffn_out = w.Linear(q + "ffn.fc2.weight", d, f);
    L.ffn_act_b = bias(q + "ffn.fc1.bias", f);
    L.ffn_out_b = bias(q + "ffn.fc2.bias", d);
    layers_.push_back(L);
  }
  // Saved buffers (spec A.1.1): recomputed in f32 here; a checkpoint whose buffers disagree was
  // made by some other rotation or decay and is refused, naming the buffer.
  std::vector<float> angle;
  for (float t : RotationTheta(config_)) angle.insert(angle.end(), {t, t});  // stored interleave-duplicated
  const struct {
    std::string name;
    std::vector<float> expected;
  } buffers[] = {{p + "retnet_rel_pos.angle", angle}, {p + "retnet_rel_pos.decay", LogDecay(config_.n_head)}};
  for (const auto& b : buffers) {
    w.Ignore(b.name);
    const TensorInfo* t = file.Find(b.name);
    if (t == nullptr) continue;
    bool ok = t->numel() == static_cast<int64_t>(b.expected.size()) && t->shape.size() == 1;
    for (size_t i = 0; ok && i < b.expected.size(); ++i) {
      const float got = LoadAsFloat(t->data, t->dtype, i);
      ok = std::fabs(got - b.expected[i]) <= 1e-6f * std::max(1.0f, std::fabs(b.expected[i]));
    }
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          file.path(), ": buffer '", b.name, "' does not hold the RetNet ",
          b.name.find("angle") != std::string::npos ? "rotation angles" : "decays log(1 - 2^(-5-h))",
          " for ", config_.n_head, " heads of width ", config_.head_size));
    }
  }
  return absl::OkStatus();
}

absl::Status RetNetModel::LoadFla(const SafetensorsFile& file, WeightLoader& w) {
  const int d = config_.n_embd, v = config_.vocab_size, f = config_.dim_ffn;
  const int kw = config_.n_head * config_.head_size, vw = config_.n_head * config_.value_head_size;
  const std::vector<Shape> vec_d = {{d}};
  emb_ = w.Embedding("model.embeddings.weight", v, d, config_.tie_embeddings);
  if (config_.tie_embeddings) {
    head_ = emb_;
    RETAIN_RETURN_IF_ERROR(CheckTiedHead(file, "model.embeddings.weight", "lm_head.weight", w));
  } else {
    head_ = w.Linear("lm_head.weight", v, d);
  }
  final_norm_w_ = w.Vector("model.norm.weight", d, vec_d);
  for (int l = 0; l < config_.n_layer; ++l) {
    const std::string q = absl::StrCat("model.layers.", l, ".");
    const std::string a = q + "attn.";
    RetNetLayer L;
    L.attn_norm_w = w.Vector(q + "attn_norm.weight", d, vec_d);
    L.wq = w.Linear(a + "q_proj.weight", kw, d);
    L.wk = w.Linear(a + "k_proj.weight", kw, d);
    L.wv = w.Linear(a + "v_proj.weight", vw, d);
    if (config_.output_gate) L.wg = w.Linear(a + "g_proj.weight", vw, d);
    L.wo = w.Linear(a + "o_proj.weight", d, vw);
    if (config_.head_norm_affine) {
      // fuse_norm (the default) names it g_norm_swish_gate, otherwise g_norm; same math.
      const std::string fused = a + "g_norm_swish_gate.weight", plain = a + "g_norm.weight";
      const std::string name = file.Find(plain) != nullptr && file.Find(fused) == nullptr ? plain : fused;
      L.head_norm_w = w.Vector(name, config_.value_head_size, {{config_.value_head_size}});
    }
    L.ffn_norm_w = w.Vector(q + "mlp_norm.weight", d, vec_d);
    if (file.Find(q + "mlp.up_proj.weight") != nullptr) {  // fla since Feb 2025: stored apart
      L.ffn_act = w.Linear(q + "mlp.gate_proj.weight", f, d);
      L.ffn_lin = w.Linear(q + "mlp.up_proj.weight", f, d);
    } else {  // 2024 uploads: one [2F, d] tensor, rows 0..F−1 the silu gate, F..2F−1 the up branch
      L.ffn_act = w.LinearRows(q + "mlp.gate_proj.weight", 2 * f, d, 0, f);
      L.ffn_lin = w.LinearRows(q + "mlp.gate_proj.weight", 2 * f, d, f, f);
    }
    L.ffn_out = w.Linear(q + "mlp.down_proj.weight", d, f);
    layers_.push_back(L);
  }
  return absl::OkStatus();
}

absl::Status RetNetModel::Load(const SafetensorsFile& file) {
  WeightLoader w(file, *backend_);
  RETAIN_RETURN_IF_ERROR(torchscale() ? LoadTorchscale(file, w) : LoadFla(file, w));
  theta_ = w.Upload(RotationTheta(config_));
  log_decay_ = w.Upload(LogDecay(config_.n_head));
  RETAIN_RETURN_IF_ERROR(w.Finish());
  weights_ = w.TakeBuffers();

  const int d = config_.n_embd, kw = config_.n_head * config_.head_size;
  const int vw = config_.n_head * config_.value_head_size;
  const struct {
    float** p;
    int width;
  } bufs[] = {{&h_, d}, {&q_, kw}, {&k_, kw}, {&v_, vw}, {&g_, vw}, {&o_, vw}, {&tmp_, d},
              {&f1_, config_.dim_ffn}, {&f2_, config_.dim_ffn}, {&cos_, config_.head_size / 2},
              {&sin_, config_.head_size / 2}};
  for (const auto& b : bufs) RETAIN_RETURN_IF_ERROR(Scratch(std::max(b.width, 1), {b.p}));
  return InitScalarDecay(std::vector<int>(config_.n_layer, config_.head_size));
}

void RetNetModel::BlockNorm(const float* x, int rows, const float* w, const float* b, float* y) {
  kernels::NormArgs n;
  n.kind = block_norm();
  n.rows = rows;
  n.width = n.group = config_.n_embd;
  n.eps = config_.layer_norm_eps;
  n.x = x;
  n.weight = w;
  n.bias = b;
  n.y = y;
  backend_->Norm(n);
}

void RetNetModel::FinalNorm(float* x, int rows) { BlockNorm(x, rows, final_norm_w_, final_norm_b_, x); }

void RetNetModel::RunLayers(const Step& step, float* x) {
  Backend& be = *backend_;
  const int rows = step.rows, d = config_.n_embd, f = config_.dim_ffn;
  const int h = config_.n_head, dk = config_.head_size, dv = config_.value_head_size;
  const int vw = h * dv;
  auto linear = [&](const float* in, const MatrixRef& w, const float* b, float* out) {
    be.MatMul({in, rows, w, out});
    if (b != nullptr) be.AddBias(out, b, rows, w.rows);
  };
  if (config_.embed_scale != 1.0f) be.Scale(x, static_cast<size_t>(rows) * d, config_.embed_scale);
  Angles(step, theta_, dk / 2, cos_, sin_);  // one table per step: every layer rotates alike
  const kernels::RotationStyle style = torchscale() ? kernels::RotationStyle::kInterleaved : kernels::RotationStyle::kHalfSplit;
  const float scale = 1.0f / std::sqrt(static_cast<float>(dk));
  for (int l = 0; l < config_.n_layer; ++l) {
    const RetNetLayer& L = layers_[l];
    // Multi-scale retention.
    BlockNorm(x, rows, L.attn_norm_w, L.attn_norm_b, h_);
    be.MatMuls({{h_, rows, L.wq, q_}, {h_, rows, L.wk, k_}, {h_, rows, L.wv, v_}});
    for (auto [b, out, n] : {std::tuple{L.bq, q_, L.wq.rows}, {L.bk, k_, L.wk.rows}, {L.bv, v_, L.wv.rows}})
      if (b != nullptr) be.AddBias(out, b, rows, n);
    // dk^−½ goes on k in torchscale, on q in fla: the same product, each as its reference does.
    be.Rotate({style, rows, h, dk, torchscale() ? 1.0f : scale, cos_, sin_, q_, q_});
    be.Rotate({style, rows, h, dk, torchscale() ? scale : 1.0f, cos_, sin_, k_, k_});
    Retain(step, l, q_, k_, v_, log_decay_, o_);
    kernels::NormArgs hn;
    hn.kind = legacy() ? kernels::NormKind::kLayer : kernels::NormKind::kRms;
    hn.rows = rows;
    hn.width = vw;
    hn.group = dv;
    hn.eps = config_.layer_norm_eps;
    hn.x = o_;
    hn.weight = L.head_norm_w;
    hn.y = o_;
    be.Norm(hn);
    if (L.wg.data != nullptr) {
      linear(h_, L.wg, L.bg, g_);
      be.Silu(g_, static_cast<size_t>(rows) * vw);
      be.Mul(o_, g_, static_cast<size_t>(rows) * vw);
    }
    linear(o_, L.wo, L.bo, tmp_);
    be.Add(x, tmp_, static_cast<size_t>(rows) * d);
    // Feed-forward.
    BlockNorm(x, rows, L.ffn_norm_w, L.ffn_norm_b, h_);
    linear(h_, L.ffn_act, L.ffn_act_b, f1_);
    if (config_.ffn_activation == "gelu") {
      be.Gelu(f1_, static_cast<size_t>(rows) * f);
    } else {
      be.Silu(f1_, static_cast<size_t>(rows) * f);
    }
    if (L.ffn_lin.data != nullptr) {
      linear(h_, L.ffn_lin, nullptr, f2_);
      be.Mul(f1_, f2_, static_cast<size_t>(rows) * f);
    }
    linear(f1_, L.ffn_out, L.ffn_out_b, tmp_);
    be.Add(x, tmp_, static_cast<size_t>(rows) * d);
  }
  AdvancePositions(step);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> LoadRetNet(const ModelConfig& config, const ModelOptions& options,
                                                  const SafetensorsFile& file, std::unique_ptr<Backend> backend) {
  auto model = std::make_unique<RetNetModel>(config, options, std::move(backend));
  RETAIN_RETURN_IF_ERROR(model->Load(file));
  return model;
}

}  // namespace retain::engine
