// Hyper-parameters of a loaded model: read from config.json beside the weights, inferred from
// tensor shapes where it is absent (official RWKV checkpoints carry none), and always checked
// against the shapes.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "retain/engine/dtype.h"

namespace retain::engine {

class SafetensorsFile;

enum class Architecture { kRwkv4, kRwkv7 };

std::string_view ArchitectureName(Architecture a);

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
};

// Reads `dir`/config.json when present, fills the rest from `weights`, and cross-checks.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir, const SafetensorsFile& weights);

}  // namespace retain::engine
