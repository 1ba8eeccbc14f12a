// Builds model directories for tests: copies of a kit with tensors changed, and RWKV-7, RetNet and
// TransNormerLLM models with random weights at shapes and layouts no kit has.
#pragma once

#include <map>
#include <random>
#include <string>
#include <vector>

#include "retain/engine/safetensors.h"
#include "retain/engine/tokenizer.h"

namespace retain::testing {

// n token ids uniform in [0, vocab), reproducible from seed.
std::vector<engine::TokenId> RandomTokens(int n, int vocab, uint32_t seed);

using TensorMap = std::map<std::string, engine::TensorToWrite>;

// Every tensor of `path`, widened to f32 values (dtype kept).
TensorMap ReadTensors(const std::string& path);

// A fresh directory under the test temp dir holding model.safetensors (+ config.json if given).
std::string WriteModelDir(const std::string& name, const TensorMap& tensors,
                          const std::string& config_json = "");

// RWKV-7 with random weights (official names and layout), scaled so activations stay O(1).
TensorMap RandomRwkv7(int n_layer, int n_embd, int head_size, int vocab, int ffn, uint32_t seed);

}  // namespace retain::testing

namespace retain::testing {

// A model directory's contents: weights and config.json text.
struct ModelFiles {
  TensorMap tensors;
  std::string config_json;
};

// The RetNet checkpoint layouts the engine loads (spec retnet-transnormer.md A.0-A.1).
enum class RetNetLayout {
  kTorchscale,        // torchscale RetNetDecoder since Sep 2023: RMSNorm, GLU FFN, no biases
  kTorchscaleLegacy,  // torchscale Jul 2023: LayerNorm, biases, gelu(fc1)→fc2
  kFlaFusedMlp,       // fla-hub 2024 uploads: mlp.gate_proj [2F, d]
  kFlaSplitMlp,       // fla since Feb 2025: mlp.gate_proj + mlp.up_proj, each [F, d]
};

struct RetNetShape {
  int n_layer = 2;
  int d = 64;
  int n_head = 2;
  int value_width = 128;  // H·dv; fla layouts need 2·d (expand_v 2) or another integer multiple
  int ffn = 128;
  int vocab = 256;
};

// RetNet with random weights under the layout's own names plus its config.json, scaled so
// activations stay O(1) and the per-head norms are well away from their eps. Stored as `dtype`.
ModelFiles RandomRetNet(RetNetLayout layout, const RetNetShape& shape, uint32_t seed,
                        engine::DType dtype = engine::DType::kF32);

struct TransNormerShape {
  int n_layer = 2;
  int d = 64;
  int n_head = 2;
  int glu = 176;
  int vocab = 256;
  std::vector<int> lrpe = {1, 0};  // per layer
};

// TransNormerLLM with random weights, OpenNLPLab HF names (lm_head tied, not stored), config.json.
ModelFiles RandomTransNormer(const TransNormerShape& shape, uint32_t seed,
                             engine::DType dtype = engine::DType::kF32);

}  // namespace retain::testing
