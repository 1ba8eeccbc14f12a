// Conformance with every kit in tests/data/conformance (rwkv4-, rwkv7-, retnet-, transnormer-): logits
// from the reference implementations, matched within each kit's own tolerance, prompts alone and
// batched, whole and in small steps; for RetNet and TransNormerLLM also in each compute form.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "engine/tools/conformance_case.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "retain/engine/model.h"
#include "retain/engine/safetensors.h"
#include "tests/testing/kit_run.h"
#include "tests/testing/paths.h"

namespace retain::engine {
namespace {

using retain::testing::ConformanceDir;
using retain::testing::KitDir;

struct Variant {
  std::string kit;
  bool batch;
  int step_tokens;
  int threads;
  ComputeForm form = ComputeForm::kChunkwise;  // RetNet / TransNormerLLM only
  int chunk = 64;
};

const char* FormName(ComputeForm f) {
  switch (f) {
    case ComputeForm::kChunkwise: return "chunkwise";
    case ComputeForm::kParallel: return "parallel";
    case ComputeForm::kRecurrent: return "recurrent";
  }
  return "?";
}

bool IsRetentionKit(const std::string& kit) {
  return kit.rfind("retnet-", 0) == 0 || kit.rfind("transnormer-", 0) == 0;
}

void PrintTo(const Variant& v, std::ostream* os) {
  if (v.kit.empty()) {
    *os << "no kits";
    return;
  }
  *os << v.kit << (v.batch ? " batched" : " alone") << " step " << v.step_tokens << " threads " << v.threads;
  if (IsRetentionKit(v.kit)) *os << " " << FormName(v.form) << " chunk " << v.chunk;
}

std::string VariantName(const ::testing::TestParamInfo<Variant>& info) {
  const Variant& p = info.param;
  if (p.kit.empty()) return "NoKits";
  std::string kit = p.kit;
  for (char& ch : kit)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  std::string name = kit + (p.batch ? "_batched" : "_alone") + "_step" + std::to_string(p.step_tokens) +
                     "_t" + std::to_string(p.threads);
  if (IsRetentionKit(p.kit)) name += std::string("_") + FormName(p.form) + "_chunk" + std::to_string(p.chunk);
  return name;
}

// Every kit whose name starts with an architecture this engine implements. Runs while the tests
// are being registered (gtest_discover_tests runs the binary at build time), so it never throws: a
// missing or unreadable folder yields no kits, and the tests below say which folder that was.
std::vector<std::string> SupportedKits() {
  std::vector<std::string> kits;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(ConformanceDir(), ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    for (const char* prefix : {"rwkv4-", "rwkv7-", "retnet-", "transnormer-"})
      if (name.rfind(prefix, 0) == 0) kits.push_back(name);
  }
  std::sort(kits.begin(), kits.end());
  return kits;
}

std::string NoKitsMessage() {
  return "no conformance kit found in " + ConformanceDir() +
         " (the copy of shared/conformance the tests read; see tests/data/README.md)";
}

std::vector<Variant> Variants() {
  std::vector<Variant> v;
  const std::vector<std::string> kits = SupportedKits();
  if (kits.empty()) return {Variant{"", false, 256, 2}};  // one test that fails and says why
  for (const std::string& kit : kits) {
    v.push_back({kit, false, 256, 2});
    v.push_back({kit, true, 256, 2});
    v.push_back({kit, false, 7, 1});  // prompts split across steps
    v.push_back({kit, true, 5, 2});   // several sessions share a step, split mid-prompt
    if (!IsRetentionKit(kit)) continue;
    // Every compute form, and chunks that do not divide the prompts (lengths 23/29, 1, 77/83).
    v.push_back({kit, false, 256, 2, ComputeForm::kParallel, 64});
    v.push_back({kit, true, 256, 2, ComputeForm::kParallel, 64});
    v.push_back({kit, false, 256, 1, ComputeForm::kRecurrent, 64});
    v.push_back({kit, true, 256, 2, ComputeForm::kRecurrent, 64});
    v.push_back({kit, false, 256, 2, ComputeForm::kChunkwise, 1});
    v.push_back({kit, true, 256, 2, ComputeForm::kChunkwise, 16});
    v.push_back({kit, true, 40, 2, ComputeForm::kChunkwise, 7});
  }
  return v;
}

class KitTest : public ::testing::TestWithParam<Variant> {};

TEST_P(KitTest, LogitsMatchReference) {
  const Variant& p = GetParam();
  ASSERT_FALSE(p.kit.empty()) << NoKitsMessage();
  ModelOptions options;
  options.max_step_tokens = p.step_tokens;
  options.num_threads = p.threads;
  options.form = p.form;
  options.chunk_size = p.chunk;
  auto r = retain::testing::RunKit(KitDir(p.kit), options, p.batch);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LE(r->max_abs_diff, r->tolerance) << p.kit;
  std::printf("[ conformance ] %s max|diff| = %.3g (tolerance %.3g)\n", VariantName({p, 0}).c_str(), r->max_abs_diff,
              r->tolerance);
}

INSTANTIATE_TEST_SUITE_P(Kits, KitTest, ::testing::ValuesIn(Variants()), VariantName);

TEST(KitDiscovery, FindsEveryArchitecturesKits) {
  // Guards against a silently short parameter list: the kits must be where the build says.
  ASSERT_TRUE(std::filesystem::is_directory(ConformanceDir())) << NoKitsMessage() << ": no such folder";
  const std::vector<std::string> kits = SupportedKits();
  EXPECT_GE(kits.size(), 5u) << ConformanceDir();
  for (const char* prefix : {"rwkv4-", "rwkv7-", "retnet-", "transnormer-"}) {
    EXPECT_TRUE(std::any_of(kits.begin(), kits.end(), [&](const std::string& k) { return k.rfind(prefix, 0) == 0; }))
        << "no " << prefix << " kit in " << ConformanceDir();
  }
}

// The command-line form the issue names: retain-run --model DIR --case CASE --out OUT [--batch].
TEST(RetainRunCase, WritesLogitsMatchingTheKit) {
  for (const char* kit_name : {"rwkv7-tiny", "retnet-tiny", "transnormer-tiny"}) {
    const std::string kit = KitDir(kit_name);
    const std::string out = ::testing::TempDir() + "/retain_run_case_" + kit_name + ".safetensors";
    for (const char* batch : {"", " --batch"}) {
      const std::string cmd = std::string(RETAIN_RUN_BIN) + " --model " + kit + " --case " + kit +
                              "/case.json --out " + out + batch;
      ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
      auto c = ReadConformanceCase(kit + "/case.json");
      ASSERT_TRUE(c.ok());
      auto written = SafetensorsFile::Open(out);
      ASSERT_TRUE(written.ok()) << written.status();
      CaseOutput actual;
      actual.vocab = 256;
      for (const auto& [name, info] : (*written)->tensors()) {
        ASSERT_EQ(info.dtype, DType::kF32);
        std::vector<float> v(info.numel());
        for (size_t i = 0; i < v.size(); ++i) v[i] = LoadAsFloat(info.data, info.dtype, i);
        actual.tensors[name] = v;
      }
      ASSERT_EQ(actual.tensors.size(), 2 * c->prompts.size());
      auto diff = MaxAbsDiff(actual, kit + "/expected.safetensors");
      ASSERT_TRUE(diff.ok()) << diff.status();
      EXPECT_LE(*diff, c->max_abs) << kit_name;
    }
  }
}

}  // namespace
}  // namespace retain::engine
