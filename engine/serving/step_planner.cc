#include "engine/serving/step_planner.h"

#include <algorithm>

namespace retain::engine {

void PlanStep(absl::Span<const int64_t> remaining, int64_t budget, std::vector<PlanItem>* out) {
  out->clear();
  for (size_t i = 0; i < remaining.size(); ++i) {
    if (remaining[i] == 1 && budget > 0) {
      out->push_back({static_cast<int>(i), 1});
      --budget;
    }
  }
  for (size_t i = 0; i < remaining.size() && budget > 0; ++i) {
    if (remaining[i] <= 1) continue;
    const int64_t n = std::min(remaining[i], budget);
    out->push_back({static_cast<int>(i), static_cast<int>(n)});
    budget -= n;
  }
}

}  // namespace retain::engine
