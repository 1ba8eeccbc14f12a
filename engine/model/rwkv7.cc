// RWKV-7 ("Goose", x070), spec shared/spec/rwkv.md §3, official checkpoint names.
//
// State per layer, f32: [att_x C][ffn_x C][wkv n_head × N × N], wkv row = value, column = key
// (the official layout, spec §3.2). One step runs every layer over all of the step's rows:
// projections and LoRAs are matrix products over the rows, only the WKV scan walks tokens.
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/families.h"
#include "engine/model/recurrent_model.h"
#include "engine/model/weights.h"
#include "retain/engine/status_macros.h"

namespace retain::engine {
namespace {

struct Rwkv7Layer {
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
  const float *x_r, *x_w, *x_k, *x_v, *x_a, *x_g;
  const float *w0, *a0, *v0, *k_k, *k_a, *r_k, *ln_x_w, *ln_x_b, *ffn_x_k;
  MatrixRef wr, wk, wv, wo, w1, w2, a1, a2, v1, v2, g1, g2, ffn_key, ffn_value;
};

class Rwkv7Model final : public RecurrentModel {
 public:
  Rwkv7Model(const ModelConfig& c, const ModelOptions& o, std::unique_ptr<Backend> b)
      : RecurrentModel(c, o, std::move(b)) {}

  absl::Status Load(const SafetensorsFile& file);

 private:
  size_t LayerFloats() const {
    return 2 * static_cast<size_t>(config_.n_embd) + static_cast<size_t>(config_.n_head) * config_.head_size * config_.head_size;
  }
  void RunLayers(const Step& step, float* x) override;

