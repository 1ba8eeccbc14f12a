// Step composition for continuous batching: which running requests feed how many tokens in the
// next engine step. Pure logic over token counts and measured step times, so it is tested
// without a model.
//
// Rule: every request with exactly one token to feed (a decode) is in every step, so a long
// prompt never stalls anyone's stream; prompt chunks get what is left of the step's token budget
// in arrival order, capped while decodes run so that the step stays short (PrefillBudget).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace retain::engine {

struct PlanItem {
  int index = 0;   // into the `remaining` array
  int tokens = 0;  // >= 1
};

// remaining[i]: tokens request i (in arrival order) still has to feed, >= 0. budget >= the
// number of decodes (the engine keeps max_step_tokens >= max_batch); prefill_budget caps the
// prompt tokens of the step. `out` is cleared and filled with decodes first, then prefill chunks;
// its capacity is reused.
void PlanStep(absl::Span<const int64_t> remaining, int64_t budget, int64_t prefill_budget, std::vector<PlanItem>* out);

// Requests in `remaining` with exactly one token to feed.
int CountDecodes(absl::Span<const int64_t> remaining);

// How many prompt tokens a step may carry beside its decodes. Every prompt token makes the
// step, and so every running stream's next token, later: a 512-token chunk beside 32 decodes
// made their inter-token latency 5-13x longer. So while decodes run, the chunk is sized from
// measured costs to keep the step within max_slowdown x a decode-only step:
//   tokens = (max_slowdown - 1) x decode_step_seconds / seconds_per_prompt_token,
// at least kMinPrefillTokens so a prompt always advances. Both costs are moving averages of
// measured steps; a prompt token's cost is what a step with prompt tokens took beyond the
// decode-only step, per token. When no decode-only step has been measured lately (every step
// carried a prompt) the next step is decode-only, to measure one. Without decodes, the
// whole budget goes to prompts.
class PrefillBudget {
 public:
  static constexpr int64_t kMinPrefillTokens = 16;
  static constexpr int kRemeasureSteps = 64;  // decode-only measurement older than this: remeasure

  // max_slowdown >= 1; 0 = no cap (every step may fill its token budget with prompts).
  explicit PrefillBudget(double max_slowdown) : max_slowdown_(max_slowdown) {}

  // Prompt tokens allowed in the next step, which has `decodes` decodes and `budget` tokens.
  int64_t Next(int decodes, int64_t budget);
  // After the step: what it carried and how long Model::Forward took.
  void Observe(int decodes, int64_t prefill_tokens, double seconds);

  double decode_step_seconds() const { return decode_s_; }
  double seconds_per_prompt_token() const { return token_s_; }

 private:
  double max_slowdown_;
  double decode_s_ = 0, token_s_ = 0;  // 0 = not measured yet
  int steps_since_decode_only_ = 0;
};

}  // namespace retain::engine
