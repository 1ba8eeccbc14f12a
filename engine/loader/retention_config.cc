// RetNet / TransNormerLLM config reading. Field names are each implementation's own: torchscale's
// RetNetConfig (decoder_embed_dim, decoder_retention_heads, ...), fla's HF RetNetConfig
// (hidden_size, num_heads, expand_k, ...), OpenNLPLab's TransnormerConfig (decoder_embed_dim,
// decoder_attention_heads, linear_use_lrpe_list, ...). Every size the shapes give is taken from the
// shapes and checked against config.json; what shapes cannot give (head count, embedding scale,
// activation, eps) is read from config.json, with the reference code's defaults only where that
// code itself falls back to a default.
#include "engine/loader/retention_config.h"

#include <cmath>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "retain/engine/status_macros.h"

namespace retain::engine {
namespace {

using nlohmann::json;

// Largest N + 1 over tensors named `prefix`N.*.
int CountLayers(const SafetensorsFile& f, const std::string& prefix) {
  int layers = 0;
  for (const auto& [name, info] : f.tensors()) {
    if (name.rfind(prefix, 0) != 0) continue;
    size_t i = prefix.size();
    int idx = 0;
    bool digits = false;
    for (; i < name.size() && name[i] >= '0' && name[i] <= '9' && idx < 100000; ++i) {
      idx = idx * 10 + (name[i] - '0');
      digits = true;
    }
    if (digits && i < name.size() && name[i] == '.') layers = std::max(layers, idx + 1);
  }
  return layers;
}

// Shape of tensor `name`, which must have `rank` dimensions; errors name the tensor.
absl::StatusOr<std::vector<int64_t>> ShapeOf(const SafetensorsFile& f, const std::string& name, size_t rank) {
  const TensorInfo* t = f.Find(name);
  if (t == nullptr) return absl::InvalidArgumentError(absl::StrCat(f.path(), ": missing tensor '", name, "'"));
  if (t->shape.size() != rank) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": tensor '", name, "' has shape [",
                                                   absl::StrJoin(t->shape, ", "), "], expected rank ", rank));
  }
  for (int64_t d : t->shape) {
    if (d <= 0 || d > (int64_t{1} << 30)) {
      return absl::InvalidArgumentError(absl::StrCat(f.path(), ": tensor '", name, "' has an empty or huge dimension"));
    }
  }
  return t->shape;
}

// Typed access to config.json; every error names the file and the field. Absent and null both
// read as nullopt.
class Fields {
 public:
  Fields(const json& j, const std::string& path) : j_(j), path_(path) {}

  absl::StatusOr<std::optional<int64_t>> Int(const char* key) const {
    const json* v = Get(key);
    if (v == nullptr) return std::optional<int64_t>();
    if (!v->is_number_integer()) return Bad(key, "an integer");
    return std::optional<int64_t>(v->get<int64_t>());
  }
  absl::StatusOr<std::optional<double>> Number(const char* key) const {
    const json* v = Get(key);
    if (v == nullptr) return std::optional<double>();
    if (!v->is_number()) return Bad(key, "a number");
    return std::optional<double>(v->get<double>());
  }
  // Booleans; 0/1 integers are accepted (TransnormerConfig writes some flags that way).
  absl::StatusOr<std::optional<bool>> Bool(const char* key) const {
    const json* v = Get(key);
    if (v == nullptr) return std::optional<bool>();
    if (v->is_boolean()) return std::optional<bool>(v->get<bool>());
    if (v->is_number_integer() && (v->get<int64_t>() == 0 || v->get<int64_t>() == 1)) {
      return std::optional<bool>(v->get<int64_t>() == 1);
    }
    return Bad(key, "true or false");
  }
  absl::StatusOr<std::optional<std::string>> String(const char* key) const {
    const json* v = Get(key);
    if (v == nullptr) return std::optional<std::string>();
    if (!v->is_string()) return Bad(key, "a string");
    return std::optional<std::string>(v->get<std::string>());
  }
  const json* Get(const char* key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  absl::Status Missing(const char* key, const std::string& why) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": field '", key, "' is required (", why, ")"));
  }
  absl::Status Unsupported(const char* key, const std::string& value, const std::string& why) const {
    return absl::UnimplementedError(absl::StrCat(path_, ": '", key, "' = ", value, " is not supported (", why, ")"));
  }
  // When config.json has `key`, it must equal what `source` (a tensor shape) gives.
  absl::Status Agree(const char* key, int64_t inferred, const std::string& source) const {
    RETAIN_ASSIGN_OR_RETURN(std::optional<int64_t> given, Int(key));
    if (given.has_value() && *given != inferred) {
      return absl::InvalidArgumentError(absl::StrCat(path_, ": '", key, "' is ", *given, " but ", source,
                                                     " gives ", inferred));
    }
    return absl::OkStatus();
  }
  // A flag that selects an architecture option this engine does not implement must be off.
  absl::Status MustBe(const char* key, bool expected, const std::string& why) const {
    RETAIN_ASSIGN_OR_RETURN(std::optional<bool> v, Bool(key));
    if (v.has_value() && *v != expected) return Unsupported(key, *v ? "true" : "false", why);
    return absl::OkStatus();
  }
  const std::string& path() const { return path_; }

 private:
  absl::Status Bad(const char* key, const char* what) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": field '", key, "' must be ", what));
  }
  const json& j_;
  const std::string& path_;
};

