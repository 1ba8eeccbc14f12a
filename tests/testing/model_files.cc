// Test model files.
#include "tests/testing/model_files.h"

#include <cmath>
#include <filesystem>
#include <unistd.h>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace retain::testing {

using engine::DType;

std::vector<engine::TokenId> RandomTokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<engine::TokenId> t(n);
  for (auto& x : t) x = static_cast<engine::TokenId>(rng() % vocab);
  return t;
}
using engine::TensorToWrite;

TensorMap ReadTensors(const std::string& path) {
  TensorMap out;
  auto file = engine::SafetensorsFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return out;
  for (const auto& [name, info] : (*file)->tensors()) {
    TensorToWrite t{name, info.dtype, info.shape, std::vector<float>(info.numel())};
    for (size_t i = 0; i < t.values.size(); ++i) t.values[i] = engine::LoadAsFloat(info.data, info.dtype, i);
    out[name] = std::move(t);
  }
  return out;
}

std::string WriteModelDir(const std::string& name, const TensorMap& tensors, const std::string& config_json) {
  // ctest runs tests as parallel processes sharing TempDir(): keep each process's files apart.
  const std::string dir = absl::StrCat(::testing::TempDir(), "/retain_models_", getpid(), "/", name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::vector<TensorToWrite> list;
  for (const auto& [n, t] : tensors) list.push_back(t);
  EXPECT_TRUE(engine::WriteSafetensors(dir + "/model.safetensors", list).ok());
  if (!config_json.empty()) std::ofstream(dir + "/config.json") << config_json;
  return dir;
}

TensorMap RandomRwkv7(int n_layer, int c, int n, int vocab, int ffn, uint32_t seed) {
  std::mt19937 rng(seed);
  TensorMap m;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, float offset = 0) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    std::normal_distribution<float> dist(0.0f, 1.0f);
    TensorToWrite t{name, DType::kF32, shape, std::vector<float>(numel)};
    for (float& v : t.values) v = offset + scale * dist(rng);
    m[name] = std::move(t);
  };
  const float lin = 1.0f / std::sqrt(static_cast<float>(c));
  const int d = 16;
  add("emb.weight", {vocab, c}, 1.0f);
  add("head.weight", {vocab, c}, lin);
  add("ln_out.weight", {c}, 0.1f, 1.0f);
  add("ln_out.bias", {c}, 0.1f);
  add("blocks.0.ln0.weight", {c}, 0.1f, 1.0f);
  add("blocks.0.ln0.bias", {c}, 0.1f);
  for (int l = 0; l < n_layer; ++l) {
    const std::string p = absl::StrCat("blocks.", l, ".");
    for (const char* ln : {"ln1", "ln2"}) {
      add(p + ln + ".weight", {c}, 0.1f, 1.0f);
      add(p + ln + ".bias", {c}, 0.1f);
    }
    for (const char* x : {"x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "k_a"}) add(p + "att." + x, {1, 1, c}, 0.2f, 0.5f);
    add(p + "att.k_k", {1, 1, c}, 0.2f, 0.85f);
    for (const char* x : {"w0", "a0", "v0"}) add(p + "att." + x, {1, 1, c}, 0.5f);
    for (const char* x : {"w", "a", "v", "g"}) {
      add(p + "att." + x + "1", {c, d}, lin);
      add(p + "att." + x + "2", {d, c}, 0.25f);
    }
    add(p + "att.r_k", {c / n, n}, 0.3f);
    for (const char* x : {"receptance", "key", "value", "output"}) add(p + "att." + x + ".weight", {c, c}, lin);
    add(p + "att.ln_x.weight", {c}, 0.1f, 1.0f);
    add(p + "att.ln_x.bias", {c}, 0.1f);
    add(p + "ffn.x_k", {1, 1, c}, 0.2f, 0.5f);
    add(p + "ffn.key.weight", {ffn, c}, lin);
    add(p + "ffn.value.weight", {c, ffn}, 1.0f / std::sqrt(static_cast<float>(ffn)));
  }
  return m;
}

}  // namespace retain::testing

