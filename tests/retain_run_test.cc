// retain-run as a user calls it: tokenizer forms through stdin/stdout, and clean failures.
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>
#include <unistd.h>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/command.h"
#include "tests/testing/paths.h"

namespace {

using retain::testing::ConformanceDir;
using retain::testing::KitDir;

using Result = retain::testing::CommandResult;

// Runs retain-run with `args` and `input` on stdin; its stderr goes to /dev/null.
Result RunCli(const std::string& args, const std::string& input) {
  const std::string in_path = ::testing::TempDir() + "/retain_run_stdin_" + std::to_string(getpid());
  { std::ofstream(in_path, std::ios::binary) << input; }
  return retain::testing::RunCommand(std::string(RETAIN_RUN_BIN) + " " + args + " < " + in_path + " 2>/dev/null");
}

// Runs retain-run with `args`, stdin empty; stdout and stderr together.
Result RunCliAll(const std::string& args) {
  return retain::testing::RunCommand(std::string(RETAIN_RUN_BIN) + " " + args + " < /dev/null 2>&1");
}

std::string Vocab() { return ConformanceDir() + "/tokenizer/rwkv_vocab_v20230424.txt"; }

TEST(RetainRunTokenizer, EncodesEveryConformanceCase) {
  const std::string cases = ConformanceDir() + "/tokenizer/rwkv_world_cases.json";
  std::ifstream f(cases);
  ASSERT_TRUE(f.good()) << "cannot read " << cases;
  std::stringstream ss;
  ss << f.rdbuf();
  auto j = nlohmann::json::parse(ss.str());
  ASSERT_GE(j["cases"].size(), 5u);
  for (const auto& c : j["cases"]) {
    std::string want;
    for (const auto& id : c["ids"]) want += (want.empty() ? "" : " ") + std::to_string(id.get<int>());
    Result r = RunCli("--vocab " + Vocab() + " --encode", c["text"].get<std::string>());
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_EQ(r.out, want + "\n") << c["text"];
    Result back = RunCli("--vocab " + Vocab() + " --decode", r.out);
    EXPECT_EQ(back.out, c["text"].get<std::string>());
  }
}

TEST(RetainRunTokenizer, DecodeWritesRawBytesEvenWhenNotValidUtf8) {
  // 3319 153 129 34 = "😀!"; without the last two ids the emoji is cut mid-sequence.
  EXPECT_EQ(RunCli("--vocab " + Vocab() + " --decode", "3319 153 129 34").out, "\xF0\x9F\x98\x80!");
  EXPECT_EQ(RunCli("--vocab " + Vocab() + " --decode", "3319").out, "\xF0\x9F");
  // Invalid UTF-8 in, the same bytes out.
  const std::string raw = "a\xFF\xC3(\x80z";
  Result enc = RunCli("--vocab " + Vocab() + " --encode", raw);
  EXPECT_EQ(RunCli("--vocab " + Vocab() + " --decode", enc.out).out, raw);
}

TEST(RetainRunTokenizer, BadIdsAndBadArgumentsFailCleanly) {
  EXPECT_EQ(RunCli("--vocab " + Vocab() + " --decode", "12 70000").exit_code, 2);
  EXPECT_EQ(RunCli("--vocab " + Vocab() + " --decode", "12 abc").exit_code, 2);
  EXPECT_EQ(RunCli("--vocab /no/such/file --encode", "x").exit_code, 1);
  EXPECT_EQ(RunCli("--no-such-flag", "").exit_code, 2);
  EXPECT_EQ(RunCli("--model " + KitDir("rwkv7-tiny") + " --prompt hi", "").exit_code, 1);  // kit has no tokenizer
  EXPECT_EQ(RunCli("--model " + KitDir("rwkv7-tiny") + " --case /no/case.json --out /tmp/x", "").exit_code, 1);
  EXPECT_EQ(RunCli("--model " + KitDir("rwkv7-tiny") + " --prompt hi --top-p 2", "").exit_code, 2);
}

TEST(RetainRunCli, HelpOrHPrintsTheUsageToStdoutAndSucceeds) {
  for (const char* args : {"--help", "-h", "--prompt hi -h", "--threads 2 --help --no-such-flag"}) {
    Result r = RunCli(args, "");
    EXPECT_EQ(r.exit_code, 0) << args;
    EXPECT_EQ(r.out.rfind("usage:", 0), 0u) << args << ": " << r.out;
    EXPECT_NE(r.out.find("--prompt TEXT"), std::string::npos) << args << ": " << r.out;
  }
}

TEST(RetainRunCli, NumbersOutOfRangeSaySoAndOthersAreNotNumbers) {
  const std::string model = "--model " + KitDir("rwkv7-tiny") + " --prompt hi ";
  for (const auto& [args, says] : std::vector<std::pair<std::string, std::string>>{
           {model + "--max-tokens 99999999999", "--max-tokens: '99999999999' is out of range"},
           {model + "--seed 99999999999999999999", "--seed: '99999999999999999999' is out of range"},
           {model + "--top-k -99999999999", "--top-k: '-99999999999' is out of range"},
           {model + "--temperature 1e999", "--temperature: '1e999' is out of range"},
           {model + "--top-k many", "--top-k: 'many' is not a number"},
           {model + "--temperature warm", "--temperature: 'warm' is not a number"},
           {"--step-tokens 1e3", "--step-tokens: '1e3' is not a number"}}) {
    Result r = RunCliAll(args);
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.out;
    EXPECT_NE(r.out.find("retain-run: " + says), std::string::npos) << args << ": " << r.out;
  }
}

// --threads: 0 (the default) means every core; 1 to 1024 that many; anything else is refused.
TEST(RetainRunCli, ThreadsOutsideZeroTo1024AreRefused) {
  for (const char* n : {"-1", "1025", "99999999999"}) {
    Result r = RunCliAll("--model " + KitDir("rwkv7-tiny") + " --prompt hi --threads " + n);
    EXPECT_EQ(r.exit_code, 2) << n << ": " << r.out;
    EXPECT_NE(r.out.find("retain-run: --threads: '" + std::string(n) + "' is out of range [0, 1024]"), std::string::npos)
        << n << ": " << r.out;
  }
  const std::string kit = KitDir("rwkv7-tiny");
  for (const char* n : {"0", "1"}) {
    const std::string out = ::testing::TempDir() + "/retain_run_threads_" + n + ".safetensors";
    Result r = RunCliAll("--model " + kit + " --case " + kit + "/case.json --out " + out + " --threads " + n);
    EXPECT_EQ(r.exit_code, 0) << n << ": " << r.out;
  }
}

}  // namespace