absl::Status Divides(const SafetensorsFile& f, const char* what, int64_t total, int64_t heads) {
  if (heads <= 0 || total % heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": ", what, " ", total,
                                                   " is not a multiple of the head count ", heads));
  }
  return absl::OkStatus();
}

absl::StatusOr<float> Eps(const Fields& cfg, const char* key, std::optional<double> fallback) {
  RETAIN_ASSIGN_OR_RETURN(std::optional<double> eps, cfg.Number(key));
  if (!eps.has_value()) eps = fallback;
  if (!eps.has_value()) return cfg.Missing(key, "the eps of every norm");
  if (!(*eps > 0 && *eps <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(cfg.path(), ": '", key, "' must be a number in (0, 1]"));
  }
  return static_cast<float>(*eps);
}

absl::StatusOr<float> EmbedScale(const Fields& cfg, int d) {
  RETAIN_ASSIGN_OR_RETURN(std::optional<bool> no_scale, cfg.Bool("no_scale_embedding"));
  if (!no_scale.has_value()) {
    // The reference configs disagree on the default (torchscale RetNetConfig: true, its fairseq
    // wrapper: false), so the checkpoint must say.
    return cfg.Missing("no_scale_embedding", "embeddings are multiplied by sqrt(d) unless it is true");
  }
  return *no_scale ? 1.0f : static_cast<float>(std::sqrt(static_cast<double>(d)));
}

