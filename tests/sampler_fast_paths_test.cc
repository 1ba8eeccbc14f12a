// Sampler's fast paths (penalty copy skipped when penalties are off, vectorised greedy, top-p /
// top-k / min-p on a sorted prefix instead of the whole sorted vocabulary) against the plain
// algorithm (tests/testing/reference_sampler.*): the same tokens, step for step, under the same
// seed, over a grid of parameters and logit shapes (flat, peaked, heavily tied, masked with -inf).
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "retain/engine/sampler.h"
#include "tests/testing/reference_sampler.h"

namespace retain::engine {
namespace {

enum class Shape { kFlat, kPeaked, kTied, kMasked };

std::vector<float> Logits(Shape shape, int vocab, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, shape == Shape::kPeaked ? 6.0f : 1.0f);
  std::vector<float> x(static_cast<size_t>(vocab));
  for (float& v : x) v = normal(rng);
  if (shape == Shape::kTied)  // a few distinct values only: many equal probabilities
    for (float& v : x) v = std::round(v * 2.0f) / 2.0f;
  if (shape == Shape::kMasked)
    for (size_t i = 1; i < x.size(); i += 3) x[i] = -std::numeric_limits<float>::infinity();
  return x;
}

struct Case {
  float temperature, top_p;
  int top_k;
  float min_p;
  int penalties;  // 0 none, 1 presence/frequency with decay, 2 repetition, 3 all
};

std::string Describe(const Case& c, Shape shape, int vocab) {
  return absl::StrCat("T=", c.temperature, " top_p=", c.top_p, " top_k=", c.top_k, " min_p=", c.min_p,
                      " penalties=", c.penalties, " shape=", static_cast<int>(shape), " vocab=", vocab);
}

void ExpectSameTokens(const Case& c, Shape shape, int vocab, int steps, uint64_t seed) {
  SamplingParams p;
  p.temperature = c.temperature;
  p.top_p = c.top_p;
  p.top_k = c.top_k;
  p.min_p = c.min_p;
  if (c.penalties & 1) {
    p.presence_penalty = 0.4f;
    p.frequency_penalty = 0.3f;
    p.penalty_decay = 0.99f;
  }
  if (c.penalties & 2) p.repetition_penalty = 1.3f;
  p.seed = seed;
  ASSERT_TRUE(ValidateSamplingParams(p).ok()) << Describe(c, shape, vocab);
  Sampler fast(p, vocab);
  testing::ReferenceSampler plain(p, vocab);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::vector<TokenId> prompt;
  for (int i = 0; i < 8; ++i) prompt.push_back(static_cast<TokenId>(rng() % static_cast<uint32_t>(vocab)));
  fast.ObservePrompt(prompt);
  plain.ObservePrompt(prompt);
  // The same logits several steps running, so penalties move the choice, then fresh ones.
  std::vector<float> logits = Logits(shape, vocab, rng);
  for (int step = 0; step < steps; ++step) {
    if (step % 4 == 3) logits = Logits(shape, vocab, rng);
    const TokenId want = plain.Sample(logits);
    ASSERT_EQ(fast.Sample(logits), want) << Describe(c, shape, vocab) << " step " << step;
  }
}

TEST(SamplerFastPaths, SameTokensAsThePlainAlgorithmOverAParameterGrid) {
  uint64_t seed = 1;
  for (float t : {0.0f, 0.6f, 1.0f, 1.7f})
    for (float top_p : {1.0f, 0.95f, 0.5f, 1e-6f})
      for (int top_k : {0, 1, 7, 300})
        for (float min_p : {0.0f, 0.05f, 0.6f})
          for (int penalties : {0, 1, 2, 3})
            for (Shape shape : {Shape::kFlat, Shape::kPeaked, Shape::kTied, Shape::kMasked}) {
              ExpectSameTokens({t, top_p, top_k, min_p, penalties}, shape, 997, 8, seed++);
              if (HasFatalFailure()) return;
            }
}

TEST(SamplerFastPaths, SameTokensAtAWorldVocabulary) {
  uint64_t seed = 100;
  for (float top_p : {1.0f, 0.85f, 0.3f})
    for (int top_k : {0, 40})
      for (Shape shape : {Shape::kFlat, Shape::kPeaked, Shape::kTied}) {
        ExpectSameTokens({1.0f, top_p, top_k, 0.0f, 1}, shape, 65536, 6, seed++);
        if (HasFatalFailure()) return;
      }
}

TEST(SamplerFastPaths, TinyVocabulariesAndGreedyTies) {
  uint64_t seed = 500;
  for (int vocab : {1, 2, 3, 8, 9, 17})
    for (float t : {0.0f, 1.0f})
      for (Shape shape : {Shape::kFlat, Shape::kTied, Shape::kMasked}) {
        ExpectSameTokens({t, 0.9f, 0, 0.0f, 0}, shape, vocab, 12, seed++);
        if (HasFatalFailure()) return;
      }
  // The first of equal maxima, -0.0 against 0.0 included, as std::max_element picks it.
  SamplingParams p;
  p.temperature = 0;
  std::vector<float> zeros = {-1.0f, -0.0f, 0.0f, -0.0f, -2.0f, -0.0f, 0.0f, -5.0f, 0.0f, 0.0f};
  EXPECT_EQ(Sampler(p, 10).Sample(zeros), 1);
  std::vector<float> late(40, -3.0f);
  late[37] = 2.0f;
  late[38] = 2.0f;
  EXPECT_EQ(Sampler(p, 40).Sample(late), 37);
  // Every logit -inf (no probability anywhere): a token id in range, not a read past the end.
  std::vector<float> none(33, -std::numeric_limits<float>::infinity());
  for (float t : {0.0f, 1.0f}) {
    p.temperature = t;
    for (float top_p : {1.0f, 0.5f}) {
      p.top_p = top_p;
      const TokenId id = Sampler(p, 33).Sample(none);
      EXPECT_GE(id, 0);
      EXPECT_LT(id, 33);
    }
  }
}

}  // namespace
}  // namespace retain::engine
