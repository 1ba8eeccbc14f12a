// Random models. Values are uniform with a 1/sqrt(fan-in) scale, mix coefficients in (0, 1), so
// activations stay O(1) over many tokens and no path produces NaN (decode speed must not depend on
// denormals or NaNs that a trained model would not produce).
#include "bench/random_models.h"

#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace retain::bench {
namespace {

using engine::DType;

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  float scale, offset;  // values uniform in offset ± scale
  bool keep_f32;        // small vectors stay f32 like the references keep them
};

class ImageBuilder {
 public:
  void Add(std::string name, std::vector<int64_t> shape, float scale, float offset = 0, bool keep_f32 = false) {
    specs_.push_back({std::move(name), std::move(shape), scale, offset, keep_f32});
  }

  RandomModelImage Build(DType dtype, uint64_t seed) {
    nlohmann::json header = nlohmann::json::object();
    size_t offset = 0;
    std::vector<size_t> begins;
    for (const auto& s : specs_) {
      const DType t = s.keep_f32 ? DType::kF32 : dtype;
      size_t n = 1;
      for (int64_t d : s.shape) n *= d;
      begins.push_back(offset);
      header[s.name] = {{"dtype", std::string(engine::DTypeName(t))}, {"shape", s.shape},
                        {"data_offsets", {offset, offset + n * engine::DTypeSize(t)}}};
      offset += n * engine::DTypeSize(t);
      offset = (offset + 63) / 64 * 64;  // aligned tensors, as converters write them
    }
    std::string json = header.dump();
    while ((8 + json.size()) % 64 != 0) json.push_back(' ');
    RandomModelImage img;
    img.bytes.resize(8 + json.size() + offset);
    for (int i = 0; i < 8; ++i) img.bytes[i] = static_cast<uint8_t>(static_cast<uint64_t>(json.size()) >> (8 * i));
    std::memcpy(img.bytes.data() + 8, json.data(), json.size());
    uint8_t* data = img.bytes.data() + 8 + json.size();
    // Fill tensors on two threads; each tensor has its own generator so the result is the same
    // whatever the split.
    std::vector<std::thread> ts;
    for (int t = 0; t < 2; ++t) {
      ts.emplace_back([&, t] {
        for (size_t i = t; i < specs_.size(); i += 2) Fill(specs_[i], specs_[i].keep_f32 ? DType::kF32 : dtype, data + begins[i], seed + i);
      });
    }
    for (auto& t : ts) t.join();
    return img;
  }

 private:
  static void Fill(const TensorSpec& s, DType t, uint8_t* dst, uint64_t seed) {
    size_t n = 1;
    for (int64_t d : s.shape) n *= d;
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      const float u = static_cast<float>(x >> 40) * (2.0f / 16777216.0f) - 1.0f;  // [-1, 1)
      const float v = s.offset + s.scale * u;
      if (t == DType::kF32) {
        std::memcpy(dst + 4 * i, &v, 4);
      } else {
        const uint16_t h = t == DType::kF16 ? engine::FloatToF16(v) : engine::FloatToBF16(v);
        std::memcpy(dst + 2 * i, &h, 2);
      }
    }
  }
  std::vector<TensorSpec> specs_;
};

struct Rwkv7Shape { int layers, width, dw, da, dv, dg; };
struct Rwkv4Shape { int layers, width; };

// What RWKV-4 and RWKV-7 checkpoints share: embedding, head, ln0 and ln_out.
void AddRwkvShared(ImageBuilder& b, int v, int c, float lin) {
  b.Add("emb.weight", {v, c}, 1.0f);
  b.Add("head.weight", {v, c}, lin);
  for (const char* n : {"blocks.0.ln0", "ln_out"}) {
    b.Add(absl::StrCat(n, ".weight"), {c}, 0.1f, 1.0f);
    b.Add(absl::StrCat(n, ".bias"), {c}, 0.1f);
  }
}

void AddLayerNorms(ImageBuilder& b, const std::string& p, int c) {
  for (const char* ln : {"ln1", "ln2"}) {
    b.Add(p + ln + ".weight", {c}, 0.1f, 1.0f);
    b.Add(p + ln + ".bias", {c}, 0.1f);
  }
}

