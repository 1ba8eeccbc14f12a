// The serving core (engine/serving): step composition, the slot pool, and the engine on the
// shipped default model, checked against the model driven directly (Model::Forward + argmax), which
// is exact to its training record (default_model_test). No gRPC here.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "engine/serving/state_pool.h"
#include "engine/serving/step_planner.h"
#include "gtest/gtest.h"
#include "retain/engine/model.h"
#include "retain/engine/serving.h"
#include "tests/testing/direct_greedy.h"
#include "tests/testing/engine_requests.h"
#include "tests/testing/paths.h"

namespace retain::engine {
namespace {

using retain::testing::DefaultModelDir;
using retain::testing::DirectGreedy;
using retain::testing::Greedy;
using retain::testing::MakeEngine;
using retain::testing::RecordingSink;
using retain::testing::RunToEnd;

std::string ModelDir() { return DefaultModelDir(); }

std::vector<TokenId> Bytes(const std::string& s) { return retain::testing::ByteTokens(s); }

TEST(StepPlanner, DecodesFirstThenPromptChunksInArrivalOrderWithinBudget) {
  std::vector<PlanItem> plan;
  PlanStep({100, 1, 5, 1, 0}, 10, 1000, &plan);
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].index, 1);
  EXPECT_EQ(plan[0].tokens, 1);
  EXPECT_EQ(plan[1].index, 3);
  EXPECT_EQ(plan[1].tokens, 1);
  EXPECT_EQ(plan[2].index, 0);  // the oldest prompt takes the rest of the budget
  EXPECT_EQ(plan[2].tokens, 8);
  PlanStep({3, 4}, 10, 1000, &plan);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].tokens, 3);
  EXPECT_EQ(plan[1].tokens, 4);
  PlanStep({0, 0}, 10, 1000, &plan);
  EXPECT_TRUE(plan.empty());
  EXPECT_EQ(CountDecodes({100, 1, 5, 1, 0}), 2);
}

TEST(StepPlanner, PrefillBudgetCapsPromptTokensNotDecodes) {
  std::vector<PlanItem> plan;
  PlanStep({100, 1, 5, 1}, 50, 3, &plan);
  ASSERT_EQ(plan.size(), 3u);
  EXPECT_EQ(plan[0].tokens + plan[1].tokens, 2);
  EXPECT_EQ(plan[2].index, 0);
  EXPECT_EQ(plan[2].tokens, 3);
  PlanStep({100, 1, 1}, 50, 0, &plan);
  EXPECT_EQ(plan.size(), 2u);  // decodes only
}

// Step times follow a CPU-like cost: a fixed weight read plus a cost per row.
double StepSeconds(int decodes, int64_t prompt_tokens, double per_prompt_token) {
  return 0.010 + 0.0005 * decodes + per_prompt_token * prompt_tokens;
}

TEST(PrefillBudget, KeepsStepsBesideDecodesWithinTheSlowdown) {
  PrefillBudget b(1.5);
  const double per_token = 0.0002;
  // Without decodes a prompt takes the whole budget.
  EXPECT_EQ(b.Next(0, 512), 512);
  b.Observe(0, 512, StepSeconds(0, 512, per_token));
  // The first step with decodes and no decode-only measurement is decode-only.
  EXPECT_EQ(b.Next(32, 512), 0);
  b.Observe(32, 0, StepSeconds(32, 0, per_token));
  int64_t last = 0;
  for (int step = 0; step < 200; ++step) {
    const int64_t p = b.Next(32, 512);
    b.Observe(32, p, StepSeconds(32, p, per_token));
    if (step > 50) {
      EXPECT_LE(StepSeconds(32, p, per_token), 1.5 * StepSeconds(32, 0, per_token) * 1.05) << "step " << step << " prompt tokens " << p;
      if (p > 0) last = p;
    }
  }
  // (1.5 - 1) x 26 ms / 0.2 ms = 65 tokens a step.
  EXPECT_NEAR(static_cast<double>(last), 65, 3);
  // An expensive prompt token still advances by the floor.
  PrefillBudget slow(1.5);
  slow.Observe(32, 0, StepSeconds(32, 0, 0.01));
  slow.Observe(32, 16, StepSeconds(32, 16, 0.01));
  EXPECT_EQ(slow.Next(32, 512), PrefillBudget::kMinPrefillTokens);
}

