#include "engine/serving/step_planner.h"

#include <algorithm>
#include <cmath>

namespace retain::engine {

int CountDecodes(absl::Span<const int64_t> remaining) {
  return static_cast<int>(std::count(remaining.begin(), remaining.end(), int64_t{1}));
}

void PlanStep(absl::Span<const int64_t> remaining, int64_t budget, int64_t prefill_budget, std::vector<PlanItem>* out) {
  out->clear();
  for (size_t i = 0; i < remaining.size(); ++i) {
    if (remaining[i] == 1 && budget > 0) {
      out->push_back({static_cast<int>(i), 1});
      --budget;
    }
  }
  budget = std::min(budget, prefill_budget);
  for (size_t i = 0; i < remaining.size() && budget > 0; ++i) {
    if (remaining[i] <= 1) continue;
    const int64_t n = std::min(remaining[i], budget);
    out->push_back({static_cast<int>(i), static_cast<int>(n)});
    budget -= n;
  }
}

namespace {
// Moving averages over about the last 8 samples: the batch changes slowly next to the step rate.
constexpr double kAlpha = 0.125;
double Average(double old, double sample) { return old == 0 ? sample : old + kAlpha * (sample - old); }
}  // namespace

int64_t PrefillBudget::Next(int decodes, int64_t budget) {
  const int64_t left = std::max<int64_t>(0, budget - decodes);
  if (decodes == 0 || max_slowdown_ == 0) return left;
  if (decode_s_ == 0 || steps_since_decode_only_ >= kRemeasureSteps) return 0;
  if (token_s_ == 0) return std::min(left, kMinPrefillTokens);
  const double allowed = (max_slowdown_ - 1) * decode_s_ / token_s_;
  return std::min(left, std::max(kMinPrefillTokens, static_cast<int64_t>(std::floor(allowed))));
}

void PrefillBudget::Observe(int decodes, int64_t prefill_tokens, double seconds) {
  if (prefill_tokens == 0) {
    if (decodes == 0) return;
    decode_s_ = Average(decode_s_, seconds);
    steps_since_decode_only_ = 0;
    return;
  }
  ++steps_since_decode_only_;
  // Beside decodes, a prompt token costs what the step took beyond a decode-only one (at least a
  // twentieth of the step, so that noise cannot make it free); alone, its share of the step.
  double extra = seconds;
  if (decodes > 0 && decode_s_ > 0) extra = std::max(seconds - decode_s_, seconds / 20);
  token_s_ = Average(token_s_, extra / static_cast<double>(prefill_tokens));
}

}  // namespace retain::engine