void AddRwkv7(ImageBuilder& b, const Rwkv7Shape& s) {
  const int c = s.width, v = 65536, f = 4 * c, h = c / 64;
  const float lin = 1.7f / std::sqrt(static_cast<float>(c));
  AddRwkvShared(b, v, c, lin);
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = absl::StrCat("blocks.", l, ".");
    AddLayerNorms(b, p, c);
    for (const char* x : {"x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "k_k", "k_a"}) b.Add(p + "att." + x, {1, 1, c}, 0.3f, 0.5f);
    for (const char* x : {"w0", "a0", "v0"}) b.Add(p + "att." + x, {1, 1, c}, 0.5f);
    const std::pair<const char*, int> loras[] = {{"w", s.dw}, {"a", s.da}, {"v", s.dv}, {"g", s.dg}};
    for (const auto& [x, d] : loras) {
      b.Add(p + "att." + x + "1", {c, d}, lin);
      b.Add(p + "att." + x + "2", {d, c}, 1.7f / std::sqrt(static_cast<float>(d)));
    }
    b.Add(p + "att.r_k", {h, 64}, 0.3f);
    for (const char* x : {"receptance", "key", "value", "output"}) b.Add(p + "att." + x + ".weight", {c, c}, lin);
    b.Add(p + "att.ln_x.weight", {c}, 0.1f, 1.0f);
    b.Add(p + "att.ln_x.bias", {c}, 0.1f);
    b.Add(p + "ffn.x_k", {1, 1, c}, 0.3f, 0.5f);
    b.Add(p + "ffn.key.weight", {f, c}, lin);
    b.Add(p + "ffn.value.weight", {c, f}, 1.7f / std::sqrt(static_cast<float>(f)));
  }
}

void AddRwkv4(ImageBuilder& b, const Rwkv4Shape& s) {
  const int c = s.width, v = 50277, f = 4 * c;
  const float lin = 1.7f / std::sqrt(static_cast<float>(c));
  AddRwkvShared(b, v, c, lin);
  for (int l = 0; l < s.layers; ++l) {
    const std::string p = absl::StrCat("blocks.", l, ".");
    AddLayerNorms(b, p, c);
    b.Add(p + "att.time_decay", {c}, 1.0f, -1.0f);
    b.Add(p + "att.time_first", {c}, 0.5f);
    for (const char* x : {"att.time_mix_k", "att.time_mix_v", "att.time_mix_r", "ffn.time_mix_k", "ffn.time_mix_r"})
      b.Add(p + x, {1, 1, c}, 0.3f, 0.5f);
    for (const char* x : {"key", "value", "receptance", "output"}) b.Add(p + "att." + x + ".weight", {c, c}, lin);
    b.Add(p + "ffn.key.weight", {f, c}, lin);
    b.Add(p + "ffn.receptance.weight", {c, c}, lin);
    b.Add(p + "ffn.value.weight", {c, f}, 1.7f / std::sqrt(static_cast<float>(f)));
  }
}

// RetNet 1.3b in the fla-hub layout (the public checkpoints): d 2048, 24 layers, 8 heads,
// value width 4096, fused gate/up FFN of 2 × 2816, vocab 32000.
std::string AddRetNetFla(ImageBuilder& b, int d, int layers, int heads, int vw, int f, int vocab) {
  const float lin = 1.7f / std::sqrt(static_cast<float>(d));
  b.Add("model.embeddings.weight", {vocab, d}, 1.0f);
  b.Add("lm_head.weight", {vocab, d}, lin);
  b.Add("model.norm.weight", {d}, 0.1f, 1.0f);
  for (int l = 0; l < layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    b.Add(p + "attn_norm.weight", {d}, 0.1f, 1.0f);
    b.Add(p + "mlp_norm.weight", {d}, 0.1f, 1.0f);
    b.Add(p + "attn.q_proj.weight", {d, d}, lin);
    b.Add(p + "attn.k_proj.weight", {d, d}, lin);
    b.Add(p + "attn.v_proj.weight", {vw, d}, 3 * lin);
    b.Add(p + "attn.g_proj.weight", {vw, d}, lin);
    b.Add(p + "attn.o_proj.weight", {d, vw}, 1.7f / std::sqrt(static_cast<float>(vw)));
    b.Add(p + "attn.g_norm_swish_gate.weight", {vw / heads}, 0.1f, 1.0f, true);
    b.Add(p + "mlp.gate_proj.weight", {2 * f, d}, lin);
    b.Add(p + "mlp.down_proj.weight", {d, f}, 1.7f / std::sqrt(static_cast<float>(f)));
  }
  return absl::StrCat(R"({"model_type": "retnet", "hidden_size": )", d, R"(, "num_hidden_layers": )", layers,
                      R"(, "num_heads": )", heads, R"(, "expand_k": 1, "expand_v": )", vw / d,
                      R"(, "hidden_ratio": 2, "intermediate_size": )", f, R"(, "vocab_size": )", vocab,
                      R"(, "tie_word_embeddings": false, "norm_eps": 1e-06, "use_output_gate": true,)"
                      R"( "elementwise_affine": true, "use_short_conv": false, "hidden_act": "swish"})");
}

// RetNet in torchscale's current layout (RMSNorm, GLU), the small shape.
std::string AddRetNetTorchscale(ImageBuilder& b, int d, int layers, int heads, int vw, int f, int vocab) {
  const float lin = 1.7f / std::sqrt(static_cast<float>(d));
  b.Add("embed_tokens.weight", {vocab, d}, 1.0f / std::sqrt(static_cast<float>(d)));
  b.Add("output_projection.weight", {vocab, d}, lin);
  b.Add("layer_norm.weight", {d}, 0.1f, 1.0f);
  for (int l = 0; l < layers; ++l) {
    const std::string p = absl::StrCat("layers.", l, ".");
    b.Add(p + "retention.q_proj.weight", {d, d}, lin);
    b.Add(p + "retention.k_proj.weight", {d, d}, lin);
    b.Add(p + "retention.v_proj.weight", {vw, d}, 3 * lin);
    b.Add(p + "retention.g_proj.weight", {vw, d}, lin);
    b.Add(p + "retention.out_proj.weight", {d, vw}, 1.7f / std::sqrt(static_cast<float>(vw)));
    b.Add(p + "retention_layer_norm.weight", {d}, 0.1f, 1.0f);
    b.Add(p + "final_layer_norm.weight", {d}, 0.1f, 1.0f);
    b.Add(p + "ffn.fc1.weight", {f, d}, lin);
    b.Add(p + "ffn.gate.weight", {f, d}, lin);
    b.Add(p + "ffn.fc2.weight", {d, f}, 1.7f / std::sqrt(static_cast<float>(f)));
  }
  return absl::StrCat(R"({"architecture": "retnet", "decoder_embed_dim": )", d, R"(, "decoder_value_embed_dim": )", vw,
                      R"(, "decoder_retention_heads": )", heads, R"(, "decoder_ffn_embed_dim": )", f,
                      R"(, "decoder_layers": )", layers, R"(, "vocab_size": )", vocab,
                      R"(, "activation_fn": "swish", "no_scale_embedding": false, "layernorm_eps": 1e-06})");
}

// TransNormerLLM 1b (OpenNLPLab): d 2048, 16 layers, 16 heads, GLU 5632, vocab 64000, tied, LRPE
// on layer 0.
std::string AddTransNormer(ImageBuilder& b, int d, int layers, int heads, int glu, int vocab) {
  const float lin = 1.7f / std::sqrt(static_cast<float>(d));
  b.Add("model.embed_tokens.weight", {vocab, d}, 1.0f / std::sqrt(static_cast<float>(d)));
  std::string lrpe;
  for (int l = 0; l < layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    b.Add(p + "token_mixer.qkvu_proj.weight", {4 * d, d}, lin);
    b.Add(p + "token_mixer.out_proj.weight", {d, d}, lin);
    b.Add(p + "channel_mixer.l1.weight", {glu, d}, lin);
    b.Add(p + "channel_mixer.l2.weight", {glu, d}, lin);
    b.Add(p + "channel_mixer.l3.weight", {d, glu}, 1.7f / std::sqrt(static_cast<float>(glu)));
    if (l == 0) b.Add(p + "token_mixer.lrpe.theta", {heads, 1, d / heads}, 0.0005f, 0.001f, true);
    absl::StrAppend(&lrpe, l ? ", " : "", l == 0 ? "1" : "0");
  }
  return absl::StrCat(R"({"model_type": "transnormer", "decoder_embed_dim": )", d, R"(, "decoder_layers": )", layers,
                      R"(, "decoder_attention_heads": )", heads, R"(, "hidden_dim": )", d, R"(, "glu_dim": )", glu,
                      R"(, "vocab_size": )", vocab, R"(, "linear_use_lrpe_list": [)", lrpe,
                      R"(], "no_scale_embedding": false, "norm_type": "simplermsnorm", "linear_act_fun": "silu",)"
                      R"( "bias": false})");
}

}  // namespace

