// Token sampling from logits, ChatRWKV-compatible (spec §7.1): top-p and top-k truncate the
// untempered distribution, temperature is applied to the survivors, presence/frequency penalties
// are subtracted from the logits. temperature 0 means greedy (first maximum on ties).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "retain/engine/tokenizer.h"

namespace retain::engine {

struct SamplingParams {
  float temperature = 1.0f;  // >= 0
  float top_p = 1.0f;        // (0, 1]
  int top_k = 0;             // 0 = off
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  float penalty_decay = 1.0f;  // (0, 1]: occurrence counts decay by this each step
  uint64_t seed = 0;
};

// InvalidArgument naming the field when a parameter is out of range or not finite.
absl::Status ValidateSamplingParams(const SamplingParams& p);

class Sampler {
 public:
  // `vocab` = number of logits per call. params must have passed ValidateSamplingParams.
  Sampler(const SamplingParams& params, int vocab);
  // Picks the next token from `logits` (copied, not modified) and records it for the penalties.
  TokenId Sample(absl::Span<const float> logits);

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<float> occurrence_;
  std::vector<float> work_;
  std::vector<int> order_;
};

}  // namespace retain::engine
