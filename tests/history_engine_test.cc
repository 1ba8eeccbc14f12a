// Checkpoints, rewind and the prefix-state cache (engine/serving/checkpoints.*, prefix_cache.*)
// in the serving engine on the shipped default model (RWKV-7), against independent truth: the
// model driven directly (DirectGreedy) and the state bytes of a session that was simply
// prefilled with the same tokens. No gRPC here (tests/python/test_history.py covers the RPCs).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/serving/checkpoints.h"
#include "engine/serving/prefix_cache.h"
#include "engine/tools/conformance_case.h"
#include "gtest/gtest.h"
#include "retain/engine/serving.h"
#include "tests/testing/direct_greedy.h"
#include "tests/testing/engine_requests.h"
#include "tests/testing/model_files.h"
#include "tests/testing/paths.h"

namespace retain::engine {
namespace {

using retain::testing::DirectGreedy;
using retain::testing::Greedy;
using retain::testing::MakeEngine;
using retain::testing::RecordingSink;
using retain::testing::RunToEnd;

std::vector<TokenId> Bytes(const std::string& s) { return retain::testing::ByteTokens(s); }

std::vector<TokenId> First(const std::vector<TokenId>& v, int64_t n) { return {v.begin(), v.begin() + n}; }

// Rewinds `id` to `position` and waits for its re-prefill.
absl::Status Rewind(Engine& e, const std::string& id, int64_t position) {
  auto sink = std::make_shared<RecordingSink>();
  auto rid = e.RewindSession(id, position, absl::InfiniteFuture(), sink);
  if (!rid.ok()) return rid.status();
  sink->Wait();
  if (!sink->error.ok()) return sink->error;
  EXPECT_EQ(sink->finished->reason, FinishReason::kLength);
  return absl::OkStatus();
}

// A session prefilled with `tokens` by one prefill-only request: what a rewound one must equal.
std::string PrefilledSession(Engine& e, const std::vector<TokenId>& tokens) {
  auto s = e.CreateSession();
  EXPECT_TRUE(s.ok());
  auto sink = RunToEnd(e, Greedy(tokens, 0, s->id));
  EXPECT_TRUE(sink->error.ok()) << sink->error;
  return s->id;
}

struct Conversation {
  std::string id;
  std::vector<TokenId> tokens;       // everything the session consumed, in order
  std::vector<int64_t> turn_ends;    // the position after each turn
  std::vector<int64_t> prompt_ends;  // the position after each turn's user prompt
};

// Six turns of prompt + greedy reply on one session.
Conversation SixTurns(Engine& e) {
  Conversation c;
  auto s = e.CreateSession();
  EXPECT_TRUE(s.ok());
  c.id = s->id;
  const char* prompts[] = {"In the beginning ", "And God said, ", "Let there be ", "and there was ",
                           "And the evening ", "and the morning "};
  for (const char* p : prompts) {
    const std::vector<TokenId> prompt = Bytes(p);
    c.tokens.insert(c.tokens.end(), prompt.begin(), prompt.end());
    c.prompt_ends.push_back(static_cast<int64_t>(c.tokens.size()));
    auto sink = RunToEnd(e, Greedy(prompt, 12, c.id));
    EXPECT_TRUE(sink->error.ok()) << sink->error;
    c.tokens.insert(c.tokens.end(), sink->tokens.begin(), sink->tokens.end());
    c.turn_ends.push_back(static_cast<int64_t>(c.tokens.size()));
    EXPECT_EQ(sink->finished->position, c.turn_ends.back());
  }
  return c;
}

TEST(Rewind, EveryTurnBoundaryAndPositionsBetweenContinueAsAFreshSessionBitForBit) {
  auto e = MakeEngine();
  Conversation c = SixTurns(*e);
  auto info = e->GetSession(c.id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->checkpoints.size(), 6u) << "one checkpoint per turn";
  EXPECT_EQ(info->history_start, 0);

  std::vector<int64_t> targets = c.turn_ends;
  targets.insert(targets.end(), c.prompt_ends.begin(), c.prompt_ends.end());
  targets.push_back(1);
  targets.push_back(c.turn_ends[2] + 5);  // between checkpoints
  for (int64_t p : targets) {
    SCOPED_TRACE(p);
    // Each target on a fork, so the original keeps all its history.
    auto fork = e->ForkSession(c.id);
    ASSERT_TRUE(fork.ok()) << fork.status();
    ASSERT_TRUE(Rewind(*e, fork->id, p).ok());
    auto after = e->GetSession(fork->id);
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(after->position, p);
    // The state bytes equal those of a session simply prefilled with the same p tokens.
    const std::string fresh = PrefilledSession(*e, First(c.tokens, p));
    auto a = e->ExportSession(fork->id);
    auto b = e->ExportSession(fresh);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->position, b->position);
    EXPECT_EQ(a->pending, b->pending);
    EXPECT_TRUE(a->state == b->state) << "rewound state differs from a fresh prefill";
    // And greedy continuation equals the model driven directly.
    auto cont = RunToEnd(*e, Greedy({}, 8, fork->id));
    ASSERT_TRUE(cont->error.ok()) << cont->error;
    EXPECT_EQ(cont->tokens, DirectGreedy(First(c.tokens, p), 8));
    ASSERT_TRUE(e->DeleteSession(fork->id).ok());
    ASSERT_TRUE(e->DeleteSession(fresh).ok());
  }
}

TEST(Rewind, RegenerateWithAnotherSeedLeavesOtherSessionsUntouched) {
  auto e = MakeEngine();
  Conversation c = SixTurns(*e);
  auto other = e->CreateSession();
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(RunToEnd(*e, Greedy(Bytes("And the earth "), 6, other->id))->error.ok());
  auto other_before = e->ExportSession(other->id);
  ASSERT_TRUE(other_before.ok());

  ASSERT_TRUE(Rewind(*e, c.id, c.prompt_ends.back()).ok());
  GenerateInput in = Greedy({}, 10, c.id);
  in.sampling.temperature = 1.0f;
  in.sampling.seed = 7;
  auto regen = RunToEnd(*e, in);
  ASSERT_TRUE(regen->error.ok()) << regen->error;
  EXPECT_EQ(regen->finished->position, c.prompt_ends.back() + 10);
  // The same seed again from the same point gives the same tokens: the rewind is exact.
  ASSERT_TRUE(Rewind(*e, c.id, c.prompt_ends.back()).ok());
  auto again = RunToEnd(*e, in);
  EXPECT_EQ(again->tokens, regen->tokens);

  auto other_after = e->ExportSession(other->id);
  ASSERT_TRUE(other_after.ok());
  EXPECT_TRUE(other_after->state == other_before->state);
  EXPECT_EQ(other_after->position, other_before->position);
}

TEST(Rewind, EditAnEarlierTurnReplacesTheHistoryAfterIt) {
  auto e = MakeEngine();
  Conversation c = SixTurns(*e);
  ASSERT_TRUE(Rewind(*e, c.id, c.turn_ends[1]).ok());
  const std::vector<TokenId> edit = Bytes("And Moses said, ");
  auto r = RunToEnd(*e, Greedy(edit, 10, c.id));
  ASSERT_TRUE(r->error.ok());
  std::vector<TokenId> prompt = First(c.tokens, c.turn_ends[1]);
  prompt.insert(prompt.end(), edit.begin(), edit.end());
  EXPECT_EQ(r->tokens, DirectGreedy(prompt, 10));
  auto info = e->GetSession(c.id);
  ASSERT_TRUE(info.ok());
  for (int64_t cp : info->checkpoints) EXPECT_LE(cp, info->position);
  // No checkpoint of the replaced turns survives: positions after the edit point are new ones.
  EXPECT_TRUE(std::none_of(info->checkpoints.begin(), info->checkpoints.end(),
                           [&](int64_t p) { return p == c.turn_ends[3] - 1; }));
}

TEST(Rewind, BadPositionsAndBusySessionsAreRefusedClearly) {
  auto e = MakeEngine();
  Conversation c = SixTurns(*e);
  auto sink = std::make_shared<RecordingSink>();
  auto past = e->RewindSession(c.id, c.turn_ends.back() + 1, absl::InfiniteFuture(), sink);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(past.status().message().find("position"), std::string::npos);
  EXPECT_EQ(e->RewindSession(c.id, -1, absl::InfiniteFuture(), sink).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e->RewindSession("nope", 0, absl::InfiniteFuture(), sink).status().code(), absl::StatusCode::kNotFound);
}

TEST(Rewind, BeforeTheOldestCheckpointWithoutItsTokensIsFailedPrecondition) {
  auto e = MakeEngine();
  Conversation c = SixTurns(*e);
  auto snap = e->ExportSession(c.id);
  ASSERT_TRUE(snap.ok());
  auto imported = e->ImportSession(*snap);  // knows nothing before its import position
  ASSERT_TRUE(imported.ok()) << imported.status();
  auto more = RunToEnd(*e, Greedy(Bytes(" And"), 6, imported->id));
  ASSERT_TRUE(more->error.ok());
  auto sink = std::make_shared<RecordingSink>();
  auto st = e->RewindSession(imported->id, c.turn_ends[2], absl::InfiniteFuture(), sink);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(st.status().message().find("no longer known"), std::string::npos) << st.status();
  // Its import position is itself an exact start.
  ASSERT_TRUE(Rewind(*e, imported->id, c.turn_ends.back()).ok());
  auto cont = RunToEnd(*e, Greedy({}, 6, imported->id));
  EXPECT_EQ(cont->tokens, DirectGreedy(c.tokens, 6));
}

TEST(Rewind, PastTheHistoryLimitOnlyCheckpointsAreStartsAndPosition0IsGivenUp) {
  ServingOptions o;
  o.max_history_tokens = 40;
  auto e = MakeEngine(o);
  Conversation c = SixTurns(*e);  // 6 x (prompt + 12) tokens, well over 40
  auto info = e->GetSession(c.id);
  ASSERT_TRUE(info.ok());
  EXPECT_GT(info->history_start, 0);
  auto sink = std::make_shared<RecordingSink>();
  EXPECT_EQ(e->RewindSession(c.id, 1, absl::InfiniteFuture(), sink).status().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(Rewind(*e, c.id, c.turn_ends[4]).ok());
  auto cont = RunToEnd(*e, Greedy({}, 6, c.id));
  EXPECT_EQ(cont->tokens, DirectGreedy(First(c.tokens, c.turn_ends[4]), 6));
}

TEST(Rewind, ForkAtAPositionBranchesWithoutTouchingTheSource) {
  auto e = MakeEngine();
  Conversation c = SixTurns(*e);
  auto fork = e->ForkSession(c.id);
  ASSERT_TRUE(fork.ok());
  ASSERT_TRUE(Rewind(*e, fork->id, c.turn_ends[2]).ok());
  auto src = e->GetSession(c.id);
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(src->position, c.turn_ends.back());
  auto cont = RunToEnd(*e, Greedy(Bytes(" Amen"), 6, c.id));
  std::vector<TokenId> full = c.tokens;
  for (TokenId t : Bytes(" Amen")) full.push_back(t);
  EXPECT_EQ(cont->tokens, DirectGreedy(full, 6));
}

TEST(Checkpoints, TheGlobalBudgetDropsTheOldestFirstAndCountsIt) {
  auto probe = MakeEngine();
  auto s = probe->CreateSession();
  auto one = probe->ExportSession(s->id);
  ASSERT_TRUE(one.ok());
  ServingOptions o;
  o.checkpoint_budget_bytes = one->state.size() * 3;  // three checkpoints in all
  auto e = MakeEngine(o);
  auto a = e->CreateSession();
  auto b = e->CreateSession();
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(RunToEnd(*e, Greedy(Bytes("In the "), 4, a->id))->error.ok());
  ASSERT_TRUE(RunToEnd(*e, Greedy(Bytes("And the "), 4, b->id))->error.ok());
  ASSERT_TRUE(RunToEnd(*e, Greedy(Bytes("beginning "), 4, a->id))->error.ok());
  EXPECT_EQ(e->Stats().checkpoints, 3);
  EXPECT_EQ(e->Stats().checkpoints_dropped, 0u);
  ASSERT_TRUE(RunToEnd(*e, Greedy(Bytes("earth "), 4, b->id))->error.ok());
  EngineStats st = e->Stats();
  EXPECT_EQ(st.checkpoints, 3);
  EXPECT_EQ(st.checkpoints_dropped, 1u);
  EXPECT_LE(st.checkpoint_bytes, o.checkpoint_budget_bytes);
  auto ia = e->GetSession(a->id);
  ASSERT_TRUE(ia.ok());
  EXPECT_EQ(ia->checkpoints, std::vector<int64_t>{ia->position - 1}) << "a's first checkpoint was the oldest";
  // a still rewinds before it: its tokens reach back to position 0.
  ASSERT_TRUE(Rewind(*e, a->id, 3).ok());
  auto cont = RunToEnd(*e, Greedy({}, 5, a->id));
  EXPECT_EQ(cont->tokens, DirectGreedy(Bytes("In "), 5));
}

TEST(Checkpoints, PerSessionCountAndIntervalCheckpointsInsideALongPrompt) {
  ServingOptions o;
  o.checkpoint_interval = 16;
  o.max_checkpoints_per_session = 3;
  auto e = MakeEngine(o);
  auto s = e->CreateSession();
  const std::vector<TokenId> prompt = Bytes("In the beginning God created the heaven and the earth. And the earth was");
  ASSERT_TRUE(RunToEnd(*e, Greedy(prompt, 3, s->id))->error.ok());
  auto info = e->GetSession(s->id);
  ASSERT_TRUE(info.ok());
  // 72 prompt tokens: 16, 32, 48, 64 inside it and the turn's end, the newest three kept.
  EXPECT_EQ(info->checkpoints, (std::vector<int64_t>{48, 64, info->position - 1}));
  ASSERT_TRUE(Rewind(*e, s->id, 50).ok());
  auto cont = RunToEnd(*e, Greedy({}, 6, s->id));
  EXPECT_EQ(cont->tokens, DirectGreedy(First(prompt, 50), 6));
}

TEST(CheckpointStore, StartForPrefersAStartBeforeTheTargetAndSaysWhyItHasNone) {
  CheckpointStore store(1000, 4, 100);
  SessionHistory h;
  h.ResetAt(10);
  for (int i = 0; i < 10; ++i) h.Append(i);
  store.Add(&h, 10, "s10");
  store.Add(&h, 15, "s15");
  auto at15 = h.StartFor(15);
  ASSERT_TRUE(at15.ok());
  EXPECT_EQ(at15->position, 10) << "15 itself has no pending token to give";
  auto at16 = h.StartFor(16);
  ASSERT_TRUE(at16.ok());
  EXPECT_EQ(at16->position, 15);
  EXPECT_EQ(*at16->state, "s15");
  auto at10 = h.StartFor(10);
  ASSERT_TRUE(at10.ok());
  EXPECT_EQ(at10->position, 10) << "nothing before 10 is known: the exact checkpoint serves";
  EXPECT_EQ(h.StartFor(9).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(h.StartFor(21).status().code(), absl::StatusCode::kOutOfRange);
  store.Forget(&h);
  EXPECT_EQ(store.bytes(), 0u);
  EXPECT_EQ(store.count(), 0u);
}

uint64_t Collide(const std::string&, absl::Span<const TokenId>) { return 42; }

TEST(PrefixCache, ForcedHashCollisionsNeverServeAnotherPrefixState) {
  PrefixCache cache(1 << 20);
  cache.SetHashForTesting(&Collide);
  const std::vector<TokenId> a = {1, 2, 3, 4}, b = {1, 2, 3, 5}, c = {1, 2, 9, 9, 9};
  cache.Insert("", absl::MakeConstSpan(a).first(3), "a3");
  cache.Insert("", b, "b4");
  cache.Insert("t1", a, "a4-t1");
  EXPECT_EQ(cache.entries(), 3u);
  const std::vector<TokenId> ask_b = {1, 2, 3, 5, 7};
  auto hit = cache.Lookup("", ask_b, 4);
  EXPECT_EQ(hit.tokens, 4);
  EXPECT_EQ(*hit.state, "b4");
  const std::vector<TokenId> ask_a = {1, 2, 3, 4, 7};
  hit = cache.Lookup("", ask_a, 4);
  EXPECT_EQ(hit.tokens, 3) << "{1,2,3,4} is cached only in namespace t1";
  EXPECT_EQ(*hit.state, "a3");
  EXPECT_EQ(cache.Lookup("", c, 5).tokens, 0) << "same hash, other tokens: a miss";
  EXPECT_EQ(cache.Lookup("t2", ask_a, 4).tokens, 0);
}

TEST(PrefixCache, LeastRecentlyUsedEntriesAreEvictedWithinTheBudget) {
  const std::string state(1000, 'x');
  PrefixCache cache(2 * (1000 + 3 * sizeof(TokenId)));
  const std::vector<TokenId> a = {1, 1, 1}, b = {2, 2, 2}, c = {3, 3, 3};
  cache.Insert("", a, state);
  cache.Insert("", b, state);
  EXPECT_EQ(cache.Lookup("", a, 3).tokens, 3);  // a is now the most recent
  cache.Insert("", c, state);
  EXPECT_EQ(cache.evictions(), 1u);
  EXPECT_EQ(cache.Lookup("", b, 3).tokens, 0);
  EXPECT_EQ(cache.Lookup("", a, 3).tokens, 3);
  EXPECT_LE(cache.bytes(), 2 * (1000 + 3 * sizeof(TokenId)));
}

std::vector<TokenId> SystemPrompt() {
  std::vector<TokenId> p;
  while (p.size() < 300) {
    for (TokenId t : Bytes("In the beginning God created the heaven and the earth. ")) p.push_back(t);
  }
  p.resize(300);
  return p;
}

TEST(PrefixCacheServing, SharedPrefixIsServedFromTheCacheAndEqualsTheUncachedRunBitForBit) {
  ServingOptions o;
  o.prefix_cache_bytes = size_t{64} << 20;
  o.prefix_block = 64;
  auto e = MakeEngine(o);
  const std::vector<TokenId> system = SystemPrompt();
  std::vector<TokenId> p1 = system, p2 = system;
  for (TokenId t : Bytes("And God said")) p1.push_back(t);
  for (TokenId t : Bytes("And the evening")) p2.push_back(t);
  auto first = RunToEnd(*e, Greedy(p1, 8));
  ASSERT_TRUE(first->error.ok());
  EXPECT_EQ(first->finished->cached_tokens, 0);
  auto second = RunToEnd(*e, Greedy(p2, 8));
  ASSERT_TRUE(second->error.ok());
  EXPECT_EQ(second->finished->cached_tokens, 256) << "the longest 64-token block boundary of the shared 300";
  EXPECT_EQ(second->finished->prompt_tokens, static_cast<int>(p2.size()));
  EXPECT_EQ(second->tokens, DirectGreedy(p2, 8));
  // A conversation re-sent with one more turn: the previous prompt's end is a cached state.
  std::vector<TokenId> p3 = p1;
  for (TokenId t : Bytes(" unto them")) p3.push_back(t);
  auto third = RunToEnd(*e, Greedy(p3, 8));
  EXPECT_EQ(third->finished->cached_tokens, static_cast<int>(p1.size()));
  EXPECT_EQ(third->tokens, DirectGreedy(p3, 8));
  // A session created with the prefix (prefill only) is served the same way.
  auto s = e->CreateSession();
  auto pre = RunToEnd(*e, Greedy(p2, 0, s->id));
  EXPECT_EQ(pre->finished->cached_tokens, 256);
  auto cont = RunToEnd(*e, Greedy({}, 8, s->id));
  EXPECT_EQ(cont->tokens, second->tokens);
  EngineStats st = e->Stats();
  EXPECT_EQ(st.prefix_hits, 3u);
  EXPECT_EQ(st.prefix_misses, 1u);
  EXPECT_EQ(st.prefix_hit_tokens, 256u + p1.size() + 256u);
  EXPECT_GT(st.prefix_cache_bytes, 0u);
}

TEST(PrefixCacheServing, NamespacesNeverShareAnEntry) {
  ServingOptions o;
  o.prefix_cache_bytes = size_t{64} << 20;
  o.prefix_block = 64;
  auto e = MakeEngine(o);
  std::vector<TokenId> p = SystemPrompt();
  GenerateInput a = Greedy(p, 4);
  a.cache_namespace = "tenant-a";
  ASSERT_TRUE(RunToEnd(*e, a)->error.ok());
  GenerateInput b = Greedy(p, 4);
  b.cache_namespace = "tenant-b";
  auto rb = RunToEnd(*e, b);
  EXPECT_EQ(rb->finished->cached_tokens, 0);
  auto ra = RunToEnd(*e, a);
  EXPECT_EQ(ra->finished->cached_tokens, 256);
  EXPECT_EQ(ra->tokens, rb->tokens);
}

// The prefix cache on each architecture's conformance kit: a prompt served from the cache against
// the same prompt with the cache off, compared through the first token's top log-probabilities.
// RWKV-4 and RWKV-7 carry their state token by token whatever the chunking: bit for bit. RetNet
// and TransNormerLLM prefill in chunks (ComputeForm::kChunkwise), whose boundaries move when a
// prefill restarts from a cached block: equal within the kit's tolerance (log-softmax values, so
// twice the logits' max_abs), and the greedy tokens the same.
// Every architecture's conformance kit, and its name as a test-name suffix ("rwkv7_tiny").
const char* const kKits[] = {"rwkv7-tiny", "rwkv4-tiny", "retnet-tiny", "transnormer-tiny"};
std::string KitTestName(const ::testing::TestParamInfo<const char*>& info) {
  std::string s = info.param;
  for (char& ch : s) if (ch == '-') ch = '_';
  return s;
}

class PrefixCacheKit : public ::testing::TestWithParam<const char*> {};

std::unique_ptr<Engine> KitEngine(const std::string& kit, size_t cache_bytes) {
  auto model = LoadModel(retain::testing::KitDir(kit), ModelOptions{.num_threads = 1});
  EXPECT_TRUE(model.ok()) << model.status();
  ServingOptions o;
  o.prefix_cache_bytes = cache_bytes;
  o.prefix_block = 64;
  o.eos_token_id = -1;
  auto e = Engine::Create(std::move(*model), nullptr, o);
  EXPECT_TRUE(e.ok()) << e.status();
  return std::move(*e);
}

TEST_P(PrefixCacheKit, CachedPrefixEqualsTheUncachedRunWithinWhatTheArchitectureGuarantees) {
  const std::string kit = GetParam();
  auto c = ReadConformanceCase(retain::testing::KitDir(kit) + "/case.json");
  ASSERT_TRUE(c.ok()) << c.status();
  const bool exact = kit.rfind("rwkv", 0) == 0;
  auto cached = KitEngine(kit, size_t{64} << 20);
  auto plain = KitEngine(kit, 0);
  const int vocab = cached->model().config().vocab_size;
  const std::vector<TokenId> shared = retain::testing::RandomTokens(200, vocab, 19);
  auto prompt = [&](uint32_t seed) {
    std::vector<TokenId> p = shared;
    for (TokenId t : retain::testing::RandomTokens(9, vocab, seed)) p.push_back(t);
    return p;
  };
  auto run = [&](Engine& e, const std::vector<TokenId>& p) {
    GenerateInput in = Greedy(p, 6);
    in.logprobs = 5;
    auto sink = RunToEnd(e, in);
    EXPECT_TRUE(sink->error.ok()) << sink->error;
    return sink;
  };
  ASSERT_EQ(run(*cached, prompt(1))->finished->cached_tokens, 0);
  auto hit = run(*cached, prompt(2));
  auto miss = run(*plain, prompt(2));
  ASSERT_EQ(hit->finished->cached_tokens, 192) << "the last 64-token block of the shared 200";
  EXPECT_EQ(hit->tokens, miss->tokens);
  ASSERT_FALSE(hit->events.empty());
  const auto& a = hit->events[0].top_logprobs;
  const auto& b = miss->events[0].top_logprobs;
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].id, b[i].id);
    worst = std::max(worst, static_cast<double>(std::abs(a[i].logprob - b[i].logprob)));
  }
  if (exact) {
    EXPECT_EQ(worst, 0.0) << kit << ": a cached RWKV state must be bit for bit";
  } else {
    EXPECT_LE(worst, 2 * c->max_abs) << kit;
  }
  std::printf("[ prefix cache ] %s: max |logprob diff| = %.3g (%s)\n", kit.c_str(), worst, exact ? "exact" : "tolerance");
}