namespace retain::testing {
namespace {

// Adds N(offset, scale²) tensors to a map, stored as `dtype`.
class RandomTensors {
 public:
  RandomTensors(TensorMap& m, uint32_t seed, DType dtype) : m_(m), rng_(seed), dtype_(dtype) {}
  void Add(const std::string& name, std::vector<int64_t> shape, float scale, float offset = 0) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    std::normal_distribution<float> dist(0.0f, 1.0f);
    TensorToWrite t{name, dtype_, shape, std::vector<float>(numel)};
    for (float& v : t.values) v = offset + scale * dist(rng_);
    m_[name] = std::move(t);
  }
  // nn.Linear [out, in] with std 1/sqrt(in) times `gain`.
  void Linear(const std::string& name, int out, int in, float gain = 1.0f) {
    Add(name, {out, in}, gain / std::sqrt(static_cast<float>(in)));
  }

 private:
  TensorMap& m_;
  std::mt19937 rng_;
  DType dtype_;
};

}  // namespace

ModelFiles RandomRetNet(RetNetLayout layout, const RetNetShape& s, uint32_t seed, DType dtype) {
  ModelFiles out;
  RandomTensors r(out.tensors, seed, dtype);
  const int d = s.d, vw = s.value_width, f = s.ffn;
  const bool fla = layout == RetNetLayout::kFlaFusedMlp || layout == RetNetLayout::kFlaSplitMlp;
  const bool legacy = layout == RetNetLayout::kTorchscaleLegacy;
  // v gets a larger gain (as in the conformance kits) so the per-head norm never works near its eps.
  const float v_gain = 3.0f;
  if (fla) {
    r.Add("model.embeddings.weight", {s.vocab, d}, 1.0f);
    r.Linear("lm_head.weight", s.vocab, d, 2.0f);
    r.Add("model.norm.weight", {d}, 0.1f, 1.0f);
    for (int l = 0; l < s.n_layer; ++l) {
      const std::string p = absl::StrCat("model.layers.", l, ".");
      r.Add(p + "attn_norm.weight", {d}, 0.1f, 1.0f);
      r.Add(p + "mlp_norm.weight", {d}, 0.1f, 1.0f);
      r.Linear(p + "attn.q_proj.weight", d, d);
      r.Linear(p + "attn.k_proj.weight", d, d);
      r.Linear(p + "attn.v_proj.weight", vw, d, v_gain);
      r.Linear(p + "attn.g_proj.weight", vw, d);
      r.Linear(p + "attn.o_proj.weight", d, vw);
      r.Add(p + "attn.g_norm_swish_gate.weight", {vw / s.n_head}, 0.1f, 1.0f);
      if (layout == RetNetLayout::kFlaFusedMlp) {
        r.Linear(p + "mlp.gate_proj.weight", 2 * f, d);
      } else {
        r.Linear(p + "mlp.gate_proj.weight", f, d);
        r.Linear(p + "mlp.up_proj.weight", f, d);
      }
      r.Linear(p + "mlp.down_proj.weight", d, f);
    }
    out.config_json = absl::StrCat(
        R"({"model_type": "retnet", "architectures": ["RetNetForCausalLM"], "hidden_size": )", d,
        R"(, "num_hidden_layers": )", s.n_layer, R"(, "num_heads": )", s.n_head, R"(, "expand_k": 1, "expand_v": )",
        vw / d, R"(, "hidden_ratio": 2, "intermediate_size": )", f, R"(, "vocab_size": )", s.vocab,
        R"(, "tie_word_embeddings": false, "norm_eps": 1e-06, "use_output_gate": true, "elementwise_affine": true,)"
        R"( "use_short_conv": false, "feature_map": null, "hidden_act": "swish", "fuse_norm": true,)"
        R"( "attn_mode": "fused_chunk", "torch_dtype": "bfloat16"})");
    return out;
  }
  // torchscale: embeddings are scaled by sqrt(d), so store them at 1/sqrt(d).
  r.Add("embed_tokens.weight", {s.vocab, d}, 1.0f / std::sqrt(static_cast<float>(d)));
  r.Linear("output_projection.weight", s.vocab, d, 2.0f);
  r.Add("layer_norm.weight", {d}, 0.1f, 1.0f);
  if (legacy) r.Add("layer_norm.bias", {d}, 0.1f);
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = absl::StrCat("layers.", l, ".");
    const std::string a = p + "retention.";
    r.Linear(a + "q_proj.weight", d, d);
    r.Linear(a + "k_proj.weight", d, d);
    r.Linear(a + "v_proj.weight", vw, d, v_gain);
    r.Linear(a + "g_proj.weight", vw, d);
    r.Linear(a + "out_proj.weight", d, vw);
    for (const char* n : {"retention_layer_norm", "final_layer_norm"}) {
      r.Add(p + n + ".weight", {d}, 0.1f, 1.0f);
      if (legacy) r.Add(p + n + ".bias", {d}, 0.1f);
    }
    r.Linear(p + "ffn.fc1.weight", f, d);
    r.Linear(p + "ffn.fc2.weight", d, f);
    if (legacy) {
      r.Add(a + "q_proj.bias", {d}, 0.1f);
      r.Add(a + "k_proj.bias", {d}, 0.1f);
      r.Add(a + "v_proj.bias", {vw}, 0.3f);
      r.Add(a + "g_proj.bias", {vw}, 0.1f);
      r.Add(a + "out_proj.bias", {d}, 0.1f);
      r.Add(p + "ffn.fc1.bias", {f}, 0.1f);
      r.Add(p + "ffn.fc2.bias", {d}, 0.1f);
    } else {
      r.Linear(p + "ffn.gate.weight", f, d);
    }
  }
  out.config_json = absl::StrCat(
      R"({"architecture": "retnet", "decoder_embed_dim": )", d, R"(, "decoder_value_embed_dim": )", vw,
      R"(, "decoder_retention_heads": )", s.n_head, R"(, "decoder_ffn_embed_dim": )", f, R"(, "decoder_layers": )",
      s.n_layer, R"(, "vocab_size": )", s.vocab, R"(, "activation_fn": ")", legacy ? "gelu" : "swish",
      R"(", "no_scale_embedding": false, "layernorm_eps": )", legacy ? "1e-05" : "1e-06",
      R"(, "decoder_normalize_before": true, "share_decoder_input_output_embed": false, "deepnorm": false,)"
      R"( "multiway": false, "moe_freq": 0, "layernorm_embedding": false, "no_output_layer": false})");
  return out;
}

