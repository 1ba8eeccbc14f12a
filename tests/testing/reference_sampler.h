// The sampler's algorithm written the plain way (a full stable sort of the vocabulary each step,
// std::max_element for greedy), as retain's Sampler was before its fast paths: the truth its
// tests hold the fast paths to, token for token under the same seed.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "absl/types/span.h"
#include "retain/engine/sampler.h"

namespace retain::testing {

class ReferenceSampler {
 public:
  ReferenceSampler(const engine::SamplingParams& params, int vocab);
  void ObservePrompt(absl::Span<const engine::TokenId> prompt);
  engine::TokenId Sample(absl::Span<const float> logits);

 private:
  engine::SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> occurrence_;
  std::vector<uint8_t> seen_;
  std::vector<float> work_;
  std::vector<int> order_;
};

}  // namespace retain::testing