TEST(PrefillBudget, GrowsTheChunkWhenDecodeStepsAreSlowAndRemeasuresThem) {
  PrefillBudget b(2.0);
  b.Observe(128, 0, 0.200);
  b.Observe(128, 100, 0.300);  // 1 ms per prompt token
  const int64_t p = b.Next(128, 512);
  EXPECT_GT(p, 100);
  EXPECT_LE(p, 200);
  EXPECT_EQ(b.Next(128, 140), 12);  // never past the step's budget
  // Steps that all carry prompts: after kRemeasureSteps of them one is decode-only again.
  for (int i = 0; i < PrefillBudget::kRemeasureSteps; ++i) b.Observe(128, 100, 0.300);
  EXPECT_EQ(b.Next(128, 512), 0);
  b.Observe(128, 0, 0.200);
  EXPECT_GT(b.Next(128, 512), 0);
  // 0 = no cap.
  PrefillBudget off(0);
  EXPECT_EQ(off.Next(32, 512), 480);
}

TEST(StatePool, BudgetSetsSlotCountAndScratchIsNeverHandedOut) {
  auto model = LoadModel(ModelDir(), ModelOptions{.num_threads = 1});
  ASSERT_TRUE(model.ok());
  const size_t b = (*model)->state_bytes();
  EXPECT_EQ(StatePool::Create(**model, b - 1).status().code(), absl::StatusCode::kResourceExhausted);
  auto pool = StatePool::Create(**model, 3 * b + b / 2);
  ASSERT_TRUE(pool.ok());
  EXPECT_EQ((*pool)->slots(), 3);
  std::vector<int> got;
  while (auto s = (*pool)->Acquire()) got.push_back(*s);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(std::count(got.begin(), got.end(), (*pool)->scratch()), 0);
  int taken = got[0];
  const int scratch = (*pool)->scratch();
  (*pool)->SwapScratch(&taken);
  EXPECT_EQ(taken, scratch);
  EXPECT_EQ((*pool)->scratch(), got[0]);
  EXPECT_EQ((*pool)->used(), 3);
}

// Pages of [p, p + bytes) that are resident, counting only whole pages inside the range.
int ResidentPages(const void* p, size_t bytes) {
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) / page * page;
  if (end <= begin) return 0;
  std::vector<unsigned char> vec((end - begin) / page);
  if (mincore(reinterpret_cast<void*>(begin), end - begin, vec.data()) != 0) return -1;
  return static_cast<int>(std::count_if(vec.begin(), vec.end(), [](unsigned char c) { return c & 1; }));
}

TEST(StatePool, AReleasedSlotGivesItsMemoryBack) {
  auto model = LoadModel(ModelDir(), ModelOptions{.num_threads = 1});
  ASSERT_TRUE(model.ok());
  const size_t b = (*model)->state_bytes();
  auto pool = StatePool::Create(**model, 4 * b);
  ASSERT_TRUE(pool.ok());
  auto s = (*pool)->Acquire();
  ASSERT_TRUE(s.has_value());
  void* slot = (*pool)->slot(*s);
  ASSERT_TRUE((*model)->InitState(slot).ok());
  const int whole_pages = ResidentPages(slot, b);
  ASSERT_GT(whole_pages, 0);  // the default model's state spans whole pages, all touched by InitState
  (*pool)->Release(*s);
  EXPECT_EQ(ResidentPages(slot, b), 0);
  // Taken again, it is a working slot.
  auto again = (*pool)->Acquire();
  ASSERT_EQ(again, s);
  ASSERT_TRUE((*model)->InitState(slot).ok());
  EXPECT_EQ(ResidentPages(slot, b), whole_pages);
}

TEST(ServingEngine, GreedyGenerateEqualsTheModelDrivenDirectly) {
  auto e = MakeEngine();
  const auto prompt = Bytes("And God said");
  auto sink = RunToEnd(*e, Greedy(prompt, 24));
  ASSERT_TRUE(sink->finished);
  EXPECT_EQ(sink->finished->reason, FinishReason::kLength);
  EXPECT_EQ(sink->tokens, DirectGreedy(prompt, 24));
  EXPECT_EQ(sink->finished->generated_tokens, 24);
  EXPECT_EQ(sink->finished->prompt_tokens, static_cast<int>(prompt.size()));
  std::string expect_text(sink->tokens.begin(), sink->tokens.end());
  EXPECT_EQ(sink->text + sink->finished->text_tail, expect_text);
}