INSTANTIATE_TEST_SUITE_P(Kits, PrefixCacheKit,
                         ::testing::ValuesIn(kKits), KitTestName);

}  // namespace
}  // namespace retain::engine

namespace retain::engine {
namespace {

// Rewind on each architecture's conformance kit: a three-turn session rewound (on forks) to a turn
// boundary and to a position between checkpoints, against a fresh session prefilled with the same
// tokens. The exported state bytes must be equal for RWKV (token by token whatever the chunking);
// for RetNet and TransNormerLLM, whose prefill is chunkwise and whose chunk boundaries move when the
// re-prefill starts at a checkpoint, the test reports whether the bytes are equal and requires the
// next token's top log-probabilities within the kit's tolerance and the same greedy tokens.
class RewindKit : public ::testing::TestWithParam<const char*> {};

TEST_P(RewindKit, RewoundSessionEqualsAFreshPrefillWithinWhatTheArchitectureGuarantees) {
  const std::string kit = GetParam();
  auto c = ReadConformanceCase(retain::testing::KitDir(kit) + "/case.json");
  ASSERT_TRUE(c.ok()) << c.status();
  const bool exact = kit.rfind("rwkv", 0) == 0;
  auto e = KitEngine(kit, 0);
  const int vocab = e->model().config().vocab_size;
  auto s = e->CreateSession();
  ASSERT_TRUE(s.ok());
  std::vector<TokenId> tokens;
  std::vector<int64_t> turn_ends;
  for (uint32_t turn = 0; turn < 3; ++turn) {
    const std::vector<TokenId> prompt = retain::testing::RandomTokens(70, vocab, 100 + turn);
    tokens.insert(tokens.end(), prompt.begin(), prompt.end());
    auto sink = RunToEnd(*e, Greedy(prompt, 5, s->id));
    ASSERT_TRUE(sink->error.ok()) << sink->error;
    tokens.insert(tokens.end(), sink->tokens.begin(), sink->tokens.end());
    turn_ends.push_back(static_cast<int64_t>(tokens.size()));
  }
  auto next = [&](const std::string& id) {
    GenerateInput in = Greedy({}, 6, id);
    in.logprobs = 5;
    auto sink = RunToEnd(*e, in);
    EXPECT_TRUE(sink->error.ok()) << sink->error;
    return sink;
  };
  double worst = 0;
  bool bytes_equal = true;
  for (int64_t p : {turn_ends[0], turn_ends[1] + 37}) {
    SCOPED_TRACE(p);
    auto fork = e->ForkSession(s->id);
    ASSERT_TRUE(fork.ok()) << fork.status();
    ASSERT_TRUE(Rewind(*e, fork->id, p).ok());
    const std::string fresh = PrefilledSession(*e, First(tokens, p));
    auto a = e->ExportSession(fork->id);
    auto b = e->ExportSession(fresh);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->position, p);
    EXPECT_EQ(a->position, b->position);
    EXPECT_EQ(a->pending, b->pending);
    bytes_equal = bytes_equal && a->state == b->state;
    if (exact) EXPECT_TRUE(a->state == b->state) << kit << ": a rewound RWKV state must be bit for bit";
    auto x = next(fork->id);
    auto y = next(fresh);
    EXPECT_EQ(x->tokens, y->tokens);
    ASSERT_FALSE(x->events.empty());
    ASSERT_FALSE(y->events.empty());
    const auto& la = x->events[0].top_logprobs;
    const auto& lb = y->events[0].top_logprobs;
    ASSERT_EQ(la.size(), lb.size());
    for (size_t i = 0; i < la.size(); ++i) {
      EXPECT_EQ(la[i].id, lb[i].id);
      worst = std::max(worst, static_cast<double>(std::abs(la[i].logprob - lb[i].logprob)));
    }
  }
  if (exact) {
    EXPECT_EQ(worst, 0.0) << kit;
  } else {
    EXPECT_LE(worst, 2 * c->max_abs) << kit;
  }
  std::printf("[ rewind ] %s: state bytes %s, max |logprob diff| = %.3g\n", kit.c_str(),
              bytes_equal ? "equal" : "differ", worst);
}

INSTANTIATE_TEST_SUITE_P(Kits, RewindKit,
                         ::testing::ValuesIn(kKits), KitTestName);

}  // namespace
}  // namespace retain::engine
