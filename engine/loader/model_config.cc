// config.json parsing and shape inference. Official RWKV checkpoints have no config, so every
// hyper-parameter can come from the shapes; when config.json exists it must agree with them.
#include "retain/engine/model_config.h"

#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/loader/retention_config.h"
#include "nlohmann/json.hpp"
#include "retain/engine/safetensors.h"
#include "retain/engine/status_macros.h"

namespace retain::engine {
namespace {

using nlohmann::json;

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Dimension `axis` of tensor `name`, or an error naming the tensor.
absl::StatusOr<int> Dim(const SafetensorsFile& f, const std::string& name, size_t rank, size_t axis) {
  const TensorInfo* t = f.Find(name);
  if (t == nullptr) return absl::InvalidArgumentError(absl::StrCat(f.path(), ": missing tensor '", name, "'"));
  if (t->shape.size() != rank) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": tensor '", name, "' has shape ",
                                                   ShapeString(t->shape), ", expected rank ", rank));
  }
  return static_cast<int>(t->shape[axis]);
}

int CountLayers(const SafetensorsFile& f) {
  int layers = 0;
  for (const auto& [name, info] : f.tensors()) {
    if (name.rfind("blocks.", 0) != 0) continue;
    const size_t dot = name.find('.', 7);
    if (dot == std::string::npos) continue;
    int idx = 0;
    bool digits = dot > 7;
    for (size_t i = 7; i < dot && digits; ++i) {
      if (name[i] < '0' || name[i] > '9' || idx > 100000) digits = false;
      else idx = idx * 10 + (name[i] - '0');
    }
    if (digits) layers = std::max(layers, idx + 1);
  }
  return layers;
}

// Integer field of config.json; nullopt when absent, error when present but not an integer.
absl::StatusOr<std::optional<int>> IntField(const json& j, const char* key, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end()) return std::optional<int>();
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > (1 << 30)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": field '", key, "' must be a non-negative integer"));
  }
  return std::optional<int>(static_cast<int>(it->get<int64_t>()));
}

// Sets *value from the shapes, and checks config.json against it when config.json has the field.
absl::Status Reconcile(const json& j, const char* key, int inferred, const std::string& path,
                       const std::string& source, int* value) {
  RETAIN_ASSIGN_OR_RETURN(std::optional<int> given, IntField(j, key, path));
  if (given.has_value() && *given != inferred) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": '", key, "' is ", *given, " but ",
                                                   source, " gives ", inferred));
  }
  *value = inferred;
  return absl::OkStatus();
}

absl::StatusOr<json> ReadConfigJson(const std::string& path, bool* present) {
  std::ifstream in(path, std::ios::binary);
  *present = in.good();
  if (!*present) return json::object();
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a well-formed JSON object"));
  }
  return j;
}

absl::Status ReadTokenizer(const json& j, const std::string& dir, const std::string& path,
                           ModelConfig* c) {
  auto it = j.find("tokenizer");
  if (it == j.end()) return absl::OkStatus();
  std::string vocab;
  if (it->is_string()) {
    c->tokenizer_type = it->get<std::string>();
  } else if (it->is_object() && it->contains("type") && (*it)["type"].is_string()) {
    c->tokenizer_type = (*it)["type"].get<std::string>();
    if (it->contains("vocab")) {
      if (!(*it)["vocab"].is_string()) return absl::InvalidArgumentError(absl::StrCat(path, ": tokenizer.vocab must be a string"));
      vocab = (*it)["vocab"].get<std::string>();
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(path, ": 'tokenizer' must be a string or {\"type\": ...}"));
  }
  if (c->tokenizer_type == "byte") return absl::OkStatus();
  if (c->tokenizer_type == "rwkv_world") {
    if (vocab.empty()) vocab = "rwkv_vocab_v20230424.txt";
    c->tokenizer_vocab = vocab[0] == '/' ? vocab : absl::StrCat(dir, "/", vocab);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(path, ": unknown tokenizer type '", c->tokenizer_type,
                                                 "' (known: byte, rwkv_world)"));
}

}  // namespace

std::string_view ArchitectureName(Architecture a) {
  switch (a) {
    case Architecture::kRwkv4: return "rwkv4";
    case Architecture::kRwkv7: return "rwkv7";
    case Architecture::kRetNet: return "retnet";
    case Architecture::kTransNormer: return "transnormer";
  }
  return "?";
}

