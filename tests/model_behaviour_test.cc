// Invariants of the model interface, bit for bit: batching, chunking, threading and pausing a
// session through export/import never change a single logit or state byte. Each runs on the kits
// (head size 16), on a random RWKV-7 with the head size of released models (64), and on RetNet and
// TransNormerLLM (their kits and random fla-layout / LRPE models).
#include <cstring>
#include <random>

#include "gtest/gtest.h"
#include "retain/engine/model.h"
#include "tests/testing/model_files.h"
#include "tests/testing/paths.h"

namespace retain::engine {
namespace {

using retain::testing::KitDir;

std::string ModelDir(const std::string& which) {
  if (which == "random-rwkv7-h64") {
    static const std::string dir = retain::testing::WriteModelDir(
        "random-rwkv7-h64", retain::testing::RandomRwkv7(3, 128, 64, 300, 448, 11));
    return dir;
  }
  if (which == "random-retnet-fla") {
    static const std::string dir = [] {
      auto m = retain::testing::RandomRetNet(retain::testing::RetNetLayout::kFlaSplitMlp, {2, 128, 2, 256, 256, 300}, 12);
      return retain::testing::WriteModelDir("random-retnet-fla", m.tensors, m.config_json);
    }();
    return dir;
  }
  if (which == "random-transnormer") {
    static const std::string dir = [] {
      auto m = retain::testing::RandomTransNormer({3, 128, 4, 320, 300, {1, 0, 1}}, 13);
      return retain::testing::WriteModelDir("random-transnormer", m.tensors, m.config_json);
    }();
    return dir;
  }
  return KitDir(which);
}

bool IsRetention(const std::string& which) {
  return which.find("retnet") != std::string::npos || which.find("transnormer") != std::string::npos;
}

std::unique_ptr<Model> Load(const std::string& which, int step_tokens = 256, int threads = 2,
                            ComputeForm form = ComputeForm::kChunkwise) {
  ModelOptions o;
  o.max_step_tokens = step_tokens;
  o.num_threads = threads;
  o.form = form;
  auto m = LoadModel(ModelDir(which), o);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? std::move(*m) : nullptr;
}

using retain::testing::RandomTokens;

bool SameBytes(const void* a, const void* b, size_t n) { return std::memcmp(a, b, n) == 0; }
bool SameFloats(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && SameBytes(a.data(), b.data(), a.size() * sizeof(float));
}

class ModelInvariants : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelInvariants, BatchedDecodeAtDifferentPositionsEqualsDecodingAlone) {
  auto model = Load(GetParam());
  ASSERT_NE(model, nullptr);
  const int v = model->config().vocab_size, n = 3;
  auto batched = model->AllocateStates(n);
  auto alone = model->AllocateStates(n);
  ASSERT_TRUE(batched.ok() && alone.ok());
  auto slot = [&](void* base, int i) { return static_cast<char*>(base) + model->state_bytes() * i; };
  std::vector<float> scratch(64 * v);
  for (int i = 0; i < n; ++i) {  // prompts of different lengths: the sessions sit at different positions
    const auto prompt = RandomTokens(5 + 17 * i, v, 100 + i);
    for (void* base : {*batched, *alone}) {
      SequenceInput s{prompt, slot(base, i), false};
      ASSERT_TRUE(model->Forward({&s, 1}, absl::MakeSpan(scratch)).ok());
    }
  }
  for (int step = 0; step < 6; ++step) {
    const auto tokens = RandomTokens(n, v, 200 + step);
    std::vector<void*> ptrs;
    for (int i = 0; i < n; ++i) ptrs.push_back(slot(*batched, i));
    std::vector<float> got(n * v);
    ASSERT_TRUE(model->Decode(tokens, ptrs, absl::MakeSpan(got)).ok());
    for (int i = 0; i < n; ++i) {
      std::vector<float> want(v);
      void* p = slot(*alone, i);
      ASSERT_TRUE(model->Decode({&tokens[i], 1}, {&p, 1}, absl::MakeSpan(want)).ok());
      ASSERT_TRUE(SameBytes(got.data() + i * v, want.data(), v * sizeof(float))) << "session " << i << " step " << step;
    }
  }
  EXPECT_TRUE(SameBytes(*batched, *alone, n * model->state_bytes()));
}

TEST_P(ModelInvariants, ExportImportAndContinueEqualsNeverStopping) {
  auto model = Load(GetParam());
  auto other = Load(GetParam());  // the session resumes in another model instance
  ASSERT_TRUE(model && other);
  const int v = model->config().vocab_size;
  const auto prompt = RandomTokens(40, v, 7), cont = RandomTokens(8, v, 8);
  auto run = [&](Model& m, void* state, absl::Span<const TokenId> toks, bool all) {
    std::vector<float> out((all ? toks.size() : 1) * v);
    SequenceInput s{toks, state, all};
    EXPECT_TRUE(m.Forward({&s, 1}, absl::MakeSpan(out)).ok());
    return out;
  };
  void* straight = *model->AllocateStates(1);
  void* paused = *model->AllocateStates(1);
  void* resumed = *other->AllocateStates(1);
  run(*model, straight, prompt, false);
  run(*model, paused, prompt, false);
  auto snapshot = model->ExportState(paused);
  ASSERT_TRUE(snapshot.ok());
  ASSERT_TRUE(other->ImportState(*snapshot, resumed).ok());
  std::vector<float> want, got;
  for (TokenId t : cont) {
    auto a = run(*model, straight, {&t, 1}, false);
    auto b = run(*other, resumed, {&t, 1}, false);
    want.insert(want.end(), a.begin(), a.end());
    got.insert(got.end(), b.begin(), b.end());
  }
  EXPECT_TRUE(SameFloats(want, got));
  EXPECT_TRUE(SameBytes(straight, resumed, model->state_bytes()));
}

TEST_P(ModelInvariants, ChunkedPrefillEqualsWholeAndTokenByToken) {
  const auto prompt = RandomTokens(70, 256, 5);
  std::vector<float> ref_logits;
  std::string ref_state;
  // RetNet / TransNormerLLM: bit for bit in the recurrent form, which walks tokens whatever the
  // step. Their chunkwise and parallel forms group sums by chunk and step, so they agree only to
  // rounding; retention_forms_test bounds that.
  const ComputeForm form = IsRetention(GetParam()) ? ComputeForm::kRecurrent : ComputeForm::kChunkwise;
  for (int step : {256, 13, 1}) {
    auto model = Load(GetParam(), step, 2, form);
    ASSERT_NE(model, nullptr);
    void* state = *model->AllocateStates(1);
    std::vector<float> logits(prompt.size() * model->config().vocab_size);
    SequenceInput s{prompt, state, true};
    ASSERT_TRUE(model->Forward({&s, 1}, absl::MakeSpan(logits)).ok());
    std::string st = *model->ExportState(state);
    if (ref_logits.empty()) {
      ref_logits = logits;
      ref_state = st;
      continue;
    }
    EXPECT_TRUE(SameFloats(logits, ref_logits)) << "step " << step;
    EXPECT_EQ(st, ref_state) << "step " << step;
  }
}

TEST_P(ModelInvariants, ThreadCountDoesNotChangeResults) {
  const auto prompt = RandomTokens(33, 256, 9);
  std::vector<float> first;
  for (int threads : {1, 2, 3}) {
    auto model = Load(GetParam(), 256, threads);
    ASSERT_NE(model, nullptr);
    std::vector<float> logits(prompt.size() * model->config().vocab_size);
    SequenceInput s{prompt, *model->AllocateStates(1), true};
    ASSERT_TRUE(model->Forward({&s, 1}, absl::MakeSpan(logits)).ok());
    if (first.empty()) first = logits;
    else EXPECT_TRUE(SameFloats(logits, first)) << threads << " threads";
  }
}

TEST_P(ModelInvariants, InvalidInputIsRejectedAndTouchesNoState) {
  auto model = Load(GetParam());
  ASSERT_NE(model, nullptr);
  const int v = model->config().vocab_size;
  void* a = *model->AllocateStates(1);
  void* b = *model->AllocateStates(1);
  std::vector<TokenId> warm = RandomTokens(9, v, 3);
  std::vector<float> logits(16 * v);
  SequenceInput w{warm, a, false};
  ASSERT_TRUE(model->Forward({&w, 1}, absl::MakeSpan(logits)).ok());
  const std::string before = *model->ExportState(a);

  std::vector<TokenId> good = {1, 2, 3}, bad_high = {1, v}, bad_neg = {-1}, none;
  std::vector<SequenceInput> cases[] = {
      {{good, a, false}, {bad_high, b, false}},  // the bad sequence comes second: a must not move
      {{good, a, false}, {bad_neg, b, false}},
      {{good, a, false}, {none, b, false}},
      {{good, a, false}, {good, nullptr, false}},
      {{good, a, false}, {good, a, false}},  // one state twice
  };
  for (auto& seqs : cases) {
    absl::Status s = model->Forward(seqs, absl::MakeSpan(logits));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_FALSE(s.message().empty());
  }
  SequenceInput ok{good, a, true};
  EXPECT_EQ(model->Forward({&ok, 1}, absl::MakeSpan(logits).subspan(0, 2 * v)).code(),
            absl::StatusCode::kInvalidArgument);  // output too small for 3 rows
  EXPECT_EQ(*model->ExportState(a), before);
  auto msg = model->Forward(std::vector<SequenceInput>{{bad_high, a, false}}, absl::MakeSpan(logits));
  EXPECT_NE(msg.message().find(std::to_string(v)), std::string_view::npos) << msg;
}

INSTANTIATE_TEST_SUITE_P(Models, ModelInvariants,
                         ::testing::Values("rwkv7-tiny", "rwkv7-tiny-bf16", "rwkv4-tiny", "random-rwkv7-h64",
                                           "retnet-tiny", "transnormer-tiny", "random-retnet-fla",
                                           "random-transnormer"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s) if (ch == '-') ch = '_';
                           return s;
                         });

