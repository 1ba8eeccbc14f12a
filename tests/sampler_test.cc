// Sampler: greedy, seeded reproducibility, truncation and penalties, parameter validation;
// min-p, repetition penalty, log-probabilities.
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "retain/engine/sampler.h"

namespace retain::engine {
namespace {

TEST(Sampler, TemperatureZeroIsGreedyFirstMaximum) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p, 5);
  std::vector<float> logits = {0.1f, 3.0f, -2.0f, 3.0f, 1.0f};
  EXPECT_EQ(s.Sample(logits), 1);
}

TEST(Sampler, SameSeedSameTokensOtherSeedOtherTokens) {
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = 0.05f * i;
  auto draw = [&](uint64_t seed) {
    SamplingParams p;
    p.seed = seed;
    Sampler s(p, 50);
    std::vector<TokenId> out;
    for (int i = 0; i < 40; ++i) out.push_back(s.Sample(logits));
    return out;
  };
  EXPECT_EQ(draw(7), draw(7));
  EXPECT_NE(draw(7), draw(8));
}

TEST(Sampler, TopPKeepsOnlyTheNucleus) {
  // probabilities ≈ 0.6, 0.3, 0.1 (and ~0 for the rest): top_p 0.8 keeps the first two only.
  std::vector<float> logits = {std::log(0.6f), std::log(0.3f), std::log(0.1f), -30.0f};
  SamplingParams p;
  p.top_p = 0.8f;
  Sampler s(p, 4);
  std::map<TokenId, int> seen;
  for (int i = 0; i < 2000; ++i) seen[s.Sample(logits)]++;
  EXPECT_EQ(seen.count(2), 0u);
  EXPECT_EQ(seen.count(3), 0u);
  EXPECT_GT(seen[0], seen[1]);
  EXPECT_GT(seen[1], 400);  // ≈ 2000 · 0.3/0.9
}

TEST(Sampler, TopKOneIsGreedy) {
  std::vector<float> logits = {1.0f, 2.0f, 0.5f};
  SamplingParams p;
  p.top_k = 1;
  Sampler s(p, 3);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(logits), 1);
}

TEST(Sampler, PresencePenaltyMovesGreedyOffARepeat) {
  std::vector<float> logits = {2.0f, 1.5f};
  SamplingParams p;
  p.temperature = 0;
  p.presence_penalty = 1.0f;
  Sampler s(p, 2);
  EXPECT_EQ(s.Sample(logits), 0);
  EXPECT_EQ(s.Sample(logits), 1);  // 2.0 - 1.0 < 1.5
}

TEST(Sampler, InvalidParametersNameTheField) {
  auto check = [](SamplingParams p, const char* field) {
    absl::Status s = ValidateSamplingParams(p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find(field), std::string_view::npos) << s;
  };
  SamplingParams p;
  EXPECT_TRUE(ValidateSamplingParams(p).ok());
  p.temperature = -1;
  check(p, "temperature");
  p = {};
  p.top_p = 0;
  check(p, "top_p");
  p = {};
  p.top_p = std::nanf("");
  check(p, "top_p");
  p = {};
  p.top_k = -3;
  check(p, "top_k");
  p = {};
  p.penalty_decay = 0;
  check(p, "penalty_decay");
}

// Draws one token per seed (a fresh sampler each) and returns how often each token came up.
std::map<TokenId, int> DrawOverSeeds(const SamplingParams& base, const std::vector<float>& logits, int seeds) {
  std::map<TokenId, int> seen;
  for (int seed = 0; seed < seeds; ++seed) {
    SamplingParams p = base;
    p.seed = static_cast<uint64_t>(seed);
    Sampler s(p, static_cast<int>(logits.size()));
    seen[s.Sample(logits)]++;
  }
  return seen;
}

std::vector<float> LogOf(const std::vector<float>& probs) {
  std::vector<float> out;
  for (float x : probs) out.push_back(std::log(x));
  return out;
}

