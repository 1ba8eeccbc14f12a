// Conformance with every RWKV kit in shared/conformance: logits from the reference implementations,
// matched within each kit's own tolerance, prompts alone and batched, whole and in small steps.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "engine/tools/conformance_case.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "retain/engine/model.h"
#include "retain/engine/safetensors.h"
#include "tests/testing/paths.h"

namespace retain::engine {
namespace {

using retain::testing::KitDir;
using retain::testing::SharedDir;

struct Variant {
  std::string kit;
  bool batch;
  int step_tokens;
  int threads;
};

void PrintTo(const Variant& v, std::ostream* os) {
  *os << v.kit << (v.batch ? " batched" : " alone") << " step " << v.step_tokens << " threads " << v.threads;
}

std::string VariantName(const ::testing::TestParamInfo<Variant>& info) {
  std::string kit = info.param.kit;
  for (char& ch : kit)
    if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return kit + (info.param.batch ? "_batched" : "_alone") + "_step" +
         std::to_string(info.param.step_tokens) + "_t" + std::to_string(info.param.threads);
}

// Every kit whose config names an architecture this engine implements.
std::vector<std::string> RwkvKits() {
  std::vector<std::string> kits;
  for (const auto& e : std::filesystem::directory_iterator(SharedDir() + "/conformance")) {
    const std::string name = e.path().filename().string();
    if (name.rfind("rwkv4-", 0) == 0 || name.rfind("rwkv7-", 0) == 0) kits.push_back(name);
  }
  std::sort(kits.begin(), kits.end());
  return kits;
}

std::vector<Variant> Variants() {
  std::vector<Variant> v;
  for (const std::string& kit : RwkvKits()) {
    v.push_back({kit, false, 256, 2});
    v.push_back({kit, true, 256, 2});
    v.push_back({kit, false, 7, 1});  // prompts split across steps
    v.push_back({kit, true, 5, 2});   // several sessions share a step, split mid-prompt
  }
  return v;
}

class KitTest : public ::testing::TestWithParam<Variant> {};

TEST_P(KitTest, LogitsMatchReference) {
  const Variant& p = GetParam();
  ModelOptions options;
  options.max_step_tokens = p.step_tokens;
  options.num_threads = p.threads;
  auto model = LoadModel(KitDir(p.kit), options);
  ASSERT_TRUE(model.ok()) << model.status();
  auto c = ReadConformanceCase(KitDir(p.kit) + "/case.json");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_GT(c->max_abs, 0);
  auto out = RunConformanceCase(**model, *c, p.batch);
  ASSERT_TRUE(out.ok()) << out.status();
  auto diff = MaxAbsDiff(*out, KitDir(p.kit) + "/expected.safetensors");
  ASSERT_TRUE(diff.ok()) << diff.status();
  EXPECT_LE(*diff, c->max_abs) << p.kit;
  std::printf("[ conformance ] %s max|diff| = %.3g (tolerance %.3g)\n", VariantName({p, 0}).c_str(), *diff, c->max_abs);
}

INSTANTIATE_TEST_SUITE_P(Kits, KitTest, ::testing::ValuesIn(Variants()), VariantName);

TEST(KitDiscovery, FindsTheRwkvKits) {
  // Guards against a silently empty parameter list: shared/ must be where the build says.
  EXPECT_GE(RwkvKits().size(), 3u) << SharedDir();
}

// The command-line form the issue names: retain-run --model DIR --case CASE --out OUT [--batch].
TEST(RetainRunCase, WritesLogitsMatchingTheKit) {
  const std::string kit = KitDir("rwkv7-tiny");
  const std::string out = ::testing::TempDir() + "/retain_run_case.safetensors";
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
    EXPECT_LE(*diff, c->max_abs);
  }
}

}  // namespace
}  // namespace retain::engine