TEST(StateSnapshots, ForeignOrDamagedSnapshotsAreRejected) {
  auto v7 = Load("rwkv7-tiny");
  auto v4 = Load("rwkv4-tiny");
  ASSERT_TRUE(v7 && v4);
  void* s7 = *v7->AllocateStates(1);
  void* s4 = *v4->AllocateStates(1);
  const std::string snap7 = *v7->ExportState(s7);
  const std::string snap4 = *v4->ExportState(s4);
  EXPECT_EQ(v7->ImportState(snap4, s7).code(), absl::StatusCode::kInvalidArgument);
  auto retnet = Load("retnet-tiny");
  auto tnl = Load("transnormer-tiny");
  ASSERT_TRUE(retnet && tnl);
  void* sr = *retnet->AllocateStates(1);
  void* st = *tnl->AllocateStates(1);
  EXPECT_EQ(tnl->ImportState(*retnet->ExportState(sr), st).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(retnet->ImportState(*tnl->ExportState(st), sr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(v7->ImportState(*retnet->ExportState(sr), s7).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(v7->ImportState(snap7.substr(0, snap7.size() - 4), s7).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(v7->ImportState("garbage", s7).code(), absl::StatusCode::kInvalidArgument);
  std::string bad_magic = snap7;
  bad_magic[0] = 'X';
  EXPECT_EQ(v7->ImportState(bad_magic, s7).code(), absl::StatusCode::kInvalidArgument);
  std::string nan = snap7;
  const float q = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(nan.data() + nan.size() - 4, &q, 4);
  EXPECT_EQ(v7->ImportState(nan, s7).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(v7->ImportState(snap7, s7).ok());
}

}  // namespace
}  // namespace retain::engine