TEST(Sampler, MinPDropsTokensBelowTheFractionOfTheTop) {
  // p = 0.4, 0.3, 0.15, 0.1, 0.05. min_p 0.3: threshold 0.12 keeps {0, 1, 2}.
  const std::vector<float> logits = LogOf({0.4f, 0.3f, 0.15f, 0.1f, 0.05f});
  SamplingParams p;
  p.min_p = 0.3f;
  for (float temperature : {1.0f, 0.5f, 3.0f}) {  // temperature does not change the survivors
    p.temperature = temperature;
    std::map<TokenId, int> seen = DrawOverSeeds(p, logits, 3000);
    EXPECT_EQ(seen.count(3), 0u) << temperature;
    EXPECT_EQ(seen.count(4), 0u) << temperature;
    for (TokenId kept : {0, 1, 2}) EXPECT_GT(seen[kept], 0) << temperature << " " << kept;
  }
  // min_p 0.5: threshold 0.2 keeps {0, 1}; min_p 1 keeps only the top.
  p = {};
  p.min_p = 0.5f;
  std::map<TokenId, int> seen = DrawOverSeeds(p, logits, 2000);
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[0], seen[1]);
  EXPECT_GT(seen[1], 0);
  p.min_p = 1.0f;
  seen = DrawOverSeeds(p, logits, 200);
  EXPECT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], 200);
}

TEST(Sampler, MinPComesAfterTopPAndTopK) {
  const std::vector<float> logits = LogOf({0.4f, 0.3f, 0.15f, 0.1f, 0.05f});
  SamplingParams p;
  p.min_p = 0.2f;  // threshold 0.08 alone keeps {0, 1, 2, 3}
  std::map<TokenId, int> seen = DrawOverSeeds(p, logits, 3000);
  EXPECT_EQ(seen.count(4), 0u);
  EXPECT_GT(seen[3], 0);
  p.top_k = 2;  // top-k then min-p: {0, 1}
  seen = DrawOverSeeds(p, logits, 2000);
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[1], 0);
  p = {};
  p.top_p = 0.8f;  // keeps {0, 1, 2} (0.7 < 0.8 <= 0.85); min_p 0.5 then keeps {0, 1}
  p.min_p = 0.5f;
  seen = DrawOverSeeds(p, logits, 2000);
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_GT(seen[1], 0);
}

TEST(Sampler, MinPZeroAndRepetitionPenaltyOneChangeNothing) {
  std::vector<float> logits(64);
  for (int i = 0; i < 64; ++i) logits[i] = std::sin(0.7f * i) * 3.0f;
  auto draw = [&](const SamplingParams& p, bool observe) {
    Sampler s(p, 64);
    const std::vector<TokenId> prompt = {1, 2, 3, 5, 8};
    if (observe) s.ObservePrompt(prompt);
    std::vector<TokenId> out;
    for (int i = 0; i < 200; ++i) out.push_back(s.Sample(logits));
    return out;
  };
  SamplingParams p;
  p.seed = 11;
  p.top_p = 0.9f;
  p.presence_penalty = 0.3f;
  p.frequency_penalty = 0.2f;
  p.penalty_decay = 0.99f;
  const std::vector<TokenId> base = draw(p, false);
  EXPECT_EQ(draw(p, true), base);  // prompt tokens feed only the repetition penalty
  p.repetition_penalty = 1.3f;
  EXPECT_NE(draw(p, true), base);
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0f;
  {
    Sampler s(p, 4);
    const std::vector<TokenId> prompt = {0};
    s.ObservePrompt(prompt);
    const std::vector<float> logits = {2.0f, 1.5f, -1.0f, -0.5f};
    EXPECT_EQ(s.Sample(logits), 1);  // 2.0 / 2 = 1.0 < 1.5
    EXPECT_EQ(s.Sample(logits), 0);  // 1.0 > 1.5 / 2 = 0.75
    EXPECT_EQ(s.Sample(logits), 0);  // seen once or often: the same factor
  }
  {
    Sampler s(p, 3);
    const std::vector<TokenId> prompt = {0, 0, 7, -1};  // out-of-range ids ignored
    s.ObservePrompt(prompt);
    const std::vector<float> logits = {-1.0f, -1.5f, -4.0f};
    EXPECT_EQ(s.Sample(logits), 1);  // -1.0 · 2 = -2.0 < -1.5
    EXPECT_EQ(s.Sample(logits), 0);  // -2.0 > -3.0
  }
  {
    Sampler s(p, 2);  // no prompt: only generated tokens
    const std::vector<float> logits = {2.0f, 1.5f};
    EXPECT_EQ(s.Sample(logits), 0);
    EXPECT_EQ(s.Sample(logits), 1);
  }
}

