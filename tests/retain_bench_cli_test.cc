// retain-bench's command line as issue 4 defines it: the JSON fields, their consistency with the
// roofline definition, and clean refusals of bad arguments. Tiny runs: speed is not asserted here.
#include <algorithm>
#include <initializer_list>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/command.h"

namespace {

using Result = retain::testing::CommandResult;

Result RunBench(const std::string& args) {
  return retain::testing::RunCommand(std::string(RETAIN_BENCH_BIN) + " " + args + " 2>&1");
}

// Standard output alone: the usage must go there, not to stderr.
Result RunStdout(const char* bin, const std::string& args) {
  return retain::testing::RunCommand(std::string(bin) + " " + args + " 2>/dev/null");
}

constexpr const char* kQuick = " --seconds 0.2 --windows 2 --threads 2 --json";

void ExpectConsistent(const nlohmann::json& j) {
  for (const char* key : {"arch", "shape", "dtype", "mode", "batch", "prompt_tokens", "position", "tokens_per_s",
                          "weight_bytes", "state_bytes_per_session", "read_gbps", "fma_gflops", "roofline_fraction"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_GT(j["tokens_per_s"].get<double>(), 0);
  EXPECT_GT(j["read_gbps"].get<double>(), 0);
  EXPECT_GT(j["fma_gflops"].get<double>(), 0);
  // roofline_fraction is the reported rate over the smaller of the two limits of the same window.
  const double roofline = std::min(j["bandwidth_limit_tokens_per_s"].get<double>(), j["compute_limit_tokens_per_s"].get<double>());
  EXPECT_NEAR(j["roofline_fraction"].get<double>(), j["tokens_per_s"].get<double>() / roofline, 1e-9 * j["roofline_fraction"].get<double>());
  const auto windows = j["window_roofline_fractions"].get<std::vector<double>>();
  ASSERT_EQ(windows.size(), 2u);
  EXPECT_TRUE(std::is_sorted(windows.begin(), windows.end()));
  EXPECT_EQ(j["roofline_fraction"].get<double>(), windows[0]);  // the lower median of two
}

TEST(RetainBenchCli, DecodeFromAPositionPrintsTheIssueFields) {
  Result r = RunBench(std::string("--arch rwkv4 --shape 169m --dtype f32 --mode decode --batch 2 --position 3") + kQuick);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["arch"], "rwkv4");
  EXPECT_EQ(j["shape"], "169m");
  EXPECT_EQ(j["dtype"], "f32");
  EXPECT_EQ(j["mode"], "decode");
  EXPECT_EQ(j["batch"], 2);
  EXPECT_EQ(j["position"], 3);
  EXPECT_EQ(j["prompt_tokens"], 0);
  ExpectConsistent(j);
}

TEST(RetainBenchCli, PrefillPrintsTheIssueFields) {
  Result r = RunBench(std::string("--arch rwkv4 --shape 169m --dtype bf16 --mode prefill --batch 1 --prompt-tokens 8") + kQuick);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["mode"], "prefill");
  EXPECT_EQ(j["prompt_tokens"], 8);
  ExpectConsistent(j);
}

TEST(RetainBenchCli, RefusesBadArgumentsWithAMessage) {
  for (const char* args : {"--arch nope --shape 1b", "--arch rwkv7 --shape 9b", "--batch 0", "--windows 0",
                           "--dtype f64", "--mode train", "--frobnicate 1", "--batch"}) {
    Result r = RunBench(std::string(args) + " --json");
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.out;
    EXPECT_NE(r.out.find("retain-bench: "), std::string::npos) << args << ": " << r.out;
  }
}

TEST(RetainBenchCli, HelpPrintsTheUsageAndSucceeds) {
  for (const char* bin : {RETAIN_BENCH_BIN, RETAIN_POSITION_CHECK_BIN}) {
    // Either spelling, alone or after other flags; nothing is measured.
    for (const char* args : {"--help", "-h", "--arch rwkv4 --help", "--arch rwkv4 -h --frobnicate"}) {
      Result r = RunStdout(bin, args);
      EXPECT_EQ(r.exit_code, 0) << bin << " " << args << ": " << r.out;
      EXPECT_EQ(r.out.rfind("usage: ", 0), 0u) << bin << " " << args << ": " << r.out;
      EXPECT_NE(r.out.find("--arch"), std::string::npos) << bin << " " << args << ": " << r.out;
    }
  }
}

TEST(RetainBenchCli, NumbersOutOfRangeSaySoAndWordsAreNotNumbers) {
  struct Case {
    const char* bin;
    const char* args;
    const char* says;
  };
  for (const Case& c : std::initializer_list<Case>{
           {RETAIN_BENCH_BIN, "--batch 99999999999", "--batch: '99999999999' is out of range"},
           {RETAIN_BENCH_BIN, "--position -1", "--position: '-1' is out of range"},
           {RETAIN_BENCH_BIN, "--seconds 1e999", "--seconds: '1e999' is out of range"},
           {RETAIN_BENCH_BIN, "--batch two", "--batch: 'two' is not a number"},
           {RETAIN_BENCH_BIN, "--seconds soon", "--seconds: 'soon' is not a number"},
           {RETAIN_POSITION_CHECK_BIN, "--far 1e3", "--far: '1e3' is not a number"},
           {RETAIN_POSITION_CHECK_BIN, "--far 99999999999", "--far: '99999999999' is out of range"},
           {RETAIN_POSITION_CHECK_BIN, "--frobnicate 1", "unknown argument '--frobnicate'"},
           {RETAIN_POSITION_CHECK_BIN, "--steps", "--steps needs a value"}}) {
    Result r = retain::testing::RunCommand(std::string(c.bin) + " " + c.args + " 2>&1");
    EXPECT_EQ(r.exit_code, 2) << c.bin << " " << c.args << ": " << r.out;
    EXPECT_NE(r.out.find(c.says), std::string::npos) << c.bin << " " << c.args << ": " << r.out;
  }
}

// --threads: 0 (the default) means every core; 1 to 1024 that many; anything else is refused.
TEST(RetainBenchCli, ThreadsOutsideZeroTo1024AreRefused) {
  for (const char* n : {"-1", "1025", "99999999999"}) {
    Result r = RunBench(std::string("--threads ") + n + " --json");
    EXPECT_EQ(r.exit_code, 2) << n << ": " << r.out;
    EXPECT_NE(r.out.find("retain-bench: --threads: '" + std::string(n) + "' is out of range [0, 1024]"), std::string::npos)
        << n << ": " << r.out;
  }
  Result r = RunBench("--arch rwkv4 --shape 169m --dtype f32 --mode decode --batch 1 --seconds 0.1 --windows 1 --threads 1 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["threads"], 1);
}

}  // namespace
