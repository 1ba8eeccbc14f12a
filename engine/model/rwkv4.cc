// RWKV-4, spec shared/spec/rwkv.md §2, official checkpoint names.
//
// State per layer, f32, ChatRWKV's slot order: [att_x][aa][bb][pp][ffn_x], each [C]; pp starts at
// -1e30 like the references (spec §8.2.17). time_decay is turned into -exp(time_decay) at load.
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/model/families.h"
#include "engine/model/recurrent_model.h"
#include "engine/model/weights.h"
#include "retain/engine/status_macros.h"

namespace retain::engine {
namespace {

struct Rwkv4Layer {
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
  const float *time_decay, *time_first, *mix_k, *mix_v, *mix_r, *ffn_mix_k, *ffn_mix_r;
  MatrixRef wk, wv, wr, wo, ffn_key, ffn_receptance, ffn_value;
};

class Rwkv4Model final : public RecurrentModel {
 public:
  Rwkv4Model(const ModelConfig& c, const ModelOptions& o, std::unique_ptr<Backend> b)
      : RecurrentModel(c, o, std::move(b)) {}

  absl::Status Load(const SafetensorsFile& file);

 private:
  enum Slot { kAttX = 0, kAa, kBb, kPp, kFfnX, kSlots };
  size_t Offset(int layer, Slot slot) const {
    return (static_cast<size_t>(layer) * kSlots + slot) * config_.n_embd;
  }
  void RunLayers(const Step& step, float* x) override;

  std::vector<Rwkv4Layer> layers_;
  float *xa_, *prev_, *xk_, *xv_, *xr_, *r_, *k_, *v_, *wkv_, *tmp_, *ffn_;
  std::vector<float*> aa_, bb_, pp_, ptrs_;
};

absl::Status Rwkv4Model::Load(const SafetensorsFile& file) {
  const int c = config_.n_embd, f = config_.dim_ffn, v = config_.vocab_size;
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
    Rwkv4Layer L;
    L.ln1_w = w.Vector(p + "ln1.weight", c, vec);
    L.ln1_b = w.Vector(p + "ln1.bias", c, vec);
    L.ln2_w = w.Vector(p + "ln2.weight", c, vec);
    L.ln2_b = w.Vector(p + "ln2.bias", c, vec);
    std::vector<float> decay = w.HostVector(p + "att.time_decay", c, vec3);
    for (float& d : decay) d = -std::exp(d);
    L.time_decay = w.Upload(decay);
    L.time_first = w.Vector(p + "att.time_first", c, vec3);
    L.mix_k = w.Vector(p + "att.time_mix_k", c, vec3);
    L.mix_v = w.Vector(p + "att.time_mix_v", c, vec3);
    L.mix_r = w.Vector(p + "att.time_mix_r", c, vec3);
    L.ffn_mix_k = w.Vector(p + "ffn.time_mix_k", c, vec3);
    L.ffn_mix_r = w.Vector(p + "ffn.time_mix_r", c, vec3);
    L.wk = w.Linear(p + "att.key.weight", c, c);
    L.wv = w.Linear(p + "att.value.weight", c, c);
    L.wr = w.Linear(p + "att.receptance.weight", c, c);
    L.wo = w.Linear(p + "att.output.weight", c, c);
    L.ffn_key = w.Linear(p + "ffn.key.weight", f, c);
    L.ffn_receptance = w.Linear(p + "ffn.receptance.weight", c, c);
    L.ffn_value = w.Linear(p + "ffn.value.weight", c, f);
    layers_.push_back(L);
  }
  RETAIN_RETURN_IF_ERROR(w.Finish());
  weights_ = w.TakeBuffers();
  RETAIN_RETURN_IF_ERROR(Scratch(c, {&xa_, &prev_, &xk_, &xv_, &xr_, &r_, &k_, &v_, &wkv_, &tmp_}));
  RETAIN_RETURN_IF_ERROR(Scratch(f, {&ffn_}));
  for (auto* v : {&aa_, &bb_, &pp_, &ptrs_}) v->reserve(options_.max_step_tokens);
  std::vector<float> init(Offset(config_.n_layer, kAttX), 0.0f);
  for (int l = 0; l < config_.n_layer; ++l)
    std::fill_n(init.begin() + Offset(l, kPp), c, -1e30f);
  return InitCommon(std::move(init));
}

void Rwkv4Model::RunLayers(const Step& step, float* x) {
  Backend& be = *backend_;
  const int rows = step.rows, c = config_.n_embd;
  const float eps = config_.layer_norm_eps;
  const size_t rc = static_cast<size_t>(rows) * c;
  for (int l = 0; l < config_.n_layer; ++l) {
    const Rwkv4Layer& L = layers_[l];
    // Time mix.
    be.LayerNorm(x, rows, c, L.ln1_w, L.ln1_b, eps, xa_);
    StatePointers(step, Offset(l, kAttX), ptrs_);
    be.TokenShift({step.seqs, c, xa_, ptrs_.data(), prev_});
    be.MixInterp(xa_, prev_, L.mix_k, rows, c, xk_);
    be.MixInterp(xa_, prev_, L.mix_v, rows, c, xv_);
    be.MixInterp(xa_, prev_, L.mix_r, rows, c, xr_);
    be.MatMuls({{xr_, rows, L.wr, r_}, {xk_, rows, L.wk, k_}, {xv_, rows, L.wv, v_}});
    be.Sigmoid(r_, rc);
    StatePointers(step, Offset(l, kAa), aa_);
    StatePointers(step, Offset(l, kBb), bb_);
    StatePointers(step, Offset(l, kPp), pp_);
    kernels::Wkv4Args wkv;
    wkv.seqs = step.seqs;
    wkv.width = c;
    wkv.k = k_;
    wkv.v = v_;
    wkv.time_first = L.time_first;
    wkv.time_decay = L.time_decay;
    wkv.aa = aa_.data();
    wkv.bb = bb_.data();
    wkv.pp = pp_.data();
    wkv.wkv = wkv_;
    be.Wkv4(wkv);
    be.Mul(wkv_, r_, rc);
    be.MatMul({wkv_, rows, L.wo, tmp_});
    be.Add(x, tmp_, rc);
    // Channel mix.
    be.LayerNorm(x, rows, c, L.ln2_w, L.ln2_b, eps, xa_);
    StatePointers(step, Offset(l, kFfnX), ptrs_);
    be.TokenShift({step.seqs, c, xa_, ptrs_.data(), prev_});
    be.MixInterp(xa_, prev_, L.ffn_mix_k, rows, c, xk_);
    be.MixInterp(xa_, prev_, L.ffn_mix_r, rows, c, xr_);
    be.MatMuls({{xr_, rows, L.ffn_receptance, r_}, {xk_, rows, L.ffn_key, ffn_}});
    be.Sigmoid(r_, rc);
    be.ReluSquare(ffn_, static_cast<size_t>(rows) * config_.dim_ffn);
    be.MatMul({ffn_, rows, L.ffn_value, tmp_});
    be.Mul(tmp_, r_, rc);
    be.Add(x, tmp_, rc);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> LoadRwkv4(const ModelConfig& config, const ModelOptions& options,
                                                 const SafetensorsFile& file, std::unique_ptr<Backend> backend) {
  auto model = std::make_unique<Rwkv4Model>(config, options, std::move(backend));
  RETAIN_RETURN_IF_ERROR(model->Load(file));
  return model;
}

}  // namespace retain::engine