// torchscale RetNetDecoder state dict (spec A.1.1); names optionally under "decoder.".
absl::Status ReadTorchscale(const Fields& cfg, const SafetensorsFile& f, ModelConfig* c) {
  const bool bare = f.Find("embed_tokens.weight") != nullptr;
  const bool prefixed = f.Find("decoder.embed_tokens.weight") != nullptr;
  if (bare && prefixed) {
    return absl::InvalidArgumentError(absl::StrCat(
        f.path(), ": holds both 'embed_tokens.weight' and 'decoder.embed_tokens.weight'"));
  }
  c->tensor_prefix = prefixed ? "decoder." : "";
  const std::string p = c->tensor_prefix;
  RETAIN_ASSIGN_OR_RETURN(auto emb, ShapeOf(f, p + "embed_tokens.weight", 2));
  RETAIN_ASSIGN_OR_RETURN(auto v_proj, ShapeOf(f, p + "layers.0.retention.v_proj.weight", 2));
  RETAIN_ASSIGN_OR_RETURN(auto fc1, ShapeOf(f, p + "layers.0.ffn.fc1.weight", 2));
  c->vocab_size = static_cast<int>(emb[0]);
  c->n_embd = static_cast<int>(emb[1]);
  c->n_layer = CountLayers(f, p + "layers.");
  c->dim_ffn = static_cast<int>(fc1[0]);
  const int64_t value_width = v_proj[0];

  // The variant, from what the first layer carries (spec A.0).
  const std::string l0 = p + "layers.0.";
  const bool gate = f.Find(l0 + "ffn.gate.weight") != nullptr;
  const bool proj_bias = f.Find(l0 + "retention.q_proj.bias") != nullptr;
  const bool norm_bias = f.Find(l0 + "retention_layer_norm.bias") != nullptr;
  if (gate && !proj_bias && !norm_bias) {
    c->retnet_variant = RetNetVariant::kTorchscale;
  } else if (!gate && proj_bias && norm_bias) {
    c->retnet_variant = RetNetVariant::kTorchscaleLegacy;
  } else {
    auto yn = [](bool b) { return b ? "present" : "absent"; };
    return absl::InvalidArgumentError(absl::StrCat(
        f.path(), ": unknown RetNet variant (torchscale names): found ffn.gate.weight ", yn(gate),
        ", retention.q_proj.bias ", yn(proj_bias), ", retention_layer_norm.bias ", yn(norm_bias),
        "; known are torchscale since Sep 2023 (gate, no biases) and torchscale Jul 2023 (biases, no gate)"));
  }
  if (f.Find(l0 + "ffn.ffn_layernorm.weight") != nullptr) {
    return cfg.Unsupported("subln", "true (ffn.ffn_layernorm tensors present)", "no RetNet preset uses it");
  }
  if (f.Find(p + "layernorm_embedding.weight") != nullptr) {
    return cfg.Unsupported("layernorm_embedding", "true (tensor present)", "no RetNet preset uses it");
  }

  // Head count: config.json, else the saved decay buffer [H]; both when both exist.
  RETAIN_ASSIGN_OR_RETURN(std::optional<int64_t> heads, cfg.Int("decoder_retention_heads"));
  if (const TensorInfo* decay = f.Find(p + "retnet_rel_pos.decay"); decay != nullptr) {
    RETAIN_ASSIGN_OR_RETURN(auto shape, ShapeOf(f, p + "retnet_rel_pos.decay", 1));
    if (!heads.has_value()) heads = shape[0];
    RETAIN_RETURN_IF_ERROR(cfg.Agree("decoder_retention_heads", shape[0], "retnet_rel_pos.decay"));
  }
  if (!heads.has_value()) return cfg.Missing("decoder_retention_heads", "the head count");
  if (*heads <= 0 || *heads > 1024) {
    return absl::InvalidArgumentError(absl::StrCat(cfg.path(), ": 'decoder_retention_heads' is out of range"));
  }
  c->n_head = static_cast<int>(*heads);
  RETAIN_RETURN_IF_ERROR(Divides(f, "d", c->n_embd, c->n_head));
  RETAIN_RETURN_IF_ERROR(Divides(f, "value width", value_width, c->n_head));
  c->head_size = c->n_embd / c->n_head;
  c->value_head_size = static_cast<int>(value_width / c->n_head);

  RETAIN_RETURN_IF_ERROR(cfg.Agree("decoder_embed_dim", c->n_embd, "embed_tokens.weight"));
  RETAIN_RETURN_IF_ERROR(cfg.Agree("vocab_size", c->vocab_size, "embed_tokens.weight"));
  RETAIN_RETURN_IF_ERROR(cfg.Agree("decoder_value_embed_dim", value_width, "layers.0.retention.v_proj.weight"));
  RETAIN_RETURN_IF_ERROR(cfg.Agree("decoder_ffn_embed_dim", c->dim_ffn, "layers.0.ffn.fc1.weight"));
  RETAIN_RETURN_IF_ERROR(cfg.Agree("decoder_layers", c->n_layer, "the layers.N tensors"));
  RETAIN_RETURN_IF_ERROR(cfg.Agree("retention_key_dim_per_head", c->head_size, "d / heads"));
  RETAIN_RETURN_IF_ERROR(cfg.Agree("retention_value_dim_per_head", c->value_head_size, "value width / heads"));

  RETAIN_ASSIGN_OR_RETURN(std::optional<std::string> act, cfg.String("activation_fn"));
  if (!act.has_value()) return cfg.Missing("activation_fn", "the FFN activation: swish or gelu");
  if (*act != "swish" && *act != "gelu") return cfg.Unsupported("activation_fn", *act, "known: swish, gelu");
  c->ffn_activation = *act;
  RETAIN_ASSIGN_OR_RETURN(c->embed_scale, EmbedScale(cfg, c->n_embd));
  RETAIN_ASSIGN_OR_RETURN(c->layer_norm_eps, Eps(cfg, "layernorm_eps", std::nullopt));
  RETAIN_RETURN_IF_ERROR(cfg.MustBe("decoder_normalize_before", true, "RetNet is pre-norm"));
  RETAIN_RETURN_IF_ERROR(cfg.MustBe("deepnorm", false, "off for RetNet language models"));
  RETAIN_RETURN_IF_ERROR(cfg.MustBe("multiway", false, "vision-language option"));
  RETAIN_RETURN_IF_ERROR(cfg.MustBe("layernorm_embedding", false, "no RetNet preset uses it"));
  RETAIN_RETURN_IF_ERROR(cfg.MustBe("subln", false, "no RetNet preset uses it"));
  RETAIN_RETURN_IF_ERROR(cfg.MustBe("no_output_layer", false, "a language model needs its head"));
  RETAIN_ASSIGN_OR_RETURN(std::optional<int64_t> moe, cfg.Int("moe_freq"));
  if (moe.has_value() && *moe != 0) return cfg.Unsupported("moe_freq", absl::StrCat(*moe), "mixture of experts");
  RETAIN_ASSIGN_OR_RETURN(std::optional<bool> share, cfg.Bool("share_decoder_input_output_embed"));
  c->tie_embeddings = share.value_or(false);
  // chunkwise_recurrent / recurrent_chunk_size only pick the reference's compute form.
  return absl::OkStatus();
}