TEST(ServingEngine, SessionContinuedOverThreeRequestsEqualsOneLongRequest) {
  auto e = MakeEngine();
  const auto prompt = Bytes("In the beginning");
  const auto whole = DirectGreedy(prompt, 30);
  auto s = e->CreateSession();
  ASSERT_TRUE(s.ok());
  std::vector<TokenId> got;
  auto a = RunToEnd(*e, Greedy(prompt, 10, s->id));
  got.insert(got.end(), a->tokens.begin(), a->tokens.end());
  EXPECT_EQ(a->finished->position, static_cast<int64_t>(prompt.size() + 10));
  for (int i = 0; i < 2; ++i) {
    auto b = RunToEnd(*e, Greedy({}, 10, s->id));  // empty prompt: continue from the pending token
    ASSERT_TRUE(b->finished) << b->error;
    EXPECT_EQ(b->started->position_before, static_cast<int64_t>(prompt.size() + 10 * (i + 1)));
    got.insert(got.end(), b->tokens.begin(), b->tokens.end());
  }
  EXPECT_EQ(got, whole);
  EXPECT_EQ(e->GetSession(s->id)->position, static_cast<int64_t>(prompt.size() + 30));
}

TEST(ServingEngine, ConcurrentStreamsEachEqualTheirSoloRunWhileALongPromptPrefills) {
  ServingOptions o;
  o.max_batch = 32;
  o.max_step_tokens = 64;  // the long prompt below takes many steps
  auto e = MakeEngine(o, nullptr, 2);
  std::vector<std::vector<TokenId>> prompts;
  for (int i = 0; i < 16; ++i) prompts.push_back(Bytes("Verse " + std::to_string(i) + ": and"));
  std::vector<std::vector<TokenId>> solo;
  for (const auto& p : prompts) solo.push_back(DirectGreedy(p, 16));
  std::string long_text;
  for (int i = 0; i < 40; ++i) long_text += "And the LORD spake unto Moses, saying. ";
  auto long_sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(e->Submit(Greedy(Bytes(long_text), 4), long_sink).ok());
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (const auto& p : prompts) {
    sinks.push_back(std::make_shared<RecordingSink>());
    ASSERT_TRUE(e->Submit(Greedy(p, 16), sinks.back()).ok());
  }
  for (size_t i = 0; i < sinks.size(); ++i) {
    sinks[i]->Wait();
    EXPECT_EQ(sinks[i]->tokens, solo[i]) << "stream " << i;
  }
  long_sink->Wait();
  EXPECT_EQ(long_sink->tokens, DirectGreedy(Bytes(long_text), 4));
}

// A step's rows are sampled in parallel on the model's threads: seeded sampling with penalties and
// logprobs, 12 streams at once on 2 threads, must give each stream what it gets alone on 1 thread.
TEST(ServingEngine, SeededSamplingInABatchEqualsEachStreamAloneOnOneThread) {
  auto sampled = [](int i) {
    GenerateInput in = Greedy(Bytes("Verse " + std::to_string(i) + ": and"), 24);
    in.sampling.temperature = 0.7f + 0.05f * static_cast<float>(i % 4);
    in.sampling.top_p = i % 3 == 0 ? 1.0f : 0.9f;
    in.sampling.top_k = i % 2 == 0 ? 0 : 40;
    in.sampling.presence_penalty = 0.3f;
    in.sampling.frequency_penalty = 0.2f;
    in.sampling.seed = 1000 + static_cast<uint64_t>(i);
    in.logprobs = 2;
    in.ignore_eos = true;
    return in;
  };
  auto solo_engine = MakeEngine({}, nullptr, 1);
  std::vector<std::shared_ptr<RecordingSink>> solo;
  for (int i = 0; i < 12; ++i) solo.push_back(RunToEnd(*solo_engine, sampled(i)));
  ServingOptions o;
  o.max_batch = 16;
  auto e = MakeEngine(o, nullptr, 2);
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < 12; ++i) {
    sinks.push_back(std::make_shared<RecordingSink>());
    ASSERT_TRUE(e->Submit(sampled(i), sinks.back()).ok());
  }
  for (int i = 0; i < 12; ++i) {
    sinks[i]->Wait();
    ASSERT_EQ(sinks[i]->tokens.size(), 24u) << "stream " << i;
    EXPECT_EQ(sinks[i]->tokens, solo[i]->tokens) << "stream " << i;
    for (size_t t = 0; t < sinks[i]->events.size() && t < solo[i]->events.size(); ++t) {
      EXPECT_EQ(sinks[i]->events[t].logprob, solo[i]->events[t].logprob) << "stream " << i << " token " << t;
      ASSERT_EQ(sinks[i]->events[t].top_logprobs.size(), 2u);
      EXPECT_EQ(sinks[i]->events[t].top_logprobs[0].id, solo[i]->events[t].top_logprobs[0].id);
    }
  }
}

