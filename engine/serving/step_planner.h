// Step composition for continuous batching: which running requests feed how many tokens in the
// next engine step. Pure logic over token counts, so it is tested without a model.
//
// Rule: every request with exactly one token to feed (a decode) is in every step, so a long
// prompt never stalls anyone's stream; the rest of the step's token budget goes to prompt chunks
// in arrival order.
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
// number of decodes (the engine keeps max_step_tokens >= max_batch). `out` is cleared and filled
// with decodes first, then prefill chunks; its capacity is reused.
void PlanStep(absl::Span<const int64_t> remaining, int64_t budget, std::vector<PlanItem>* out);

}  // namespace retain::engine