ModelFiles RandomTransNormer(const TransNormerShape& s, uint32_t seed, DType dtype) {
  ModelFiles out;
  RandomTensors r(out.tensors, seed, dtype);
  const int d = s.d, f = s.glu, dh = d / s.n_head;
  r.Add("model.embed_tokens.weight", {s.vocab, d}, 1.0f / std::sqrt(static_cast<float>(d)));
  std::vector<std::string> lrpe;
  for (int l = 0; l < s.n_layer; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    r.Linear(p + "token_mixer.qkvu_proj.weight", 4 * d, d);
    r.Linear(p + "token_mixer.out_proj.weight", d, d);
    r.Linear(p + "channel_mixer.l1.weight", f, d);
    r.Linear(p + "channel_mixer.l2.weight", f, d);
    r.Linear(p + "channel_mixer.l3.weight", d, f);
    const bool on = l < static_cast<int>(s.lrpe.size()) && s.lrpe[l] != 0;
    lrpe.push_back(on ? "1" : "0");
    if (!on) continue;
    // The released init 10000^(−2j/d), j = h·d_h + c, perturbed: the engine must use the stored values.
    TensorToWrite theta{p + "token_mixer.lrpe.theta", dtype, {s.n_head, 1, dh}, std::vector<float>(d)};
    std::mt19937 rng(seed + 1000 + l);
    std::uniform_real_distribution<float> jitter(0.9f, 1.1f);
    for (int j = 0; j < d; ++j) theta.values[j] = std::pow(10000.0f, -2.0f * j / d) * jitter(rng);
    out.tensors[theta.name] = std::move(theta);
  }
  out.config_json = absl::StrCat(
      R"({"model_type": "transnormer", "architectures": ["TransnormerForCausalLM"], "decoder_embed_dim": )", d,
      R"(, "decoder_layers": )", s.n_layer, R"(, "decoder_attention_heads": )", s.n_head, R"(, "hidden_dim": )", d,
      R"(, "glu_dim": )", f, R"(, "vocab_size": )", s.vocab, R"(, "linear_use_lrpe_list": [)", absl::StrJoin(lrpe, ", "),
      R"(], "no_scale_embedding": false, "norm_type": "simplermsnorm", "linear_act_fun": "silu", "bias": false,)"
      R"( "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "add_bos_token": false, "init_std": 0.02})");
  return out;
}

}  // namespace retain::testing