// Counts steps, and for one request the steps between its tokens.
class StepCounter : public EngineObserver {
 public:
  void OnStep(int, int, int, double) override { steps.fetch_add(1); }
  std::atomic<int> steps{0};
};

class StepStampSink : public RecordingSink {
 public:
  explicit StepStampSink(StepCounter* c) : counter_(c) {}
  bool OnToken(TokenEvent&& e) override {
    stamps.push_back(counter_->steps.load());
    return RecordingSink::OnToken(std::move(e));
  }
  std::vector<int> stamps;

 private:
  StepCounter* counter_;
};

TEST(ServingEngine, ChunkedPrefillNeverStallsARunningDecodeBeyondOneStep) {
  StepCounter counter;
  ServingOptions o;
  o.max_batch = 4;
  o.max_step_tokens = 16;
  auto e = MakeEngine(o, &counter);
  auto decode = std::make_shared<StepStampSink>(&counter);
  ASSERT_TRUE(e->Submit(Greedy(Bytes("And"), 60), decode).ok());
  std::string long_text(600, 'a');
  auto prefill = std::make_shared<RecordingSink>();
  ASSERT_TRUE(e->Submit(Greedy(Bytes(long_text), 1), prefill).ok());
  decode->Wait();
  prefill->Wait();
  ASSERT_EQ(decode->stamps.size(), 60u);
  for (size_t i = 1; i < decode->stamps.size(); ++i)
    EXPECT_EQ(decode->stamps[i] - decode->stamps[i - 1], 1) << "token " << i;
  EXPECT_EQ(prefill->finished->prompt_tokens, 600);
}

TEST(ServingEngine, QueueBoundAnswersResourceExhausted) {
  ServingOptions o;
  o.max_batch = 1;
  o.max_step_tokens = 1;
  o.max_queue = 1;
  auto e = MakeEngine(o);
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  int refused = 0;
  for (int i = 0; i < 4; ++i) {
    sinks.push_back(std::make_shared<RecordingSink>());
    auto id = e->Submit(Greedy(Bytes(std::string(200, 'x')), 1), sinks.back());
    if (!id.ok()) {
      EXPECT_EQ(id.status().code(), absl::StatusCode::kResourceExhausted);
      EXPECT_NE(id.status().message().find("queue"), std::string::npos);
      ++refused;
      sinks.pop_back();
    }
  }
  EXPECT_GE(refused, 2);  // one running, one waiting at most
  for (auto& s : sinks) s->Wait();
}

TEST(ServingEngine, LeastRecentlyUsedIdleSessionIsEvictedAndSaysSo) {
  auto probe = LoadModel(ModelDir());
  ServingOptions o;
  o.state_budget_bytes = 2 * (*probe)->state_bytes();
  auto e = MakeEngine(o);
  auto a = e->CreateSession();
  auto b = e->CreateSession();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(e->GetSession(a->id).ok());
  RunToEnd(*e, Greedy(Bytes("x"), 1, a->id));  // a is now the most recently used
  auto c = e->CreateSession();
  ASSERT_TRUE(c.ok());
  auto gone = e->GetSession(b->id);
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(gone.status().message().find("evicted (lru)"), std::string::npos) << gone.status();
  EXPECT_TRUE(e->GetSession(a->id).ok());
  EXPECT_EQ(e->Stats().sessions, 2);
}