// fla / fla-hub Hugging Face RetNet (spec A.1.2).
absl::Status ReadFla(const Fields& cfg, const SafetensorsFile& f, ModelConfig* c) {
  RETAIN_ASSIGN_OR_RETURN(auto emb, ShapeOf(f, "model.embeddings.weight", 2));
  RETAIN_ASSIGN_OR_RETURN(auto q_proj, ShapeOf(f, "model.layers.0.attn.q_proj.weight", 2));
  RETAIN_ASSIGN_OR_RETURN(auto v_proj, ShapeOf(f, "model.layers.0.attn.v_proj.weight", 2));
  RETAIN_ASSIGN_OR_RETURN(auto down, ShapeOf(f, "model.layers.0.mlp.down_proj.weight", 2));
  c->retnet_variant = RetNetVariant::kFla;
  c->vocab_size = static_cast<int>(emb[0]);
  c->n_embd = static_cast<int>(emb[1]);
  c->n_layer = CountLayers(f, "model.layers.");
  c->dim_ffn = static_cast<int>(down[1]);
  const int64_t key_width = q_proj[0], value_width = v_proj[0];
  RETAIN_ASSIGN_OR_RETURN(std::optional<int64_t> heads, cfg.Int("num_heads"));
  if (!heads.has_value()) return cfg.Missing("num_heads", "the head count");
  if (*heads <= 0 || *heads > 1024) return absl::InvalidArgumentError(absl::StrCat(cfg.path(), ": 'num_heads' is out of range"));
  c->n_head = static_cast<int>(*heads);
  RETAIN_RETURN_IF_ERROR(Divides(f, "key width", key_width, c->n_head));
  RETAIN_RETURN_IF_ERROR(Divides(f, "value width", value_width, c->n_head));
  c->head_size = static_cast<int>(key_width / c->n_head);
  c->value_head_size = static_cast<int>(value_width / c->n_head);

  RETAIN_RETURN_IF_ERROR(cfg.Agree("hidden_size", c->n_embd, "model.embeddings.weight"));
  RETAIN_RETURN_IF_ERROR(cfg.Agree("vocab_size", c->vocab_size, "model.embeddings.weight"));
  RETAIN_RETURN_IF_ERROR(cfg.Agree("num_hidden_layers", c->n_layer, "the model.layers.N tensors"));
  // key_dim = int(d·expand_k), value_dim = int(d·expand_v), defaults 1 and 2 (fla RetNetConfig).
  RETAIN_ASSIGN_OR_RETURN(std::optional<double> expand_k, cfg.Number("expand_k"));
  RETAIN_ASSIGN_OR_RETURN(std::optional<double> expand_v, cfg.Number("expand_v"));
  if (key_width != static_cast<int64_t>(c->n_embd * expand_k.value_or(1.0)) ||
      value_width != static_cast<int64_t>(c->n_embd * expand_v.value_or(2.0))) {
    return absl::InvalidArgumentError(absl::StrCat(
        cfg.path(), ": expand_k ", expand_k.value_or(1.0), " / expand_v ", expand_v.value_or(2.0),
        " disagree with q_proj [", key_width, ", ", c->n_embd, "] / v_proj [", value_width, ", ", c->n_embd, "]"));
  }
  // FFN width: intermediate_size, else 256·ceil(int(d·hidden_ratio·2/3) / 256) (fla RetNetMLP).
  RETAIN_ASSIGN_OR_RETURN(std::optional<int64_t> inter, cfg.Int("intermediate_size"));
  if (!inter.has_value()) {
    RETAIN_ASSIGN_OR_RETURN(std::optional<double> ratio, cfg.Number("hidden_ratio"));
    const int64_t raw = static_cast<int64_t>(c->n_embd * ratio.value_or(2.0) * 2 / 3);
    inter = 256 * ((raw + 255) / 256);
  }
  if (*inter != c->dim_ffn) {
    return absl::InvalidArgumentError(absl::StrCat(cfg.path(), ": intermediate_size / hidden_ratio give an FFN of ",
                                                   *inter, " but model.layers.0.mlp.down_proj.weight has ", c->dim_ffn));
  }
  RETAIN_ASSIGN_OR_RETURN(std::optional<int64_t> kv_heads, cfg.Int("num_kv_heads"));
  if (kv_heads.has_value() && *kv_heads != c->n_head) {
    return cfg.Unsupported("num_kv_heads", absl::StrCat(*kv_heads), "grouped keys/values; released RetNets have none");
  }
  RETAIN_RETURN_IF_ERROR(cfg.MustBe("use_short_conv", false, "released RetNets have no short convolution"));
  for (const char* key : {"feature_map", "attn"}) {
    if (cfg.Get(key) != nullptr) return cfg.Unsupported(key, cfg.Get(key)->dump(), "released RetNets have none");
  }
  RETAIN_ASSIGN_OR_RETURN(std::optional<std::string> act, cfg.String("hidden_act"));
  if (act.has_value() && *act != "swish" && *act != "silu") return cfg.Unsupported("hidden_act", *act, "known: swish");
  RETAIN_ASSIGN_OR_RETURN(std::optional<bool> gate, cfg.Bool("use_output_gate"));
  RETAIN_ASSIGN_OR_RETURN(std::optional<bool> affine, cfg.Bool("elementwise_affine"));
  RETAIN_ASSIGN_OR_RETURN(std::optional<bool> tie, cfg.Bool("tie_word_embeddings"));
  c->output_gate = gate.value_or(true);
  c->head_norm_affine = affine.value_or(true);
  c->tie_embeddings = tie.value_or(false);
  c->ffn_activation = "swish";  // SwiGLU; the output gate is swish too (gate_fn = hidden_act)
  c->embed_scale = 1.0f;
  RETAIN_ASSIGN_OR_RETURN(c->layer_norm_eps, Eps(cfg, "norm_eps", 1e-6));
  return absl::OkStatus();
}