std::string_view RetNetVariantName(RetNetVariant v) {
  switch (v) {
    case RetNetVariant::kNone: return "none";
    case RetNetVariant::kTorchscale: return "torchscale";
    case RetNetVariant::kTorchscaleLegacy: return "torchscale-2023-07";
    case RetNetVariant::kFla: return "fla";
  }
  return "?";
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir, const SafetensorsFile& f) {
  const std::string path = dir.empty() ? "(no config.json)" : absl::StrCat(dir, "/config.json");
  bool present = false;
  json j = json::object();
  if (!dir.empty()) {
    RETAIN_ASSIGN_OR_RETURN(j, ReadConfigJson(path, &present));
  }
  ModelConfig c;

  std::string arch;
  if (auto it = j.find("architecture"); it != j.end()) {
    if (!it->is_string()) return absl::InvalidArgumentError(absl::StrCat(path, ": 'architecture' must be a string"));
    arch = it->get<std::string>();
  } else if (f.Find("blocks.0.att.r_k") != nullptr) {
    arch = "rwkv7";
  } else if (f.Find("blocks.0.att.time_first") != nullptr) {
    arch = "rwkv4";
  } else if (std::string sniffed = SniffRetentionArchitecture(j, f); !sniffed.empty()) {
    arch = sniffed;  // HF configs name it in model_type; else the tensor names tell
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        f.path(), ": cannot tell the architecture: no config.json 'architecture' and neither "
                  "'blocks.0.att.r_k' (rwkv7) nor 'blocks.0.att.time_first' (rwkv4)"));
  }
  if (arch == "rwkv7") {
    c.arch = Architecture::kRwkv7;
  } else if (arch == "rwkv4") {
    c.arch = Architecture::kRwkv4;
  } else if (arch == "retnet" || arch == "transnormer") {
    c.arch = arch == "retnet" ? Architecture::kRetNet : Architecture::kTransNormer;
    RETAIN_RETURN_IF_ERROR(ReadRetentionConfig(j, present, path, f, &c));
    RETAIN_RETURN_IF_ERROR(ReadTokenizer(j, dir, path, &c));
    return c;
  } else {
    return absl::UnimplementedError(absl::StrCat(path, ": architecture '", arch,
                                                 "' is not supported by this engine (supported: rwkv4, rwkv7, retnet, transnormer)"));
  }

  RETAIN_ASSIGN_OR_RETURN(int vocab, Dim(f, "emb.weight", 2, 0));
  RETAIN_ASSIGN_OR_RETURN(int embd, Dim(f, "emb.weight", 2, 1));
  RETAIN_ASSIGN_OR_RETURN(int ffn, Dim(f, "blocks.0.ffn.key.weight", 2, 0));
  RETAIN_RETURN_IF_ERROR(Reconcile(j, "vocab_size", vocab, path, "emb.weight", &c.vocab_size));
  RETAIN_RETURN_IF_ERROR(Reconcile(j, "n_embd", embd, path, "emb.weight", &c.n_embd));
  RETAIN_RETURN_IF_ERROR(Reconcile(j, "d_model", embd, path, "emb.weight", &c.n_embd));
  RETAIN_RETURN_IF_ERROR(Reconcile(j, "dim_ffn", ffn, path, "blocks.0.ffn.key.weight", &c.dim_ffn));
  RETAIN_RETURN_IF_ERROR(Reconcile(j, "n_layer", CountLayers(f), path, "the block tensors", &c.n_layer));
  if (c.n_layer == 0) return absl::InvalidArgumentError(absl::StrCat(f.path(), ": no 'blocks.N.' tensors"));

  if (c.arch == Architecture::kRwkv7) {
    RETAIN_ASSIGN_OR_RETURN(int heads, Dim(f, "blocks.0.att.r_k", 2, 0));
    RETAIN_ASSIGN_OR_RETURN(int hsize, Dim(f, "blocks.0.att.r_k", 2, 1));
    RETAIN_RETURN_IF_ERROR(Reconcile(j, "n_head", heads, path, "blocks.0.att.r_k", &c.n_head));
    RETAIN_RETURN_IF_ERROR(Reconcile(j, "head_size", hsize, path, "blocks.0.att.r_k", &c.head_size));
    if (c.n_head * c.head_size != c.n_embd) {
      return absl::InvalidArgumentError(absl::StrCat(f.path(), ": r_k is [", c.n_head, ", ", c.head_size,
                                                     "] but n_embd is ", c.n_embd));
    }
    RETAIN_ASSIGN_OR_RETURN(int dw, Dim(f, "blocks.0.att.w1", 2, 1));
    RETAIN_ASSIGN_OR_RETURN(int da, Dim(f, "blocks.0.att.a1", 2, 1));
    RETAIN_ASSIGN_OR_RETURN(int dg, Dim(f, "blocks.0.att.g1", 2, 1));
    // Block 0's v1 may be a dummy or absent (spec §8.2.11): read the rank from block 1.
    int dv = 0;
    if (c.n_layer > 1) {
      RETAIN_ASSIGN_OR_RETURN(dv, Dim(f, "blocks.1.att.v1", 2, 1));
    }
    RETAIN_RETURN_IF_ERROR(Reconcile(j, "d_decay_lora", dw, path, "blocks.0.att.w1", &c.d_decay_lora));
    RETAIN_RETURN_IF_ERROR(Reconcile(j, "d_aaa_lora", da, path, "blocks.0.att.a1", &c.d_aaa_lora));
    RETAIN_RETURN_IF_ERROR(Reconcile(j, "d_gate_lora", dg, path, "blocks.0.att.g1", &c.d_gate_lora));
    if (c.n_layer > 1) {
      RETAIN_RETURN_IF_ERROR(Reconcile(j, "d_mv_lora", dv, path, "blocks.1.att.v1", &c.d_mv_lora));
    }
  }
  for (const char* key : {"layer_norm_eps", "ln_x_eps"}) {
    auto it = j.find(key);
    if (it == j.end()) continue;
    if (!it->is_number() || it->get<double>() <= 0 || it->get<double>() > 1) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": '", key, "' must be a number in (0, 1]"));
    }
    (std::string_view(key) == "ln_x_eps" ? c.ln_x_eps : c.layer_norm_eps) = it->get<float>();
  }
  // Bounds that keep every buffer size and kernel loop within int and the CPU kernels' limits.
  if (c.n_embd > 32768 || c.dim_ffn > 65536 || c.vocab_size > (1 << 22) || c.n_layer > 1024) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": dimensions beyond this engine's limits"));
  }
  c.weight_dtype = f.Find("emb.weight")->dtype;
  RETAIN_RETURN_IF_ERROR(ReadTokenizer(j, dir, path, &c));
  return c;
}

}  // namespace retain::engine