TEST(ServingEngine, SessionWithRequestInFlightIsNeverEvicted) {
  auto probe = LoadModel(ModelDir());
  ServingOptions o;
  o.state_budget_bytes = 1 * (*probe)->state_bytes();
  auto e = MakeEngine(o);
  auto a = e->CreateSession();
  ASSERT_TRUE(a.ok());
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(e->Submit(Greedy(Bytes(std::string(300, 'y')), 50, a->id), sink).ok());
  auto b = e->CreateSession();
  // Either the request already finished (a idle, evicted for b) or it is in flight (b refused).
  if (b.ok()) {
    sink->Wait();
    EXPECT_TRUE(sink->finished);
  } else {
    EXPECT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
    sink->Wait();
    EXPECT_EQ(sink->finished->generated_tokens, 50);
  }
}

TEST(ServingEngine, IdleSessionsPastTheTtlAreEvicted) {
  ServingOptions o;
  o.session_ttl = absl::Milliseconds(100);
  auto e = MakeEngine(o);
  auto a = e->CreateSession();
  ASSERT_TRUE(a.ok());
  absl::StatusOr<SessionInfo> got = *a;
  for (int i = 0; i < 100 && got.ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    got = e->GetSession(a->id);
  }
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(got.status().message().find("evicted (ttl)"), std::string::npos) << got.status();
}

TEST(ServingEngine, StreamThatGoesAwayLeavesTheSessionAtTheTokensDelivered) {
  auto e = MakeEngine();
  const auto prompt = Bytes("And it came to pass");
  const auto whole = DirectGreedy(prompt, 20);
  auto s = e->CreateSession();
  auto cut = RunToEnd(*e, Greedy(prompt, 20, s->id), /*accept=*/7);
  ASSERT_TRUE(cut->finished);
  EXPECT_EQ(cut->finished->reason, FinishReason::kCancelled);
  ASSERT_EQ(cut->tokens.size(), 7u);
  EXPECT_EQ(e->GetSession(s->id)->position, static_cast<int64_t>(prompt.size() + 7));
  auto rest = RunToEnd(*e, Greedy({}, 13, s->id));
  std::vector<TokenId> got = cut->tokens;
  got.insert(got.end(), rest->tokens.begin(), rest->tokens.end());
  EXPECT_EQ(got, whole);
}