TEST(Sampler, RepetitionPenaltyComesBeforePresencePenalty) {
  // After token 0 is generated once: 3.0 / 2 - 0.2 = 1.3 < 1.4 picks 1; the other order,
  // (3.0 - 0.2) / 2 = 1.4, would tie and pick 0.
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0f;
  p.presence_penalty = 0.2f;
  Sampler s(p, 2);
  const std::vector<float> logits = {3.0f, 1.4f};
  EXPECT_EQ(s.Sample(logits), 0);
  EXPECT_EQ(s.Sample(logits), 1);
}

TEST(Sampler, RepetitionPenaltyAppliesWhenSampling) {
  // Token 0 dominates until the prompt marks it: 8 / 4 = 2 < 3 makes token 1 the likely one.
  const std::vector<float> logits = {8.0f, 3.0f, -5.0f};
  SamplingParams p;
  p.repetition_penalty = 4.0f;
  std::map<TokenId, int> seen;
  for (int seed = 0; seed < 500; ++seed) {
    p.seed = static_cast<uint64_t>(seed);
    Sampler s(p, 3);
    const std::vector<TokenId> prompt = {0};
    s.ObservePrompt(prompt);
    seen[s.Sample(logits)]++;
  }
  EXPECT_GT(seen[1], seen[0]);
  EXPECT_GT(seen[0], 0);
}

TEST(Sampler, NewParametersAreValidatedByName) {
  auto check = [](SamplingParams p, const char* message) {
    absl::Status s = ValidateSamplingParams(p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(s.message(), message);
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (float bad : {-0.01f, 1.01f, nan, inf, -inf}) {
    SamplingParams p;
    p.min_p = bad;
    check(p, "min_p must be in [0, 1]");
  }
  for (float bad : {0.0f, -1.0f, 10.5f, nan, inf}) {
    SamplingParams p;
    p.repetition_penalty = bad;
    check(p, "repetition_penalty must be in (0, 10]");
  }
  for (float ok : {0.0f, 0.05f, 1.0f}) {
    SamplingParams p;
    p.min_p = ok;
    EXPECT_TRUE(ValidateSamplingParams(p).ok()) << ok;
  }
  for (float ok : {0.5f, 1.0f, 1.2f, 10.0f}) {
    SamplingParams p;
    p.repetition_penalty = ok;
    EXPECT_TRUE(ValidateSamplingParams(p).ok()) << ok;
  }
  SamplingParams p;
  p.presence_penalty = nan;
  check(p, "presence_penalty must be in [-100, 100]");
}

// Reference: log-softmax in long double, two passes.
std::vector<double> ReferenceLogSoftmax(const std::vector<float>& logits) {
  long double mx = -std::numeric_limits<long double>::infinity();
  for (float x : logits) mx = std::max<long double>(mx, x);
  long double sum = 0;
  for (float x : logits) sum += std::exp(static_cast<long double>(x) - mx);
  std::vector<double> out;
  for (float x : logits) out.push_back(static_cast<double>(x - mx - std::log(sum)));
  return out;
}

TEST(Logprobs, MatchADoubleComputation) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  std::vector<float> logits(1000);
  for (float& x : logits) x = normal(rng);
  const std::vector<double> ref = ReferenceLogSoftmax(logits);
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return ref[a] > ref[b]; });
  std::vector<TokenLogprob> top;
  top.reserve(kMaxTopLogprobs);
  const TokenLogprob* storage = top.data();
  for (int n : {0, 1, 5, 20}) {
    for (TokenId chosen : {0, 17, 999, order[0]}) {
      float lp = 0;
      ComputeLogprobs(logits, chosen, n, &lp, &top);
      EXPECT_NEAR(lp, ref[chosen], 1e-5 + 1e-6 * std::fabs(ref[chosen])) << chosen;
      ASSERT_EQ(top.size(), static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) {
        EXPECT_EQ(top[i].id, order[i]) << i;
        EXPECT_NEAR(top[i].logprob, ref[order[i]], 1e-5) << i;
      }
    }
  }
  EXPECT_EQ(top.data(), storage);  // reserved capacity reused
  ComputeLogprobs(logits, 0, 50, nullptr, &top);
  EXPECT_EQ(top.size(), static_cast<size_t>(kMaxTopLogprobs));  // clamped
}