// OpenNLPLab TransNormerLLM Hugging Face checkpoints (spec B.1-B.2).
absl::Status ReadTransNormer(const Fields& cfg, const SafetensorsFile& f, ModelConfig* c) {
  RETAIN_ASSIGN_OR_RETURN(auto emb, ShapeOf(f, "model.embed_tokens.weight", 2));
  RETAIN_ASSIGN_OR_RETURN(auto qkvu, ShapeOf(f, "model.layers.0.token_mixer.qkvu_proj.weight", 2));
  RETAIN_ASSIGN_OR_RETURN(auto l1, ShapeOf(f, "model.layers.0.channel_mixer.l1.weight", 2));
  c->vocab_size = static_cast<int>(emb[0]);
  c->n_embd = static_cast<int>(emb[1]);
  c->n_layer = CountLayers(f, "model.layers.");
  c->dim_ffn = static_cast<int>(l1[0]);
  RETAIN_RETURN_IF_ERROR(cfg.Agree("decoder_embed_dim", c->n_embd, "model.embed_tokens.weight"));
  RETAIN_RETURN_IF_ERROR(cfg.Agree("vocab_size", c->vocab_size, "model.embed_tokens.weight"));
  RETAIN_RETURN_IF_ERROR(cfg.Agree("decoder_layers", c->n_layer, "the model.layers.N tensors"));
  // The released code splits qkvu by hidden_dim but sizes LRPE and heads by decoder_embed_dim,
  // so only hidden_dim == decoder_embed_dim (every released model) is consistent.
  if (qkvu[0] != 4 * static_cast<int64_t>(c->n_embd)) {
    return absl::InvalidArgumentError(absl::StrCat(
        f.path(), ": tensor 'model.layers.0.token_mixer.qkvu_proj.weight' has ", qkvu[0],
        " rows, expected 4 × decoder_embed_dim = ", 4 * static_cast<int64_t>(c->n_embd)));
  }
  RETAIN_RETURN_IF_ERROR(cfg.Agree("hidden_dim", c->n_embd, "model.layers.0.token_mixer.qkvu_proj.weight / 4"));
  RETAIN_ASSIGN_OR_RETURN(std::optional<int64_t> glu, cfg.Int("glu_dim"));
  if (glu.has_value() && *glu != -1) {  // -1: the code's "same as d"
    RETAIN_RETURN_IF_ERROR(cfg.Agree("glu_dim", c->dim_ffn, "model.layers.0.channel_mixer.l1.weight"));
  }
  RETAIN_ASSIGN_OR_RETURN(std::optional<int64_t> heads, cfg.Int("decoder_attention_heads"));
  if (!heads.has_value()) return cfg.Missing("decoder_attention_heads", "the head count");
  if (*heads <= 0 || *heads > 1024) {
    return absl::InvalidArgumentError(absl::StrCat(cfg.path(), ": 'decoder_attention_heads' is out of range"));
  }
  c->n_head = static_cast<int>(*heads);
  RETAIN_RETURN_IF_ERROR(Divides(f, "d", c->n_embd, c->n_head));
  c->head_size = c->value_head_size = c->n_embd / c->n_head;
  if (c->n_layer < 2) {
    // The released decay factor (1 − l/(L−1) + 1e-5) divides by L − 1.
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": TransNormerLLM needs at least 2 layers, found ", c->n_layer));
  }

  RETAIN_ASSIGN_OR_RETURN(std::optional<std::string> norm, cfg.String("norm_type"));
  if (norm.has_value() && *norm != "simplermsnorm") return cfg.Unsupported("norm_type", *norm, "released models use simplermsnorm");
  RETAIN_ASSIGN_OR_RETURN(std::optional<std::string> act, cfg.String("linear_act_fun"));
  if (act.has_value() && *act != "silu" && *act != "swish") return cfg.Unsupported("linear_act_fun", *act, "known: silu, swish");
  RETAIN_RETURN_IF_ERROR(cfg.MustBe("bias", false, "released models have no biases"));
  RETAIN_ASSIGN_OR_RETURN(c->embed_scale, EmbedScale(cfg, c->n_embd));
  RETAIN_ASSIGN_OR_RETURN(std::optional<bool> tie, cfg.Bool("tie_word_embeddings"));
  c->tie_embeddings = tie.value_or(true);  // HF default; the released configs do not set it
  c->layer_norm_eps = 1e-6f;                // SimpleRMSNorm's eps, not configurable

  // LRPE per layer: linear_use_lrpe_list when non-empty, else the single linear_use_lrpe flag.
  c->lrpe_layers.assign(c->n_layer, 0);
  const json* list = cfg.Get("linear_use_lrpe_list");
  if (list != nullptr && !(list->is_array() && list->empty())) {
    if (!list->is_array() || list->size() != static_cast<size_t>(c->n_layer)) {
      return absl::InvalidArgumentError(absl::StrCat(cfg.path(), ": 'linear_use_lrpe_list' must list one 0/1 per layer (",
                                                     c->n_layer, " layers)"));
    }
    for (int l = 0; l < c->n_layer; ++l) {
      const json& e = (*list)[l];
      if (!((e.is_number_integer() && (e.get<int64_t>() == 0 || e.get<int64_t>() == 1)) || e.is_boolean())) {
        return absl::InvalidArgumentError(absl::StrCat(cfg.path(), ": 'linear_use_lrpe_list' entries must be 0 or 1"));
      }
      c->lrpe_layers[l] = e.is_boolean() ? e.get<bool>() : static_cast<int>(e.get<int64_t>());
    }
  } else {
    RETAIN_ASSIGN_OR_RETURN(std::optional<bool> all, cfg.Bool("linear_use_lrpe"));
    c->lrpe_layers.assign(c->n_layer, all.value_or(false) ? 1 : 0);
  }
  return absl::OkStatus();
}

}  // namespace