  std::vector<Rwkv7Layer> layers_;
  // Step workspace, [max_step_tokens, width].
  float *xa_, *prev_, *xr_, *xw_, *xk_, *xv_, *xq_, *xg_;
  float *r_, *k_, *v_, *wz_, *az_, *vz_, *g_, *b_, *y_, *v_first_, *tmp_, *ffn_;
  float *lora_w_, *lora_a_, *lora_v_, *lora_g_;  // LoRA hidden activations
  std::vector<float*> ptrs_;
};

absl::Status Rwkv7Model::Load(const SafetensorsFile& file) {
  const int c = config_.n_embd, f = config_.dim_ffn, v = config_.vocab_size;
  const int h = config_.n_head, n = config_.head_size;
  const int dw = config_.d_decay_lora, da = config_.d_aaa_lora, dv = config_.d_mv_lora, dg = config_.d_gate_lora;
  WeightLoader w(file, *backend_);
  const std::vector<Shape> vec = {{c}};
  const std::vector<Shape> vec3 = {{1, 1, c}, {c}};
  emb_ = w.Table("emb.weight", v, c);
  head_ = w.Linear("head.weight", v, c);
  ln0_w_ = w.Vector("blocks.0.ln0.weight", c, vec);
  ln0_b_ = w.Vector("blocks.0.ln0.bias", c, vec);
  ln_out_w_ = w.Vector("ln_out.weight", c, vec);
  ln_out_b_ = w.Vector("ln_out.bias", c, vec);
  for (int l = 0; l < config_.n_layer; ++l) {
    const std::string p = absl::StrCat("blocks.", l, ".");
    const std::string a = p + "att.";
    Rwkv7Layer L;
    L.ln1_w = w.Vector(p + "ln1.weight", c, vec);
    L.ln1_b = w.Vector(p + "ln1.bias", c, vec);
    L.ln2_w = w.Vector(p + "ln2.weight", c, vec);
    L.ln2_b = w.Vector(p + "ln2.bias", c, vec);
    L.x_r = w.Vector(a + "x_r", c, vec3);
    L.x_w = w.Vector(a + "x_w", c, vec3);
    L.x_k = w.Vector(a + "x_k", c, vec3);
    L.x_v = w.Vector(a + "x_v", c, vec3);
    L.x_a = w.Vector(a + "x_a", c, vec3);
    L.x_g = w.Vector(a + "x_g", c, vec3);
    L.w0 = w.Vector(a + "w0", c, vec3);
    L.a0 = w.Vector(a + "a0", c, vec3);
    L.k_k = w.Vector(a + "k_k", c, vec3);
    L.k_a = w.Vector(a + "k_a", c, vec3);
    L.r_k = w.Vector(a + "r_k", c, {{h, n}, {c}});
    L.ln_x_w = w.Vector(a + "ln_x.weight", c, vec);
    L.ln_x_b = w.Vector(a + "ln_x.bias", c, vec);
    L.ffn_x_k = w.Vector(p + "ffn.x_k", c, vec3);
    L.wr = w.Linear(a + "receptance.weight", c, c);
    L.wk = w.Linear(a + "key.weight", c, c);
    L.wv = w.Linear(a + "value.weight", c, c);
    L.wo = w.Linear(a + "output.weight", c, c);
    L.w1 = w.LoraFactor(a + "w1", c, dw);
    L.w2 = w.LoraFactor(a + "w2", dw, c);
    L.a1 = w.LoraFactor(a + "a1", c, da);
    L.a2 = w.LoraFactor(a + "a2", da, c);
    L.g1 = w.LoraFactor(a + "g1", c, dg);
    L.g2 = w.LoraFactor(a + "g2", dg, c);
    if (l == 0) {
      // Layer 0 defines v_first; its v0/v1/v2 are dummies in some checkpoints and absent in
      // others (spec §8.2.11), never applied.
      for (const char* name : {"v0", "v1", "v2"}) w.Ignore(a + name);
      L.v0 = nullptr;
    } else {
      L.v0 = w.Vector(a + "v0", c, vec3);
      L.v1 = w.LoraFactor(a + "v1", c, dv);
      L.v2 = w.LoraFactor(a + "v2", dv, c);
    }
    L.ffn_key = w.Linear(p + "ffn.key.weight", f, c);
    L.ffn_value = w.Linear(p + "ffn.value.weight", c, f);
    layers_.push_back(L);
  }
  RETAIN_RETURN_IF_ERROR(w.Finish());
  weights_ = w.TakeBuffers();

  const int lora = std::max({dw, da, dv, dg, 1});
  RETAIN_RETURN_IF_ERROR(Scratch(c, {&xa_, &prev_, &xr_, &xw_, &xk_, &xv_, &xq_, &xg_, &r_, &k_, &v_,
                                     &wz_, &az_, &vz_, &g_, &b_, &y_, &v_first_, &tmp_}));
  RETAIN_RETURN_IF_ERROR(Scratch(lora, {&lora_w_, &lora_a_, &lora_v_, &lora_g_}));
  RETAIN_RETURN_IF_ERROR(Scratch(f, {&ffn_}));
  ptrs_.reserve(options_.max_step_tokens);
  return InitCommon(std::vector<float>(LayerFloats() * config_.n_layer, 0.0f));
}

void Rwkv7Model::RunLayers(const Step& step, float* x) {
  Backend& be = *backend_;
  const int rows = step.rows, c = config_.n_embd, h = config_.n_head, n = config_.head_size;
  const float eps = config_.layer_norm_eps;
  const size_t rc = static_cast<size_t>(rows) * c;
  for (int l = 0; l < config_.n_layer; ++l) {
    const Rwkv7Layer& L = layers_[l];
    const size_t base = LayerFloats() * l;
    // Time mix.
    be.LayerNorm(x, rows, c, L.ln1_w, L.ln1_b, eps, xa_);
    StatePointers(step, base, ptrs_);
    be.TokenShift({step.seqs, c, xa_, ptrs_.data(), prev_});
    be.MixDelta(xa_, prev_, L.x_r, rows, c, xr_);
    be.MixDelta(xa_, prev_, L.x_w, rows, c, xw_);
    be.MixDelta(xa_, prev_, L.x_k, rows, c, xk_);
    be.MixDelta(xa_, prev_, L.x_v, rows, c, xv_);
    be.MixDelta(xa_, prev_, L.x_a, rows, c, xq_);
    be.MixDelta(xa_, prev_, L.x_g, rows, c, xg_);
    // The projections and the LoRAs' first factors all read the mixes: one unit of work, then
    // the second factors (layer 0 has no value LoRA).
    if (l > 0) {
      be.MatMuls({{xr_, rows, L.wr, r_}, {xk_, rows, L.wk, k_}, {xv_, rows, L.wv, v_}, {xw_, rows, L.w1, lora_w_},
                  {xq_, rows, L.a1, lora_a_}, {xv_, rows, L.v1, lora_v_}, {xg_, rows, L.g1, lora_g_}});
    } else {
      be.MatMuls({{xr_, rows, L.wr, r_}, {xk_, rows, L.wk, k_}, {xv_, rows, L.wv, v_}, {xw_, rows, L.w1, lora_w_},
                  {xq_, rows, L.a1, lora_a_}, {xg_, rows, L.g1, lora_g_}});
    }
    be.Tanh(lora_w_, static_cast<size_t>(rows) * L.w1.rows);
    be.Sigmoid(lora_g_, static_cast<size_t>(rows) * L.g1.rows);
    if (l > 0) {
      be.MatMuls({{lora_w_, rows, L.w2, wz_}, {lora_a_, rows, L.a2, az_}, {lora_v_, rows, L.v2, vz_}, {lora_g_, rows, L.g2, g_}});
    } else {
      be.MatMuls({{lora_w_, rows, L.w2, wz_}, {lora_a_, rows, L.a2, az_}, {lora_g_, rows, L.g2, g_}});
    }
    kernels::Rwkv7PrepareArgs prep;
    prep.rows = rows;
    prep.n_head = h;
    prep.head_size = n;
    prep.first_layer = l == 0;
    prep.k = k_;
    prep.v = v_;
    prep.wz = wz_;
    prep.az = az_;
    prep.vz = vz_;
    prep.v_first = v_first_;
    prep.b = b_;
    prep.w0 = L.w0;
    prep.a0 = L.a0;
    prep.v0 = L.v0;
    prep.k_k = L.k_k;
    prep.k_a = L.k_a;
    be.Rwkv7Prepare(prep);
    StatePointers(step, base + 2 * c, ptrs_);
    kernels::Wkv7Args wkv;
    wkv.seqs = step.seqs;
    wkv.n_head = h;
    wkv.head_size = n;
    wkv.r = r_;
    wkv.w = wz_;
    wkv.k = k_;
    wkv.v = v_;
    wkv.a = az_;
    wkv.b = b_;
    wkv.states = ptrs_.data();
    wkv.y = y_;
    be.Wkv7(wkv);
    be.Rwkv7Output({rows, h, n, config_.ln_x_eps, y_, r_, k_, v_, g_, L.ln_x_w, L.ln_x_b, L.r_k});
    be.MatMul({y_, rows, L.wo, tmp_});
    be.Add(x, tmp_, rc);
    // Channel mix.
    be.LayerNorm(x, rows, c, L.ln2_w, L.ln2_b, eps, xa_);
    StatePointers(step, base + c, ptrs_);
    be.TokenShift({step.seqs, c, xa_, ptrs_.data(), prev_});
    be.MixDelta(xa_, prev_, L.ffn_x_k, rows, c, xk_);
    be.MatMul({xk_, rows, L.ffn_key, ffn_});
    be.ReluSquare(ffn_, static_cast<size_t>(rows) * config_.dim_ffn);
    be.MatMul({ffn_, rows, L.ffn_value, tmp_});
    be.Add(x, tmp_, rc);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> LoadRwkv7(const ModelConfig& config, const ModelOptions& options,
                                                 const SafetensorsFile& file, std::unique_ptr<Backend> backend) {
  auto model = std::make_unique<Rwkv7Model>(config, options, std::move(backend));
  RETAIN_RETURN_IF_ERROR(model->Load(file));
  return model;
}

}  // namespace retain::engine
