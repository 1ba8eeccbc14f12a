// Sampler: greedy, seeded reproducibility, truncation and penalties, parameter validation.
#include <cmath>
#include <map>

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

}  // namespace
}  // namespace retain::engine
