// Hyper-parameters of a loaded model: read from config.json beside the weights, inferred from
// tensor shapes where it is absent (official RWKV checkpoints carry none), and always checked
// against the shapes.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "retain/engine/dtype.h"

namespace retain::engine {

class SafetensorsFile;

enum class Architecture { kRwkv4, kRwkv7, kRetNet, kTransNormer };

std::string_view ArchitectureName(Architecture a);

// Which RetNet implementation a checkpoint comes from (spec retnet-transnormer.md A.0). Each has
// its own tensor names, norms, FFN, rotation and embedding scale; the retention core is shared.
enum class RetNetVariant {
  kNone,              // not a RetNet
  kTorchscale,        // torchscale RetNetDecoder since Sep-Nov 2023: RMSNorm, no biases, GLU FFN
  kTorchscaleLegacy,  // torchscale Jul 2023 (the paper's code): LayerNorm, biases, act(fc1)→fc2
  kFla,               // fla / fla-hub HF checkpoints: RMSNorm, SwiGLU, NeoX rotation
};

std::string_view RetNetVariantName(RetNetVariant v);

struct ModelConfig {
  Architecture arch = Architecture::kRwkv7;
  int n_layer = 0;
  int n_embd = 0;
  int vocab_size = 0;
  int dim_ffn = 0;
  int head_size = 0;  // rwkv7
  int n_head = 0;     // rwkv7
  int d_decay_lora = 0, d_aaa_lora = 0, d_mv_lora = 0, d_gate_lora = 0;  // rwkv7
  float layer_norm_eps = 1e-5f;
  float ln_x_eps = 64e-5f;      // rwkv7 GroupNorm: 64e-5 whatever the head size (spec §8.2.6)
  DType weight_dtype = DType::kF32;  // dtype of the largest tensors, for reporting
  // Tokenizer named by config.json: "" (none: token ids only), "byte" or "rwkv_world".
  std::string tokenizer_type;
  std::string tokenizer_vocab;  // absolute path for rwkv_world

  // RetNet and TransNormerLLM. n_head and head_size above are the head count and the key width
  // per head (before LRPE doubling); layer_norm_eps is the eps of every norm.
  int value_head_size = 0;
  RetNetVariant retnet_variant = RetNetVariant::kNone;
  std::string ffn_activation;     // torchscale RetNet FFN activation: "swish" or "gelu"
  float embed_scale = 1.0f;       // √d unless no_scale_embedding
  bool tie_embeddings = false;    // the output head is the embedding matrix
  bool output_gate = true;        // fla use_output_gate: swish(g_proj x) gates the retention output
  bool head_norm_affine = false;  // fla elementwise_affine: the per-head norm has a weight [dv]
  std::string tensor_prefix;      // torchscale: "" or "decoder." (fairseq state-dict names)
  std::vector<int> lrpe_layers;   // transnormer: per layer, 1 where LRPE applies
};

// Reads `dir`/config.json when present (dir "": shapes only), fills the rest from `weights`, and cross-checks.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir, const SafetensorsFile& weights);

}  // namespace retain::engine
