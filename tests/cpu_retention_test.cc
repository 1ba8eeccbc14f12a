// The vectorised retention kernel against the reference, form by form (recurrent and chunkwise
// against their reference namesakes, every form against the f64 parallel reference), for each
// ISA this CPU has: odd key sizes, value sizes on and off the vector width (the latter fall back),
// chunks of 1, 5 and 64 rows, sequences of 1, 9 and 70 rows in one step.
#include <cmath>
#include <random>
#include <vector>

#include "engine/kernels/reference/retention.h"
#include "gtest/gtest.h"
#include "tests/testing/isas.h"

namespace retain::kernels::cpu {
namespace {

using CpuRetention = testing::IsaTest;

struct Case {
  int dk, dv, heads;
  std::vector<int> row_begin = {0, 1, 10, 80};
  std::vector<float> q, k, v, log_decay, states;
};

// Decays drawn from [-0.5, -0.01] unless given.
Case MakeCase(int dk, int dv, std::mt19937& rng, std::vector<float> log_decay = {}) {
  std::uniform_real_distribution<float> u(-1, 1), decay(-0.5f, -0.01f);
  if (log_decay.empty()) log_decay = {decay(rng), decay(rng)};
  Case c{dk, dv, static_cast<int>(log_decay.size())};
  const int rows = c.row_begin.back();
  c.q.resize(static_cast<size_t>(rows) * c.heads * dk);
  c.k.resize(c.q.size());
  c.v.resize(static_cast<size_t>(rows) * c.heads * dv);
  c.states.resize(static_cast<size_t>(3) * c.heads * dk * dv);
  for (auto* x : {&c.q, &c.k, &c.v, &c.states}) for (float& f : *x) f = u(rng);
  c.log_decay = log_decay;
  return c;
}

// Runs every (sequence, head) of the case through `head` with its own copy of the states.
template <class Head>
void RunHeads(const Case& c, RetentionForm form, int chunk, Head head, std::vector<float>& o, std::vector<float>& states) {
  states = c.states;
  o.assign(c.v.size(), 0.0f);
  float* ptrs[3];
  for (int s = 0; s < 3; ++s) ptrs[s] = states.data() + static_cast<size_t>(s) * c.heads * c.dk * c.dv;
  RetentionArgs a;
  a.seqs = {3, c.row_begin.data()};
  a.n_head = c.heads, a.key_size = c.dk, a.value_size = c.dv;
  a.form = form, a.chunk_size = chunk;
  a.q = c.q.data(), a.k = c.k.data(), a.v = c.v.data(), a.log_decay = c.log_decay.data();
  a.states = ptrs, a.o = o.data();
  for (int s = 0; s < 3; ++s)
    for (int h = 0; h < c.heads; ++h) head(a, s, h);
}

void ExpectNear(const std::vector<float>& got, const std::vector<float>& want, double tol, const std::string& what) {
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1 + std::fabs(want[i]))) << what << " at " << i;
}

TEST_P(CpuRetention, EveryFormMatchesReference) {
  std::mt19937 rng(21);
  for (int dk : {7, 16, 64}) {
    for (int dv : {16, 48, 128, 24}) {
      const Case c = MakeCase(dk, dv, rng);
      std::vector<float> o_par, s_par;
      RunHeads(c, RetentionForm::kParallel, 64, reference::RetentionHead, o_par, s_par);
      for (auto [form, chunk] : {std::pair{RetentionForm::kRecurrent, 64}, {RetentionForm::kChunkwise, 1},
                                 {RetentionForm::kChunkwise, 5}, {RetentionForm::kChunkwise, 64}}) {
        const std::string what = "dk " + std::to_string(dk) + " dv " + std::to_string(dv) + " form " +
                                 std::to_string(static_cast<int>(form)) + " chunk " + std::to_string(chunk);
        std::vector<float> o_got, s_got, o_ref, s_ref;
        RunHeads(c, form, chunk, k().retention_head, o_got, s_got);
        RunHeads(c, form, chunk, reference::RetentionHead, o_ref, s_ref);
        ExpectNear(o_got, o_ref, 2e-5, what + " outputs vs same form");
        ExpectNear(s_got, s_ref, 2e-5, what + " states vs same form");
        ExpectNear(o_got, o_par, 2e-5, what + " outputs vs parallel");
        ExpectNear(s_got, s_par, 2e-5, what + " states vs parallel");
      }
    }
  }
}

// Decays from forgetting at once (-30) to practically never (-1e-7, TransNormerLLM's top layer).
TEST_P(CpuRetention, ExtremeDecaysMatchReference) {
  std::mt19937 rng(22);
  const Case c = MakeCase(32, 64, rng, {-30.0f, -0.7f, -0.03f, -1e-7f});
  for (auto [form, chunk] : {std::pair{RetentionForm::kRecurrent, 64}, {RetentionForm::kChunkwise, 7}, {RetentionForm::kChunkwise, 64}}) {
    const std::string what = "form " + std::to_string(static_cast<int>(form)) + " chunk " + std::to_string(chunk);
    std::vector<float> o_got, s_got, o_ref, s_ref;
    RunHeads(c, form, chunk, k().retention_head, o_got, s_got);
    RunHeads(c, form, chunk, reference::RetentionHead, o_ref, s_ref);
    ExpectNear(o_got, o_ref, 2e-5, what + " outputs");
    ExpectNear(s_got, s_ref, 2e-5, what + " states");
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, CpuRetention, ::testing::ValuesIn(testing::RunnableIsas()), testing::IsaTestName);

}  // namespace
}  // namespace retain::kernels::cpu