TEST(Logprobs, TiesListLowerIdsFirst) {
  const std::vector<float> logits = {1.0f, 3.0f, 3.0f, 0.0f, 3.0f, 3.0f};
  std::vector<TokenLogprob> top;
  float lp = 0;
  ComputeLogprobs(logits, 4, 3, &lp, &top);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].id, 1);
  EXPECT_EQ(top[1].id, 2);
  EXPECT_EQ(top[2].id, 4);
  EXPECT_EQ(top[0].logprob, top[2].logprob);
  EXPECT_EQ(lp, top[2].logprob);
  ComputeLogprobs(logits, 4, 6, &lp, &top);
  std::vector<TokenId> ids;
  for (const TokenLogprob& t : top) ids.push_back(t.id);
  EXPECT_EQ(ids, (std::vector<TokenId>{1, 2, 4, 5, 0, 3}));
  ComputeLogprobs(logits, 4, 0, &lp, &top);
  EXPECT_TRUE(top.empty());
}

TEST(Logprobs, StableForLargeLogitsAndMasked) {
  const float ninf = -std::numeric_limits<float>::infinity();
  const std::vector<float> logits = {1000.0f, 999.0f, ninf, -1000.0f};
  std::vector<TokenLogprob> top;
  float lp = 0;
  ComputeLogprobs(logits, 1, 4, &lp, &top);
  const double lse = std::log1p(std::exp(-1.0));  // over {0, -1}; exp(-2000) vanishes
  EXPECT_NEAR(lp, -1.0 - lse, 1e-6);
  ASSERT_EQ(top.size(), 4u);
  EXPECT_NEAR(top[0].logprob, -lse, 1e-6);
  EXPECT_EQ(top[0].id, 0);
  EXPECT_EQ(top[2].id, 3);
  EXPECT_NEAR(top[2].logprob, -2000.0 - lse, 1e-3);
  EXPECT_EQ(top[3].id, 2);
  EXPECT_EQ(top[3].logprob, ninf);
  ComputeLogprobs(logits, 2, 0, &lp, nullptr);
  EXPECT_EQ(lp, ninf);
  ComputeLogprobs(logits, 4, 0, &lp, nullptr);  // out of range
  EXPECT_EQ(lp, ninf);
  // Small vocab, all listed: probabilities sum to 1.
  ComputeLogprobs(std::vector<float>{0.5f, -2.0f, 1.25f}, 0, 20, &lp, &top);
  ASSERT_EQ(top.size(), 3u);
  double total = 0;
  for (const TokenLogprob& t : top) total += std::exp(static_cast<double>(t.logprob));
  EXPECT_NEAR(total, 1.0, 1e-6);
}

}  // namespace
}  // namespace retain::engine
