// config.json + tensor-shape reading for RetNet and TransNormerLLM (spec retnet-transnormer.md
// A.0-A.1, B.1-B.2). Kept apart from the RWKV logic in model_config.cc: these families always
// ship a config.json (the embedding scale and, for RetNet, the variant's activation cannot be
// read from shapes), and the RetNet variant is decided here from the tensors present, never
// guessed: a combination matching no known implementation is an error naming what was found.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "retain/engine/model_config.h"
#include "retain/engine/safetensors.h"

namespace retain::engine {

// "retnet" or "transnormer" when config.json's model_type or the tensor names say so, else "".
std::string SniffRetentionArchitecture(const nlohmann::json& config, const SafetensorsFile& weights);

// Fills every field of `c` but the tokenizer, for c->arch kRetNet or kTransNormer. `present`:
// whether config.json exists; `path` names it in messages.
absl::Status ReadRetentionConfig(const nlohmann::json& config, bool present, const std::string& path,
                                 const SafetensorsFile& weights, ModelConfig* c);

}  // namespace retain::engine