TEST(ServingEngine, CancelLeavesAtTheNextStepAndKeepsTheSessionConsistent) {
  auto e = MakeEngine();
  const auto prompt = Bytes("Thus saith");
  const auto whole = DirectGreedy(prompt, 200);
  auto s = e->CreateSession();
  auto sink = std::make_shared<RecordingSink>();
  auto id = e->Submit(Greedy(prompt, 4000, s->id), sink);
  ASSERT_TRUE(id.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  e->Cancel(*id);
  sink->Wait();
  ASSERT_TRUE(sink->finished);
  EXPECT_EQ(sink->finished->reason, FinishReason::kCancelled);
  const size_t n = sink->tokens.size();
  EXPECT_EQ(sink->finished->position, static_cast<int64_t>(prompt.size() + n));
  EXPECT_EQ(e->GetSession(s->id)->position, static_cast<int64_t>(prompt.size() + n));
  if (n < 200) {
    auto rest = RunToEnd(*e, Greedy({}, static_cast<int>(200 - n), s->id));
    std::vector<TokenId> got = sink->tokens;
    got.insert(got.end(), rest->tokens.begin(), rest->tokens.end());
    EXPECT_EQ(got, whole);
  }
  EXPECT_EQ(e->Stats().running, 0);
}

TEST(ServingEngine, DeadlineEndsTheRequestWithTheSessionConsistent) {
  auto e = MakeEngine();
  auto s = e->CreateSession();
  GenerateInput in = Greedy(Bytes("Deadline"), 8000, s->id);
  in.deadline = absl::Now() + absl::Milliseconds(30);
  auto sink = RunToEnd(*e, std::move(in));
  ASSERT_TRUE(sink->finished);
  EXPECT_EQ(sink->finished->reason, FinishReason::kDeadline);
  EXPECT_EQ(e->GetSession(s->id)->position, static_cast<int64_t>(8 + sink->tokens.size()));
}

TEST(ServingEngine, ForkGivesIndependentContinuationsEachEqualToTheParents) {
  auto e = MakeEngine();
  const auto prompt = Bytes("Blessed are");
  const auto whole = DirectGreedy(prompt, 20);
  auto parent = e->CreateSession();
  auto first = RunToEnd(*e, Greedy(prompt, 10, parent->id));
  auto f1 = e->ForkSession(parent->id);
  auto f2 = e->ForkSession(parent->id);
  ASSERT_TRUE(f1.ok() && f2.ok());
  EXPECT_EQ(f1->position, parent->position + static_cast<int64_t>(prompt.size() + 10));
  auto a = RunToEnd(*e, Greedy({}, 10, f1->id));
  auto b = RunToEnd(*e, Greedy({}, 10, f2->id));
  auto c = RunToEnd(*e, Greedy({}, 10, parent->id));
  std::vector<TokenId> expect(whole.begin() + 10, whole.end());
  EXPECT_EQ(a->tokens, expect);
  EXPECT_EQ(b->tokens, expect);
  EXPECT_EQ(c->tokens, expect);
}

TEST(ServingEngine, ExportImportIntoAnotherEngineContinuesAsIfNeverMoved) {
  auto e1 = MakeEngine();
  auto e2 = MakeEngine();
  const auto prompt = Bytes("The earth was");
  const auto whole = DirectGreedy(prompt, 24);
  auto s = e1->CreateSession();
  auto first = RunToEnd(*e1, Greedy(prompt, 12, s->id));
  auto snap = e1->ExportSession(s->id);
  ASSERT_TRUE(snap.ok());
  EXPECT_TRUE(snap->pending.has_value());
  auto moved = e2->ImportSession(*snap);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->position, static_cast<int64_t>(prompt.size() + 12));
  auto rest = RunToEnd(*e2, Greedy({}, 12, moved->id));
  std::vector<TokenId> got = first->tokens;
  got.insert(got.end(), rest->tokens.begin(), rest->tokens.end());
  EXPECT_EQ(got, whole);
}

