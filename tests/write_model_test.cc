// retain-write-model: the directories it writes pass the loader's own validation and run, it
// refuses to overwrite anything, and bad arguments leave nothing behind.
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "retain/engine/model.h"
#include "tests/testing/command.h"

namespace {

namespace fs = std::filesystem;
using retain::testing::RunCommand;

std::string Fresh(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/write_model_test_" + name;
  fs::remove_all(dir);
  return dir;
}

retain::testing::CommandResult Write(const std::string& args) {
  return RunCommand(std::string(RETAIN_WRITE_MODEL_BIN) + " " + args + " 2>&1");
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

// Loads `dir` and runs a short prompt, then a decode step: every logit finite.
void LoadAndRun(const std::string& dir, retain::engine::Architecture arch) {
  retain::engine::ModelOptions mo;
  mo.num_threads = 2;
  auto model = retain::engine::LoadModel(dir, mo);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->config().arch, arch);
  const int vocab = (*model)->config().vocab_size;
  auto state = (*model)->AllocateStates(1);
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_TRUE((*model)->InitState(*state).ok());
  const std::vector<retain::engine::TokenId> prompt = {1, 2, 3, 500, vocab - 1};
  std::vector<float> logits(vocab);
  retain::engine::SequenceInput s{prompt, *state, false};
  ASSERT_TRUE((*model)->Forward({&s, 1}, absl::MakeSpan(logits)).ok());
  const retain::engine::TokenId next = 7;
  void* const states[] = {*state};
  ASSERT_TRUE((*model)->Decode({&next, 1}, states, absl::MakeSpan(logits)).ok());
  for (float x : logits) ASSERT_TRUE(std::isfinite(x));
}

TEST(WriteModel, RetNetSmallLoadsAndRuns) {
  const std::string dir = Fresh("retnet");
  const auto r = Write("--arch retnet --shape small --dtype bf16 --seed 3 --out " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(fs::is_regular_file(dir + "/model.safetensors"));
  const auto config = ReadJson(dir + "/config.json");
  EXPECT_EQ(config["architecture"], "retnet");
  EXPECT_FALSE(config.contains("tokenizer"));
  LoadAndRun(dir, retain::engine::Architecture::kRetNet);
  fs::remove_all(dir);
}

// The server benchmark's shape, with the World tokenizer named by absolute path.
TEST(WriteModel, Rwkv7WithWorldVocabLoadsAndRuns) {
  const std::string dir = Fresh("rwkv7");
  const std::string vocab = std::string(RETAIN_TEST_DATA_DIR) + "/conformance/tokenizer/rwkv_vocab_v20230424.txt";
  const auto r = Write("--arch rwkv7 --shape 0.1b --dtype f16 --world-vocab " + vocab + " --out " + dir);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto config = ReadJson(dir + "/config.json");
  EXPECT_EQ(config["architecture"], "rwkv7");
  EXPECT_EQ(config["tokenizer"]["type"], "rwkv_world");
  EXPECT_EQ(config["tokenizer"]["vocab"], fs::canonical(vocab).string());
  LoadAndRun(dir, retain::engine::Architecture::kRwkv7);
  auto model = retain::engine::LoadModel(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->config().n_layer, 12);
  EXPECT_EQ((*model)->config().n_embd, 768);
  auto tokenizer = retain::engine::LoadModelTokenizer((*model)->config());
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->vocab_size(), (*model)->config().vocab_size);
  fs::remove_all(dir);
}

TEST(WriteModel, SameSeedSameBytes) {
  const std::string a = Fresh("seed_a"), b = Fresh("seed_b"), c = Fresh("seed_c");
  ASSERT_EQ(Write("--arch retnet --shape small --dtype bf16 --seed 5 --out " + a).exit_code, 0);
  ASSERT_EQ(Write("--arch retnet --shape small --dtype bf16 --seed 5 --out " + b).exit_code, 0);
  ASSERT_EQ(Write("--arch retnet --shape small --dtype bf16 --seed 6 --out " + c).exit_code, 0);
  auto bytes = [](const std::string& d) {
    std::ifstream in(d + "/model.safetensors", std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string x = bytes(a);
  EXPECT_EQ(x, bytes(b));
  EXPECT_NE(x, bytes(c));
  for (const auto& d : {a, b, c}) fs::remove_all(d);
}

TEST(WriteModel, RefusesANonEmptyDirectory) {
  const std::string dir = Fresh("nonempty");
  fs::create_directories(dir);
  { std::ofstream(dir + "/keep.txt") << "mine"; }
  const auto r = Write("--arch retnet --shape small --dtype bf16 --out " + dir);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("not empty"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
  EXPECT_EQ(fs::file_size(dir + "/keep.txt"), 4u);
  fs::remove_all(dir);

  // A file where the directory should be is refused too, and left alone.
  const std::string file = Fresh("a_file");
  { std::ofstream(file) << "x"; }
  EXPECT_EQ(Write("--arch retnet --shape small --out " + file).exit_code, 2);
  EXPECT_EQ(fs::file_size(file), 1u);
  fs::remove(file);
}

TEST(WriteModel, BadArgumentsLeaveNothingBehind) {
  const std::string dir = Fresh("bad");
  struct Case {
    std::string args, message;
  } cases[] = {
      {"--arch rwkv7 --shape 9b", "known: 0.1b, 0.4b, 1.5b"},
      {"--arch mamba --shape 0.1b", "unknown --arch"},
      {"--arch rwkv7 --dtype f8", "--dtype"},
      {"--arch retnet --shape small --world-vocab /dev/null", "rwkv7 only"},
      {"--arch rwkv7 --world-vocab /nonexistent/vocab.txt", "/nonexistent/vocab.txt"},
  };
  for (const auto& c : cases) {
    const auto r = Write(c.args + " --out " + dir);
    EXPECT_EQ(r.exit_code, 2) << c.args << ": " << r.out;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << c.args << ": " << r.out;
    EXPECT_FALSE(fs::exists(dir)) << c.args;
  }
  const auto no_out = Write("--arch rwkv7");
  EXPECT_EQ(no_out.exit_code, 2);
  EXPECT_NE(no_out.out.find("--out"), std::string::npos) << no_out.out;
  const auto help = RunCommand(std::string(RETAIN_WRITE_MODEL_BIN) + " --help 2>/dev/null");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("usage: retain-write-model"), std::string::npos);
}

}  // namespace
