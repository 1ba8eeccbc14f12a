// The plain-way sampler (reference_sampler.h): kept as it was, for the tests to compare against.
#include "tests/testing/reference_sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace retain::testing {

ReferenceSampler::ReferenceSampler(const engine::SamplingParams& params, int vocab)
    : params_(params),
      rng_(params.seed),
      occurrence_(vocab, 0.0f),
      seen_(params.repetition_penalty != 1.0f ? vocab : 0, 0),
      work_(vocab),
      order_(vocab) {}

void ReferenceSampler::ObservePrompt(absl::Span<const engine::TokenId> prompt) {
  if (seen_.empty()) return;
  const auto v = static_cast<engine::TokenId>(seen_.size());
  for (engine::TokenId id : prompt)
    if (id >= 0 && id < v) seen_[id] = 1;
}

engine::TokenId ReferenceSampler::Sample(absl::Span<const float> logits) {
  const int v = static_cast<int>(std::min(logits.size(), work_.size()));
  if (seen_.empty()) {
    for (int i = 0; i < v; ++i) {
      work_[i] = logits[i];
      if (occurrence_[i] > 0) work_[i] -= params_.presence_penalty + occurrence_[i] * params_.frequency_penalty;
    }
  } else {
    // Repetition penalty first (HF/vLLM order), then the additive penalties.
    const float rp = params_.repetition_penalty;
    for (int i = 0; i < v; ++i) {
      float x = logits[i];
      if (seen_[i]) x = x > 0 ? x / rp : x * rp;
      if (occurrence_[i] > 0) x -= params_.presence_penalty + occurrence_[i] * params_.frequency_penalty;
      work_[i] = x;
    }
  }
  engine::TokenId chosen = 0;
  if (params_.temperature == 0.0f) {
    chosen = static_cast<engine::TokenId>(std::max_element(work_.begin(), work_.begin() + v) - work_.begin());
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
    if (params_.min_p > 0) {
      // Survivors are a prefix of the sorted order; the top one always stays.
      const float threshold = params_.min_p * work_[order_[0]];
      int k = 1;
      while (k < keep && !(work_[order_[k]] < threshold)) ++k;
      keep = k;
    }
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
  if (!seen_.empty()) seen_[chosen] = 1;
  return chosen;
}

}  // namespace retain::testing
