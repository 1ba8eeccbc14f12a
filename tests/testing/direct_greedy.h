// The independent truth the serving tests compare with: a model driven directly through
// Model::Forward, one token at a time, taking the argmax (the first maximum) at each step.
#pragma once

#include <string>
#include <vector>

#include "retain/engine/tokenizer.h"

namespace retain::testing {

// The byte-level token ids of `text` (each byte as 0..255).
std::vector<engine::TokenId> ByteTokens(const std::string& text);

// The greedy continuation of `prompt` by the model in `model_dir`, `n` tokens long, on one thread.
std::vector<engine::TokenId> DirectGreedy(const std::string& model_dir, const std::vector<engine::TokenId>& prompt,
                                          int n);

}  // namespace retain::testing
