// Sampler. Buffers are sized once per sampler so a decode loop does not allocate.
#include "retain/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace retain::engine {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  auto bad = [](const char* field, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(field, " ", why));
  };
  if (!std::isfinite(p.temperature) || p.temperature < 0 || p.temperature > 100) return bad("temperature", "must be in [0, 100]");
  if (!std::isfinite(p.top_p) || p.top_p <= 0 || p.top_p > 1) return bad("top_p", "must be in (0, 1]");
  if (p.top_k < 0) return bad("top_k", "must be >= 0");
  if (!std::isfinite(p.presence_penalty) || std::fabs(p.presence_penalty) > 100) return bad("presence_penalty", "must be in [-100, 100]");
  if (!std::isfinite(p.frequency_penalty) || std::fabs(p.frequency_penalty) > 100) return bad("frequency_penalty", "must be in [-100, 100]");
  if (!std::isfinite(p.penalty_decay) || p.penalty_decay <= 0 || p.penalty_decay > 1) return bad("penalty_decay", "must be in (0, 1]");
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params, int vocab)
    : params_(params), rng_(params.seed), occurrence_(vocab, 0.0f), work_(vocab), order_(vocab) {}

TokenId Sampler::Sample(absl::Span<const float> logits) {
  const int v = static_cast<int>(std::min(logits.size(), work_.size()));
  for (int i = 0; i < v; ++i) {
    work_[i] = logits[i];
    if (occurrence_[i] > 0) work_[i] -= params_.presence_penalty + occurrence_[i] * params_.frequency_penalty;
  }
  TokenId chosen = 0;
  if (params_.temperature == 0.0f) {
    chosen = static_cast<TokenId>(std::max_element(work_.begin(), work_.begin() + v) - work_.begin());
  } else {
    const float mx = *std::max_element(work_.begin(), work_.begin() + v);
    double sum = 0;
    for (int i = 0; i < v; ++i) sum += (work_[i] = std::exp(work_[i] - mx));
    for (int i = 0; i < v; ++i) work_[i] = static_cast<float>(work_[i] / sum);
    std::iota(order_.begin(), order_.begin() + v, 0);
    std::stable_sort(order_.begin(), order_.begin() + v, [&](int a, int b) { return work_[a] > work_[b]; });
    // Keep the smallest prefix whose mass reaches top_p; ties with its last element survive.
    int keep = v;
    double cum = 0;
    for (int i = 0; i < v; ++i) {
      cum += work_[order_[i]];
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    while (keep < v && work_[order_[keep]] == work_[order_[keep - 1]]) ++keep;
    if (params_.top_k > 0) keep = std::min(keep, params_.top_k);
    double total = 0;
    for (int i = 0; i < keep; ++i) {
      float& p = work_[order_[i]];
      p = params_.temperature == 1.0f ? p : std::pow(p, 1.0f / params_.temperature);
      total += p;
    }
    std::uniform_real_distribution<double> uni(0.0, total);
    double r = uni(rng_);
    chosen = order_[keep - 1];
    for (int i = 0; i < keep; ++i) {
      r -= work_[order_[i]];
      if (r <= 0) {
        chosen = order_[i];
        break;
      }
    }
  }
  if (params_.penalty_decay != 1.0f)
    for (float& o : occurrence_) o *= params_.penalty_decay;
  occurrence_[chosen] += 1.0f;
  return chosen;
}

}  // namespace retain::engine