absl::StatusOr<engine::DType> ParseDType(const std::string& name) {
  if (name == "f32") return engine::DType::kF32;
  if (name == "f16") return engine::DType::kF16;
  if (name == "bf16") return engine::DType::kBF16;
  return absl::InvalidArgumentError("--dtype is f32, f16 or bf16");
}

absl::StatusOr<RandomModelImage> BuildRandomModel(const std::string& arch, const std::string& shape,
                                                  DType dtype, uint64_t seed) {
  // Ranks (decay, iclr, value, gate) of the released RWKV-7 models (spec §1.2).
  static const std::map<std::string, Rwkv7Shape> kRwkv7 = {
      {"0.1b", {12, 768, 64, 64, 32, 128}}, {"0.4b", {24, 1024, 64, 64, 32, 128}}, {"1.5b", {24, 2048, 96, 96, 64, 256}}};
  static const std::map<std::string, Rwkv4Shape> kRwkv4 = {
      {"169m", {12, 768}}, {"430m", {24, 1024}}, {"1.5b", {24, 2048}}, {"3b", {32, 2560}}, {"7b", {32, 4096}}, {"14b", {40, 5120}}};
  ImageBuilder b;
  auto unknown = [&](const auto& table) {
    std::vector<std::string> names;
    for (const auto& [n, s] : table) names.push_back(n);
    return absl::InvalidArgumentError(absl::StrCat("unknown ", arch, " shape '", shape, "' (known: ", absl::StrJoin(names, ", "), ")"));
  };
  if (arch == "rwkv7") {
    auto it = kRwkv7.find(shape);
    if (it == kRwkv7.end()) return unknown(kRwkv7);
    AddRwkv7(b, it->second);
  } else if (arch == "rwkv4") {
    auto it = kRwkv4.find(shape);
    if (it == kRwkv4.end()) return unknown(kRwkv4);
    AddRwkv4(b, it->second);
  } else if (arch == "retnet" || arch == "transnormer") {
    std::string config;
    RandomModelImage names;
    if (arch == "retnet" && shape == "1.3b") {
      config = AddRetNetFla(b, 2048, 24, 8, 4096, 2816, 32000);
      names.embedding = "model.embeddings.weight";
      names.head = "lm_head.weight";
    } else if (arch == "retnet" && shape == "small") {
      config = AddRetNetTorchscale(b, 512, 6, 2, 864, 864, 32000);
      names.embedding = "embed_tokens.weight";
      names.head = "output_projection.weight";
    } else if (arch == "transnormer" && shape == "1b") {
      config = AddTransNormer(b, 2048, 16, 16, 5632, 64000);
      names.embedding = "model.embed_tokens.weight";
      names.head = "";
      names.tied = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown ", arch, " shape '", shape,
                                                     "' (known: retnet small, 1.3b; transnormer 1b)"));
    }
    RandomModelImage img = b.Build(dtype, seed);
    img.config_json = config;
    img.embedding = names.embedding;
    img.head = names.head;
    img.tied = names.tied;
    return img;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown --arch '", arch, "' (known: rwkv7, rwkv4, retnet, transnormer)"));
  }
  return b.Build(dtype, seed);
}

absl::StatusOr<std::unique_ptr<ConfigDir>> ConfigDir::Write(const RandomModelImage& image) {
  std::unique_ptr<ConfigDir> dir(new ConfigDir);
  if (image.config_json.empty()) return dir;
  char tmpl[] = "/tmp/retain-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError(absl::StrCat("mkdtemp failed: ", std::strerror(errno)));
  dir->path_ = tmpl;
  std::ofstream out(dir->path_ + "/config.json");
  out << image.config_json;
  if (!out.flush()) return absl::InternalError(absl::StrCat("cannot write ", dir->path_, "/config.json"));
  return dir;
}

ConfigDir::~ConfigDir() {
  if (path_.empty()) return;
  std::remove((path_ + "/config.json").c_str());
  rmdir(path_.c_str());
}

}  // namespace retain::bench
