// Sampler and log-probabilities. Buffers are sized once per sampler so a decode loop does not
// allocate.
#include "retain/engine/sampler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
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
  if (!std::isfinite(p.min_p) || p.min_p < 0 || p.min_p > 1) return bad("min_p", "must be in [0, 1]");
  if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0 || p.repetition_penalty > 10)
    return bad("repetition_penalty", "must be in (0, 10]");
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params, int vocab)
    : params_(params),
      rng_(params.seed),
      occurrence_(vocab, 0.0f),
      seen_(params.repetition_penalty != 1.0f ? vocab : 0, 0),
      work_(vocab),
      order_(vocab) {}

void Sampler::ObservePrompt(absl::Span<const TokenId> prompt) {
  if (seen_.empty()) return;
  const auto v = static_cast<TokenId>(seen_.size());
  for (TokenId id : prompt)
    if (id >= 0 && id < v) seen_[id] = 1;
}

TokenId Sampler::Sample(absl::Span<const float> logits) {
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

void ComputeLogprobs(absl::Span<const float> logits, TokenId chosen, int top_n, float* chosen_logprob,
                     std::vector<TokenLogprob>* top) {
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  const int n = top == nullptr ? 0 : std::clamp(top_n, 0, kMaxTopLogprobs);
  // best[0..nb): the n largest logits so far (kept in .logprob until the end), descending; ids
  // arrive in increasing order, so an equal logit goes after the ones already there.
  std::array<TokenLogprob, kMaxTopLogprobs> best;
  int nb = 0;
  double m = kNegInf;  // running maximum
  double s = 0;        // sum of exp(x - m)
  const int v = static_cast<int>(logits.size());
  for (int i = 0; i < v; ++i) {
    const float x = logits[i];
    if (x > m) {
      s = s * std::exp(m - x) + 1.0;
      m = x;
    } else if (x != -std::numeric_limits<float>::infinity()) {
      s += std::exp(x - m);
    }
    if (n > 0 && (nb < n || x > best[nb - 1].logprob)) {
      int j = nb < n ? nb++ : n - 1;
      while (j > 0 && best[j - 1].logprob < x) {
        best[j] = best[j - 1];
        --j;
      }
      best[j] = {static_cast<TokenId>(i), x};
    }
  }
  const double log_s = s > 0 ? std::log(s) : 0.0;
  auto logprob = [&](float x) -> float {
    if (s == 0 || x == -std::numeric_limits<float>::infinity()) return -std::numeric_limits<float>::infinity();
    return static_cast<float>((static_cast<double>(x) - m) - log_s);
  };
  if (chosen_logprob != nullptr)
    *chosen_logprob = chosen >= 0 && chosen < v ? logprob(logits[chosen]) : -std::numeric_limits<float>::infinity();
  if (top == nullptr) return;
  top->clear();
  for (int i = 0; i < nb; ++i) top->push_back({best[i].id, logprob(best[i].logprob)});
  // Rounding to float can merge neighbouring values: re-impose (logprob desc, id asc).
  std::sort(top->begin(), top->end(), [](const TokenLogprob& a, const TokenLogprob& b) {
    return a.logprob != b.logprob ? a.logprob > b.logprob : a.id < b.id;
  });
}

}  // namespace retain::engine
