// Sampler and log-probabilities. Buffers are sized once per sampler so a decode loop does not
// allocate.
#include "retain/engine/sampler.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

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

namespace {

// The index std::max_element returns (the first element no later one is greater than under
// operator<), in two passes the compiler vectorises: the maximum over 8 lanes, then the first
// index holding it. A NaN first element wins there, so it does here; a later NaN never does.
int FirstMax(const float* x, int n) {
  constexpr int kLanes = 8;
  float lane[kLanes];
  for (float& l : lane) l = x[0];
  int i = 1;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) lane[j] = lane[j] < x[i + j] ? x[i + j] : lane[j];
  for (; i < n; ++i) lane[0] = lane[0] < x[i] ? x[i] : lane[0];
  float m = lane[0];
  for (float l : lane) m = m < l ? l : m;
  if (m != m) return 0;
  for (i = 0; i < n; ++i)
    if (x[i] == m) return i;
  return 0;
}

uint32_t Bits(float p) {
  uint32_t b;
  std::memcpy(&b, &p, sizeof b);
  return b;
}

// Ascending keys order probabilities (>= 0, so their bits order as unsigned) descending and equal
// ones by id ascending: exactly the order a stable sort of the ids by descending probability gives.
uint64_t OrderKey(float p, int id) { return (static_cast<uint64_t>(~Bits(p)) << 32) | static_cast<uint32_t>(id); }
int KeyId(uint64_t key) { return static_cast<int>(static_cast<uint32_t>(key)); }

// Sorts keys[0..n) by their high 32 bits, stably (LSD radix, 3 passes of 11 bits), through tmp:
// keys made in id order come out in exactly std::sort's order of the whole keys, in O(n).
void RadixSortByProbability(uint64_t* keys, uint64_t* tmp, int n) {
  constexpr int kBits = 11;
  constexpr uint64_t kMask = (1u << kBits) - 1;
  uint64_t* src = keys;
  uint64_t* dst = tmp;
  for (int shift = 32; shift < 64; shift += kBits) {
    std::array<int, 1u << kBits> start{};
    for (int i = 0; i < n; ++i) ++start[(src[i] >> shift) & kMask];
    if (start[(src[0] >> shift) & kMask] == n) continue;  // one digit value: already in order
    int sum = 0;
    for (int& c : start) sum += std::exchange(c, sum);
    for (int i = 0; i < n; ++i) dst[start[(src[i] >> shift) & kMask]++] = src[i];
    std::swap(src, dst);
  }
  if (src != keys) std::memcpy(keys, src, sizeof(uint64_t) * static_cast<size_t>(n));
}

// Sorting scratch, per thread (samplers of one engine run on its step thread): sized to the
// largest vocabulary a thread sampled from, once, instead of a megabyte in every request.
struct SortScratch {
  std::vector<uint64_t> keys, tmp;
};
SortScratch& Scratch(int v) {
  thread_local SortScratch s;
  if (s.keys.size() < static_cast<size_t>(v)) {
    s.keys.resize(static_cast<size_t>(v));
    s.tmp.resize(static_cast<size_t>(v));
  }
  return s;
}

}  // namespace

Sampler::Sampler(const SamplingParams& params, int vocab)
    : params_(params),
      rng_(params.seed),
      occurrence_(vocab, 0.0f),
      seen_(params.repetition_penalty != 1.0f ? vocab : 0, 0),
      work_(vocab) {}

void Sampler::ObservePrompt(absl::Span<const TokenId> prompt) {
  if (seen_.empty()) return;
  const auto v = static_cast<TokenId>(seen_.size());
  for (TokenId id : prompt)
    if (id >= 0 && id < v) seen_[id] = 1;
}

// The survivors of top-p, top-k and min-p need the probabilities in sorted order only as far as
// the last survivor, so only a prefix of that order is built into keys: the ids whose probability
// is >= a threshold t (such a set is a prefix of the order), of those the top_k first, sorted.
// t comes from min-p (every survivor is >= its threshold) and, when `speculate_top_p`, from a
// histogram of the exponents: the highest ones whose mass reaches top_p. That mass is summed in
// another order than the sorted prefix's cumulative sum, so the caller checks the prefix reaches
// top_p; *speculated says whether the speculative threshold made the prefix shorter than it would
// be without it. Returns the prefix length.
int Sampler::SortedPrefix(int v, float min_p_threshold, bool speculate_top_p, bool* speculated, uint64_t* keys,
                          uint64_t* tmp) {
  const float exact_t = params_.min_p > 0 ? min_p_threshold : 0.0f;
  float t = exact_t;
  if (speculate_top_p) {
    std::array<int, 256> count{};
    std::array<double, 256> mass{};
    for (int i = 0; i < v; ++i) {
      // Without the sign bit: a NaN probability (every logit -inf gives NaNs here) may carry it,
      // and its exponent must still index the 256 buckets (found by UBSan).
      const uint32_t e = (Bits(work_[i]) & 0x7fffffffu) >> 23;
      ++count[e];
      mass[e] += work_[i];
    }
    double m = 0;
    for (int e = 255; e > 0; --e) {
      m += mass[e];
      if (m >= params_.top_p) {
        t = std::max(t, std::bit_cast<float>(static_cast<uint32_t>(e) << 23));
        break;
      }
    }
  }
  int n = 0;
  for (int i = 0; i < v; ++i)
    if (work_[i] >= t) keys[n++] = OrderKey(work_[i], i);
  const int bound = params_.top_k > 0 ? std::min(n, params_.top_k) : n;
  *speculated = t > exact_t && (params_.top_k == 0 || n < params_.top_k);
  if (bound < n) {
    std::nth_element(keys, keys + bound, keys + n);
    std::sort(keys, keys + bound);
  } else if (n > 2048) {
    RadixSortByProbability(keys, tmp, n);  // keys are still in id order
  } else {
    std::sort(keys, keys + n);
  }
  return bound;
}

