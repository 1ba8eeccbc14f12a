// The shipped default model (models/rwkv7-kjv-byte) is the model PyTorch trained: the engine
// reproduces the held-out loss and the greedy continuation that tools/train recorded in eval.json.
#include <cmath>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "retain/engine/model.h"
#include "retain/engine/tokenizer.h"
#include "tests/testing/paths.h"

namespace retain::engine {
namespace {

// f32 on both sides over ~4000 positions: the mean differs only by summation order, ~1e-6.
constexpr double kLossTolerance = 1e-4;

std::string ModelDir() { return retain::testing::SourceDir() + "/models/rwkv7-kjv-byte"; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json Eval() { return nlohmann::json::parse(ReadFile(ModelDir() + "/eval.json")); }

double LogSoftmaxAt(const float* logits, int v, int target) {
  double mx = logits[0];
  for (int i = 1; i < v; ++i) mx = std::max<double>(mx, logits[i]);
  double sum = 0;
  for (int i = 0; i < v; ++i) sum += std::exp(logits[i] - mx);
  return logits[target] - mx - std::log(sum);
}

TEST(DefaultModel, HeldOutLossMatchesTrainingRecordThroughPrefillAndDecode) {
  auto model = LoadModel(ModelDir());
  ASSERT_TRUE(model.ok()) << model.status();
  auto tok = LoadModelTokenizer((*model)->config());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const auto eval = Eval();
  const std::string text = ReadFile(ModelDir() + "/" + eval["heldout_file"].get<std::string>());
  ASSERT_EQ(text.size(), eval["heldout_bytes"].get<size_t>());
  const std::vector<TokenId> ids = (*tok)->Encode(text);
  const int v = (*model)->config().vocab_size;
  const double recorded = eval["heldout_loss_nats_per_byte"].get<double>();

  // Prefill path: the whole excerpt as one sequence, logits for every position.
  void* state = *(*model)->AllocateStates(1);
  std::vector<float> logits(ids.size() * v);
  SequenceInput seq{ids, state, true};
  ASSERT_TRUE((*model)->Forward({&seq, 1}, absl::MakeSpan(logits)).ok());
  double nll = 0;
  for (size_t i = 0; i + 1 < ids.size(); ++i) nll -= LogSoftmaxAt(&logits[i * v], v, ids[i + 1]);
  const double prefill_loss = nll / (ids.size() - 1);
  EXPECT_NEAR(prefill_loss, recorded, kLossTolerance);

  // Decode path: one token at a time from an empty state.
  ASSERT_TRUE((*model)->InitState(state).ok());
  std::vector<float> row(v);
  nll = 0;
  for (size_t i = 0; i + 1 < ids.size(); ++i) {
    ASSERT_TRUE((*model)->Decode({&ids[i], 1}, {&state, 1}, absl::MakeSpan(row)).ok());
    nll -= LogSoftmaxAt(row.data(), v, ids[i + 1]);
  }
  EXPECT_NEAR(nll / (ids.size() - 1), recorded, kLossTolerance);
  std::printf("[ default model ] held-out loss: recorded %.6f, prefill %.6f, decode %.6f nats/byte\n",
              recorded, prefill_loss, nll / (ids.size() - 1));
}

std::string Hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) out += {d[c >> 4], d[c & 15]};
  return out;
}

TEST(DefaultModel, GreedyGenerationIsDeterministicAndEqualsTheRecordedText) {
  const auto g = Eval()["greedy"];
  const std::string cmd = std::string(RETAIN_RUN_BIN) + " --prompt '" + g["prompt"].get<std::string>() +
                          "' --temperature 0 --max-tokens " + std::to_string(g["max_tokens"].get<int>()) +
                          " 2>/dev/null";
  std::string outputs[2];
  for (std::string& out : outputs) {  // no --model: the built-in default
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    ASSERT_EQ(pclose(p), 0) << cmd;
    ASSERT_FALSE(out.empty());
    out.pop_back();  // retain-run ends its output with a newline of its own
  }
  EXPECT_EQ(outputs[0], outputs[1]);
  EXPECT_EQ(Hex(outputs[0]), g["text_hex"].get<std::string>()) << outputs[0];
}

}  // namespace
}  // namespace retain::engine