TEST(ServingEngine, DamagedImportIsRefusedAndTakesNoSlot) {
  auto probe = LoadModel(ModelDir());
  ServingOptions o;
  o.state_budget_bytes = 1 * (*probe)->state_bytes();
  auto e = MakeEngine(o);
  auto s = e->CreateSession();
  auto snap = e->ExportSession(s->id);
  ASSERT_TRUE(snap.ok());
  SessionSnapshot bad = *snap;
  bad.state.resize(bad.state.size() - 5);
  EXPECT_EQ(e->ImportSession(bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad = *snap;
  bad.pending = 100000;
  EXPECT_EQ(e->ImportSession(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(e->GetSession(s->id).ok());  // the only slot's session was not evicted for it
}

TEST(ServingEngine, PrefillOnlyRequestLeavesItsLastTokenPendingSoAnEmptyPromptContinues) {
  auto e = MakeEngine();
  const auto prompt = Bytes("And God said");
  auto s = e->CreateSession();
  auto pre = RunToEnd(*e, Greedy(prompt, 0, s->id));
  ASSERT_TRUE(pre->finished);
  EXPECT_EQ(pre->finished->position, static_cast<int64_t>(prompt.size()));
  EXPECT_EQ(pre->finished->prompt_tokens, static_cast<int>(prompt.size()));
  EXPECT_TRUE(pre->tokens.empty());
  auto gen = RunToEnd(*e, Greedy({}, 16, s->id));
  EXPECT_EQ(gen->tokens, DirectGreedy(prompt, 16));
}

TEST(ServingEngine, BadInputsNameTheFieldAndChangeNothing) {
  auto e = MakeEngine();
  auto s = e->CreateSession();
  auto sink = std::make_shared<RecordingSink>();
  auto code_of = [&](GenerateInput in) { return e->Submit(std::move(in), sink).status(); };
  auto expect = [&](absl::Status st, absl::StatusCode code, const std::string& field) {
    EXPECT_EQ(st.code(), code) << st;
    EXPECT_NE(st.message().find(field), std::string::npos) << st;
  };
  expect(code_of(Greedy({1, 300}, 4)), absl::StatusCode::kInvalidArgument, "prompt_tokens[1]");
  expect(code_of(Greedy({}, 4)), absl::StatusCode::kInvalidArgument, "prompt");
  expect(code_of(Greedy({}, 4, s->id)), absl::StatusCode::kFailedPrecondition, "pending");
  expect(code_of(Greedy({1}, 4, "nope")), absl::StatusCode::kNotFound, "nope");
  expect(code_of(Greedy({1}, 1 << 30)), absl::StatusCode::kInvalidArgument, "max_tokens");
  GenerateInput nan = Greedy({1}, 4);
  nan.sampling.temperature = std::nanf("");
  expect(code_of(nan), absl::StatusCode::kInvalidArgument, "temperature");
  GenerateInput lp = Greedy({1}, 4);
  lp.logprobs = 21;
  expect(code_of(lp), absl::StatusCode::kInvalidArgument, "logprobs");
  GenerateInput st = Greedy({1}, 4);
  st.stop = {""};
  expect(code_of(st), absl::StatusCode::kInvalidArgument, "stop[0]");
  GenerateInput sid = Greedy({1}, 4);
  sid.stop_token_ids = {-1};
  expect(code_of(sid), absl::StatusCode::kInvalidArgument, "stop_token_ids[0]");
  EXPECT_EQ(e->GetSession(s->id)->position, 0);
  EXPECT_EQ(e->Stats().running + e->Stats().waiting, 0);
  // Busy session: a second request is refused while the first runs.
  auto long_sink = std::make_shared<RecordingSink>();
  auto first = e->Submit(Greedy(Bytes("x"), 4000, s->id), long_sink);
  ASSERT_TRUE(first.ok());
  expect(code_of(Greedy({1}, 4, s->id)), absl::StatusCode::kFailedPrecondition, "in flight");
  e->Cancel(*first);
  long_sink->Wait();
}

TEST(ServingEngine, StopStringEndsTheStreamWithoutItsTextAndTheSessionKeepsItsTokens) {
  auto e = MakeEngine();
  const auto prompt = Bytes("And God said");
  const auto whole = DirectGreedy(prompt, 40);
  const std::string text(whole.begin(), whole.end());
  // A stop string taken from the middle of the greedy continuation.
  const std::string stop = text.substr(10, 3);
  const size_t at = text.find(stop);
  auto s = e->CreateSession();
  GenerateInput in = Greedy(prompt, 40, s->id);
  in.stop = {stop};
  auto sink = RunToEnd(*e, std::move(in));
  ASSERT_TRUE(sink->finished);
  EXPECT_EQ(sink->finished->reason, FinishReason::kStop);
  EXPECT_EQ(sink->finished->stop, stop);
  EXPECT_EQ(sink->text, text.substr(0, at));
  EXPECT_EQ(sink->tokens.size(), at + stop.size());
  EXPECT_EQ(e->GetSession(s->id)->position, static_cast<int64_t>(prompt.size() + at + stop.size()));
}

TEST(ServingEngine, DrainFinishesRunningWorkAndRefusesNewRequests) {
  auto e = MakeEngine();
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(e->Submit(Greedy(Bytes("x"), 5), sink).ok());
  e->BeginDrain();
  EXPECT_EQ(e->Submit(Greedy(Bytes("y"), 5), std::make_shared<RecordingSink>()).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(e->WaitIdle(absl::Seconds(30)));
  sink->Wait();
  EXPECT_EQ(sink->finished->generated_tokens, 5);
}

TEST(ServingEngine, CancelAllEndsEveryRequestAsCancelled) {
  auto e = MakeEngine();
  std::vector<std::shared_ptr<RecordingSink>> sinks;
  for (int i = 0; i < 3; ++i) {
    sinks.push_back(std::make_shared<RecordingSink>());
    ASSERT_TRUE(e->Submit(Greedy(Bytes("z"), 8000), sinks.back()).ok());
  }
  e->CancelAll();
  for (auto& s : sinks) {
    s->Wait();
    EXPECT_EQ(s->finished->reason, FinishReason::kCancelled);
  }
  EXPECT_TRUE(e->WaitIdle(absl::Seconds(5)));
}

}  // namespace
}  // namespace retain::engine
