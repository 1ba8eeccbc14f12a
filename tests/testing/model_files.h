// Builds model directories for tests: copies of a kit with tensors changed, and RWKV-7 models with
// random weights at shapes no kit has.
#pragma once

#include <map>
#include <random>
#include <string>
#include <vector>

#include "retain/engine/safetensors.h"

namespace retain::testing {

using TensorMap = std::map<std::string, engine::TensorToWrite>;

// Every tensor of `path`, widened to f32 values (dtype kept).
TensorMap ReadTensors(const std::string& path);

// A fresh directory under the test temp dir holding model.safetensors (+ config.json if given).
std::string WriteModelDir(const std::string& name, const TensorMap& tensors,
                          const std::string& config_json = "");

// RWKV-7 with random weights (official names and layout), scaled so activations stay O(1).
TensorMap RandomRwkv7(int n_layer, int n_embd, int head_size, int vocab, int ffn, uint32_t seed);

}  // namespace retain::testing
