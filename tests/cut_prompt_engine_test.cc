// A request cut while the engine is still prefilling its prompt (cancel, which StopGeneration and
// a client's disconnect are; a failed step) leaves its session at exactly the prompt tokens fed,
// and an empty prompt continues it, as after any other request end (EOS, a stop token). Truth: a
// fresh session fed exactly the consumed tokens in one request, then continued, and the model
// driven directly (DirectGreedy). The cut is deterministic: prompts are fed 8 tokens a step
// (max_step_tokens) and the observer cancels after a given model step.
#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "retain/engine/serving.h"
#include "tests/testing/direct_greedy.h"
#include "tests/testing/engine_requests.h"
#include "tests/testing/paths.h"

namespace retain::engine {
namespace {

using retain::testing::DirectGreedy;
using retain::testing::Greedy;
using retain::testing::MakeEngine;
using retain::testing::RecordingSink;
using retain::testing::RunToEnd;

constexpr int kChunk = 8;

std::vector<TokenId> Bytes(const std::string& s) { return retain::testing::ByteTokens(s); }
std::vector<TokenId> Cat(std::vector<TokenId> a, const std::vector<TokenId>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
std::vector<TokenId> First(const std::vector<TokenId>& v, size_t n) { return {v.begin(), v.begin() + n}; }

ServingOptions Chunked(int64_t fail_step = 0) {
  ServingOptions o;
  o.max_batch = 2;
  o.max_step_tokens = kChunk;  // every prompt chunk is at most 8 tokens
  o.checkpoint_interval = 0;   // nothing else cuts a chunk shorter
  o.test_fail_step = fail_step;
  return o;
}

// Cancels every request after the `at`-th model step from when it is armed. OnStep runs on the
// step thread after the model ran and before the step's results are applied, with no lock held,
// so the cancel lands between that step and the next: exactly that step's tokens are consumed.
class CancelAfterStep : public EngineObserver {
 public:
  void Arm(Engine* e, int at) {
    engine_ = e;
    left_.store(at);
  }
  void OnStep(int, int, int, double) override {
    if (left_.load() > 0 && left_.fetch_sub(1) == 1) engine_->CancelAll();
  }

 private:
  Engine* engine_ = nullptr;
  std::atomic<int> left_{0};
};

// An engine feeding prompts 8 tokens a step, whose requests can be cut after a given step.
struct CutEngine {
  CancelAfterStep cut;
  std::unique_ptr<Engine> e = MakeEngine(Chunked(), &cut);

  // Runs `in` on a session (a new one when in.session_id is empty), cancelled after `steps`
  // model steps; returns the session id and what the request streamed.
  std::pair<std::string, std::shared_ptr<RecordingSink>> Run(GenerateInput in, int steps) {
    if (in.session_id.empty()) {
      auto s = e->CreateSession();
      EXPECT_TRUE(s.ok()) << s.status();
      in.session_id = s->id;
    }
    std::string id = in.session_id;
    cut.Arm(e.get(), steps);
    auto sink = RunToEnd(*e, std::move(in));
    EXPECT_TRUE(sink->finished);
    if (sink->finished) EXPECT_EQ(sink->finished->reason, FinishReason::kCancelled);
    return {id, sink};
  }
  int64_t Position(const std::string& id) { return e->GetSession(id)->position; }
};

// The greedy continuation of a fresh session fed `consumed` as one prompt.
std::vector<TokenId> FreshContinuation(Engine& e, const std::vector<TokenId>& consumed, int n) {
  auto s = e.CreateSession();
  EXPECT_TRUE(s.ok()) << s.status();
  auto got = RunToEnd(e, Greedy(consumed, n, s->id));
  EXPECT_TRUE(got->finished);
  EXPECT_TRUE(e.DeleteSession(s->id).ok());
  return got->tokens;
}

TEST(CutPrompt, CancelAfterTheFirstChunkLeavesItsTokensAndAnEmptyPromptContinuesExactly) {
  CutEngine c;
  const auto prompt = Bytes("In the beginning God created the heaven");  // 39 tokens: 5 chunks
  auto [id, sink] = c.Run(Greedy(prompt, 10), 1);
  ASSERT_TRUE(sink->finished);
  EXPECT_TRUE(sink->tokens.empty());
  EXPECT_EQ(sink->finished->prompt_tokens, kChunk);
  EXPECT_EQ(sink->finished->position, kChunk);
  EXPECT_EQ(c.Position(id), kChunk);

  const auto consumed = First(prompt, kChunk);
  auto rest = RunToEnd(*c.e, Greedy({}, 12, id));
  ASSERT_TRUE(rest->finished) << rest->error;
  EXPECT_EQ(rest->tokens, FreshContinuation(*c.e, consumed, 12));
  EXPECT_EQ(rest->tokens, DirectGreedy(consumed, 12));
  EXPECT_EQ(c.Position(id), kChunk + 12);
}

TEST(CutPrompt, ACutAfterThePendingTokenAndPartOfThePromptContinuesFromThere) {
  CutEngine c;
  const auto first = Bytes("And God said");
  auto s = c.e->CreateSession();
  auto turn = RunToEnd(*c.e, Greedy(first, 3, s->id));  // its third token stays pending
  ASSERT_EQ(turn->tokens.size(), 3u);
  const int64_t before = c.Position(s->id);
  ASSERT_EQ(before, static_cast<int64_t>(first.size() + 3));
  const auto second = Bytes(", Let there be light: and there was light.");
  // Two chunks: the pending token and 7 prompt tokens, then 8 more.
  auto [id, sink] = c.Run(Greedy(second, 10, s->id), 2);
  ASSERT_TRUE(sink->finished);
  const size_t fed = 2 * kChunk - 1;  // prompt tokens consumed (the pending one was counted before)
  EXPECT_EQ(sink->finished->prompt_tokens, static_cast<int>(fed));
  EXPECT_EQ(c.Position(id), before + static_cast<int64_t>(fed));

  const auto consumed = Cat(Cat(first, turn->tokens), First(second, fed));
  auto rest = RunToEnd(*c.e, Greedy({}, 12, id));
  EXPECT_EQ(rest->tokens, FreshContinuation(*c.e, consumed, 12));
  EXPECT_EQ(rest->tokens, DirectGreedy(consumed, 12));
}

TEST(CutPrompt, ACutPrefillOnlyRequestContinuesFromItsLastChunk) {
  CutEngine c;
  const auto prompt = Bytes("Blessed are the poor in spirit");
  auto [id, sink] = c.Run(Greedy(prompt, 0), 1);  // max_tokens 0: CreateSession's prefix
  EXPECT_EQ(c.Position(id), kChunk);
  auto rest = RunToEnd(*c.e, Greedy({}, 10, id));
  EXPECT_EQ(rest->tokens, DirectGreedy(First(prompt, kChunk), 10));
}

TEST(CutPrompt, AFailedStepInsideThePromptLeavesTheChunksBeforeItAndAnEmptyPromptContinues) {
  auto e = MakeEngine(Chunked(/*fail_step=*/3));
  const auto prompt = Bytes("The LORD is my shepherd; I shall not want.");
  auto s = e->CreateSession();
  auto sink = RunToEnd(*e, Greedy(prompt, 10, s->id));
  EXPECT_FALSE(sink->finished);
  EXPECT_EQ(sink->error.code(), absl::StatusCode::kInternal) << sink->error;
  EXPECT_EQ(e->GetSession(s->id)->position, 2 * kChunk);
  auto rest = RunToEnd(*e, Greedy({}, 10, s->id));
  EXPECT_EQ(rest->tokens, DirectGreedy(First(prompt, 2 * kChunk), 10));
}

TEST(CutPrompt, ACutSessionExportedForkedAndImportedContinuesAsItWould) {
  CutEngine c;
  Engine* e = c.e.get();
  auto other = MakeEngine(Chunked());
  const auto prompt = Bytes("Now the serpent was more subtil");
  const std::string id = c.Run(Greedy(prompt, 10), 2).first;
  ASSERT_EQ(c.Position(id), 2 * kChunk);
  const auto expect = DirectGreedy(First(prompt, 2 * kChunk), 10);

  auto snap = e->ExportSession(id);
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_FALSE(snap->pending.has_value());
  EXPECT_EQ(snap->last_logits.size(), static_cast<size_t>(e->model().config().vocab_size));
  auto moved = other->ImportSession(*snap);
  ASSERT_TRUE(moved.ok()) << moved.status();
  auto fork = e->ForkSession(id);
  ASSERT_TRUE(fork.ok()) << fork.status();
  EXPECT_EQ(RunToEnd(*other, Greedy({}, 10, moved->id))->tokens, expect);
  EXPECT_EQ(RunToEnd(*e, Greedy({}, 10, fork->id))->tokens, expect);
  EXPECT_EQ(RunToEnd(*e, Greedy({}, 10, id))->tokens, expect);
}

TEST(CutPrompt, AnImportedCutSessionRewoundToItsOwnPositionStillContinues) {
  CutEngine c;
  auto other = MakeEngine(Chunked());
  const auto prompt = Bytes("Honour thy father and thy mother");
  const std::string id = c.Run(Greedy(prompt, 10), 1).first;
  auto snap = c.e->ExportSession(id);
  ASSERT_TRUE(snap.ok()) << snap.status();
  auto moved = other->ImportSession(*snap);
  ASSERT_TRUE(moved.ok()) << moved.status();
  // Nothing before the import is known: the rewind restores the import's own checkpoint and
  // re-feeds nothing, so the logits the snapshot carried are what continues it.
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(other->RewindSession(moved->id, kChunk, absl::InfiniteFuture(), sink).ok());
  sink->Wait();
  ASSERT_TRUE(sink->finished) << sink->error;
  EXPECT_EQ(other->GetSession(moved->id)->position, kChunk);
  EXPECT_EQ(RunToEnd(*other, Greedy({}, 10, moved->id))->tokens, DirectGreedy(First(prompt, kChunk), 10));
}

TEST(CutPrompt, ARequestCutBeforeItFedAnythingLeavesTheStoredLogitsAsTheyWere) {
  CutEngine c;
  const auto prompt = Bytes("Thou shalt not");
  const std::string id = c.Run(Greedy(prompt, 10), 1).first;  // the session holds logits, no pending token
  // Past its deadline when the step thread first sees it: it leaves before feeding anything.
  GenerateInput in = Greedy(Bytes("kill"), 10, id);
  in.deadline = absl::Now() - absl::Seconds(1);
  auto late = RunToEnd(*c.e, std::move(in));
  ASSERT_TRUE(late->finished);
  EXPECT_EQ(late->finished->reason, FinishReason::kDeadline);
  EXPECT_EQ(c.Position(id), kChunk);
  EXPECT_EQ(RunToEnd(*c.e, Greedy({}, 10, id))->tokens, DirectGreedy(First(prompt, kChunk), 10));
}

// Not cuts, but request ends that left no pending token before either: the token drawn is not
// sent, and an empty prompt draws again from the same logits.
TEST(CutPrompt, AfterEosOrAStopTokenAnEmptyPromptDrawsFromTheSameLogits) {
  const auto prompt = Bytes("And the evening and the morning were");
  const auto whole = DirectGreedy(prompt, 16);
  const TokenId stop = whole[5];
  const size_t at = static_cast<size_t>(std::find(whole.begin(), whole.end(), stop) - whole.begin());
  std::vector<TokenId> after(whole.begin() + static_cast<std::ptrdiff_t>(at), whole.begin() + static_cast<std::ptrdiff_t>(at) + 8);

  auto e = MakeEngine(Chunked());
  auto s = e->CreateSession();
  GenerateInput in = Greedy(prompt, 16, s->id);
  in.stop_token_ids = {stop};
  auto stopped = RunToEnd(*e, std::move(in));
  ASSERT_TRUE(stopped->finished);
  EXPECT_EQ(stopped->finished->reason, FinishReason::kStop);
  EXPECT_EQ(stopped->tokens.size(), at);
  EXPECT_EQ(RunToEnd(*e, Greedy({}, 8, s->id))->tokens, after);

  ServingOptions o = Chunked();
  o.eos_token_id = stop;
  auto eos_engine = MakeEngine(o);
  auto t = eos_engine->CreateSession();
  auto ended = RunToEnd(*eos_engine, Greedy(prompt, 16, t->id));
  ASSERT_TRUE(ended->finished);
  EXPECT_EQ(ended->finished->reason, FinishReason::kEos);
  EXPECT_EQ(ended->tokens.size(), at);
  // Greedy again: the same EOS, nothing consumed; with ignore_eos the continuation goes on.
  auto again = RunToEnd(*eos_engine, Greedy({}, 8, t->id));
  ASSERT_TRUE(again->finished);
  EXPECT_EQ(again->finished->reason, FinishReason::kEos);
  EXPECT_TRUE(again->tokens.empty());
  GenerateInput past = Greedy({}, 8, t->id);
  past.ignore_eos = true;
  EXPECT_EQ(RunToEnd(*eos_engine, std::move(past))->tokens, after);
}

TEST(CutPrompt, ASessionThatConsumedNothingIsStillRefusedAnEmptyPrompt) {
  auto e = MakeEngine(Chunked());
  auto s = e->CreateSession();
  auto st = e->Submit(Greedy({}, 4, s->id), std::make_shared<RecordingSink>()).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("position 0"), std::string::npos) << st;
}

}  // namespace
}  // namespace retain::engine