TokenId Sampler::Sample(absl::Span<const float> logits) {
  const int v = static_cast<int>(std::min(logits.size(), work_.size()));
  // Penalties that are all off leave every logit as it is (x - 0 == x), so the copy is skipped.
  const float* src = logits.data();
  if (!seen_.empty()) {
    // Repetition penalty first (HF/vLLM order), then the additive penalties.
    const float rp = params_.repetition_penalty;
    for (int i = 0; i < v; ++i) {
      float x = logits[i];
      if (seen_[i]) x = x > 0 ? x / rp : x * rp;
      if (occurrence_[i] > 0) x -= params_.presence_penalty + occurrence_[i] * params_.frequency_penalty;
      work_[i] = x;
    }
    src = work_.data();
  } else if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) {
    for (int i = 0; i < v; ++i) {
      work_[i] = logits[i];
      if (occurrence_[i] > 0) work_[i] -= params_.presence_penalty + occurrence_[i] * params_.frequency_penalty;
    }
    src = work_.data();
  }
  const int best = FirstMax(src, v);
  TokenId chosen = static_cast<TokenId>(best);
  if (params_.temperature != 0.0f) {
    const float mx = src[best];
    double sum = 0;
    for (int i = 0; i < v; ++i) sum += (work_[i] = std::exp(src[i] - mx));
    for (int i = 0; i < v; ++i) work_[i] = static_cast<float>(work_[i] / sum);
    // The top probability, min-p's reference: exp(0) / sum at the first maximum, and no other
    // can round above it (the reference took the same value from the sorted order's head).
    const float min_p_threshold = params_.min_p * work_[best];
    SortScratch& scratch = Scratch(v);
    uint64_t* keys = scratch.keys.data();
    bool speculated = false;
    int bound = SortedPrefix(v, min_p_threshold, params_.top_p < 1.0f, &speculated, keys, scratch.tmp.data());
    auto p = [&](int k) -> float& { return work_[KeyId(keys[k])]; };
    // Keep the smallest prefix whose mass reaches top_p (all of the prefix if it never does:
    // top-k or min-p end it there); ties with its last element survive.
    int keep = bound;
    auto reaches_top_p = [&] {
      double cum = 0;
      for (int i = 0; i < bound; ++i) {
        cum += p(i);
        if (cum >= params_.top_p) {
          keep = i + 1;
          return true;
        }
      }
      keep = bound;
      return false;
    };
    if (!reaches_top_p() && speculated) {
      bound = SortedPrefix(v, min_p_threshold, false, &speculated, keys, scratch.tmp.data());
      reaches_top_p();
    }
    // No probability at all (every logit -inf or NaN): the first maximum, as greedy would.
    if (bound == 0) return Record(chosen);
    while (keep < bound && p(keep) == p(keep - 1)) ++keep;
    if (params_.top_k > 0) keep = std::min(keep, params_.top_k);
    if (params_.min_p > 0) {
      // Survivors are a prefix of the sorted order; the top one always stays.
      int k = 1;
      while (k < keep && !(p(k) < min_p_threshold)) ++k;
      keep = k;
    }
    double total = 0;
    for (int i = 0; i < keep; ++i) {
      float& q = p(i);
      q = params_.temperature == 1.0f ? q : std::pow(q, 1.0f / params_.temperature);
      total += q;
    }
    std::uniform_real_distribution<double> uni(0.0, total);
    double r = uni(rng_);
    chosen = KeyId(keys[keep - 1]);
    for (int i = 0; i < keep; ++i) {
      r -= p(i);
      if (r <= 0) {
        chosen = KeyId(keys[i]);
        break;
      }
    }
  }
  return Record(chosen);
}

TokenId Sampler::Record(TokenId chosen) {
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