std::string SniffRetentionArchitecture(const json& config, const SafetensorsFile& f) {
  if (auto it = config.find("model_type"); it != config.end() && it->is_string()) {
    const std::string t = it->get<std::string>();
    if (t == "retnet" || t == "transnormer") return t;
  }
  if (f.Find("model.layers.0.token_mixer.qkvu_proj.weight") != nullptr) return "transnormer";
  if (f.Find("model.layers.0.attn.g_proj.weight") != nullptr && f.Find("model.embeddings.weight") != nullptr) {
    return "retnet";
  }
  for (const char* p : {"", "decoder."}) {
    if (f.Find(absl::StrCat(p, "layers.0.retention.q_proj.weight")) != nullptr) return "retnet";
  }
  return "";
}

absl::Status ReadRetentionConfig(const json& j, bool present, const std::string& path,
                                 const SafetensorsFile& f, ModelConfig* c) {
  const std::string arch(ArchitectureName(c->arch));
  if (!present) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": a ", arch, " checkpoint needs its config.json (head count and embedding scale are not in the shapes)"));
  }
  const Fields cfg(j, path);
  if (c->arch == Architecture::kTransNormer) {
    RETAIN_RETURN_IF_ERROR(ReadTransNormer(cfg, f, c));
  } else if (f.Find("model.embeddings.weight") != nullptr) {
    RETAIN_RETURN_IF_ERROR(ReadFla(cfg, f, c));
  } else if (f.Find("embed_tokens.weight") != nullptr || f.Find("decoder.embed_tokens.weight") != nullptr) {
    RETAIN_RETURN_IF_ERROR(ReadTorchscale(cfg, f, c));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        f.path(), ": unknown RetNet layout: neither 'model.embeddings.weight' (fla) nor "
                  "'embed_tokens.weight' / 'decoder.embed_tokens.weight' (torchscale)"));
  }
  if (c->n_layer == 0) return absl::InvalidArgumentError(absl::StrCat(f.path(), ": no layer tensors"));
  if (c->head_size % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": key head width ", c->head_size,
                                                   " is odd; rotations need pairs"));
  }
  // Bounds that keep buffers and kernel loops within int and the CPU kernels' limits.
  if (c->n_embd > 32768 || c->dim_ffn > 65536 || c->vocab_size > (1 << 22) || c->n_layer > 1024 ||
      c->head_size > 2048 || c->value_head_size > 4096 ||
      static_cast<int64_t>(c->n_head) * c->value_head_size > 65536) {
    return absl::InvalidArgumentError(absl::StrCat(f.path(), ": dimensions beyond this engine's limits"));
  }
  c->weight_dtype = f.Find(c->arch == Architecture::kTransNormer ? "model.embed_tokens.weight"
                           : c->retnet_variant == RetNetVariant::kFla ? "model.embeddings.weight"
                                                                       : c->tensor_prefix + "embed_tokens.weight")->dtype;
  return absl::OkStatus();
}

}  // namespace retain::engine
