// retain-run as a user calls it: tokenizer forms through stdin/stdout, and clean failures.
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/command.h"
#include "tests/testing/paths.h"

namespace {

using retain::testing::KitDir;
using retain::testing::SharedDir;

using Result = retain::testing::CommandResult;

// Runs retain-run with `args` and `input` on stdin; its stderr goes to /dev/null.
Result RunCli(const std::string& args, const std::string& input) {
  const std::string in_path = ::testing::TempDir() + "/retain_run_stdin_" + std::to_string(getpid());
  { std::ofstream(in_path, std::ios::binary) << input; }
  return retain::testing::RunCommand(std::string(RETAIN_RUN_BIN) + " " + args + " < " + in_path + " 2>/dev/null");
}

std::string Vocab() { return SharedDir() + "/conformance/tokenizer/rwkv_vocab_v20230424.txt"; }

TEST(RetainRunTokenizer, EncodesEveryConformanceCase) {
  std::ifstream f(SharedDir() + "/conformance/tokenizer/rwkv_world_cases.json");
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

}  // namespace
