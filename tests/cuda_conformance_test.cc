// The cuda backend against the RWKV-7 conformance kits (tests/data/conformance/rwkv7-*): the
// reference implementation's logits, within each kit's own tolerance, prompts alone and batched,
// whole and split across steps, then decode token by token; and a session moved between the cuda
// and the cpu backend (export on one, import on the other, continue) agreeing with one that never
// moved. Skipped without a GPU; unverified on GPU so far (bench/results/cuda.md).
#include <algorithm>
#include <cmath>
#include <ostream>
#include <string>
#include <vector>

#include "engine/tools/conformance_case.h"
#include "gtest/gtest.h"
#include "retain/engine/model.h"
#include "tests/testing/cuda_device.h"
#include "tests/testing/kit_run.h"
#include "tests/testing/paths.h"

namespace retain::engine {
namespace {

using retain::testing::KitDir;

struct Variant {
  const char* kit;
  bool batch;
  int step_tokens;
};

void PrintTo(const Variant& v, std::ostream* os) {
  *os << v.kit << (v.batch ? " batched" : " alone") << " step " << v.step_tokens;
}

class CudaKit : public ::testing::TestWithParam<Variant> {};

TEST_P(CudaKit, LogitsMatchReference) {
  RETAIN_SKIP_WITHOUT_CUDA();
  const Variant& p = GetParam();
  ModelOptions options;
  options.backend = "cuda";
  options.max_step_tokens = p.step_tokens;
  auto r = retain::testing::RunKit(KitDir(p.kit), options, p.batch);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LE(r->max_abs_diff, r->tolerance) << p.kit;
  std::printf("[ cuda conformance ] %s %s step %d: max|diff| = %.3g (tolerance %.3g)\n", p.kit,
              p.batch ? "batched" : "alone", p.step_tokens, r->max_abs_diff, r->tolerance);
}

INSTANTIATE_TEST_SUITE_P(Kits, CudaKit,
                         ::testing::Values(Variant{"rwkv7-tiny", false, 256}, Variant{"rwkv7-tiny", true, 256},
                                           Variant{"rwkv7-tiny", false, 7}, Variant{"rwkv7-tiny", true, 5},
                                           Variant{"rwkv7-tiny-bf16", false, 256},
                                           Variant{"rwkv7-tiny-bf16", true, 5}),
                         [](const auto& info) {
                           std::string kit = info.param.kit;
                           for (char& ch : kit)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return kit + (info.param.batch ? "_batched" : "_alone") + "_step" +
                                  std::to_string(info.param.step_tokens);
                         });

// Runs `prompt` on `from`, exports the state, imports it on `to`, decodes `decode` there; the
// logits must equal (within the kit's tolerance) `to` having run everything itself.
void ExpectMoveAgrees(Model& from, Model& to, double tol) {
  const std::vector<TokenId> prompt = {12, 200, 7, 7, 31, 99, 250}, decode = {5, 140, 66};
  const int vocab = to.config().vocab_size;
  auto a = from.AllocateStates(1);
  auto b = to.AllocateStates(2);
  ASSERT_TRUE(a.ok() && b.ok());
  void* moved = static_cast<char*>(*b) + to.state_bytes();
  std::vector<float> logits(prompt.size() * vocab);
  ASSERT_TRUE(from.Forward({{prompt, *a, false}}, absl::MakeSpan(logits)).ok());
  ASSERT_TRUE(to.Forward({{prompt, *b, false}}, absl::MakeSpan(logits)).ok());
  auto snapshot = from.ExportState(*a);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  ASSERT_TRUE(to.ImportState(*snapshot, moved).ok());
  std::vector<float> stayed(decode.size() * vocab), came(decode.size() * vocab);
  ASSERT_TRUE(to.Forward({{decode, *b, true}}, absl::MakeSpan(stayed)).ok());
  ASSERT_TRUE(to.Forward({{decode, moved, true}}, absl::MakeSpan(came)).ok());
  double worst = 0;
  for (size_t i = 0; i < stayed.size(); ++i) worst = std::max(worst, std::fabs(double{stayed[i]} - came[i]));
  EXPECT_LE(worst, tol) << "moved from " << from.config().n_layer << "-layer model on another backend";
}

TEST(CudaStateMove, CudaToCpuAndBackContinuesAsIfNeverMoved) {
  RETAIN_SKIP_WITHOUT_CUDA();
  ModelOptions cpu_opts, cuda_opts;
  cuda_opts.backend = "cuda";
  auto cpu = LoadModel(KitDir("rwkv7-tiny"), cpu_opts);
  auto gpu = LoadModel(KitDir("rwkv7-tiny"), cuda_opts);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  auto c = ReadConformanceCase(KitDir("rwkv7-tiny") + "/case.json");
  ASSERT_TRUE(c.ok());
  ExpectMoveAgrees(**gpu, **cpu, c->max_abs);
  ExpectMoveAgrees(**cpu, **gpu, c->max_abs);
}

TEST(CudaBackend, RefusesFamiliesItDoesNotImplementByName) {
  RETAIN_SKIP_WITHOUT_CUDA();
  ModelOptions options;
  options.backend = "cuda";
  for (const char* kit : {"rwkv4-tiny", "retnet-tiny", "transnormer-tiny"}) {
    auto model = LoadModel(KitDir(kit), options);
    ASSERT_FALSE(model.ok()) << kit;
    EXPECT_EQ(model.status().code(), absl::StatusCode::kUnimplemented) << model.status();
    EXPECT_NE(model.status().message().find("rwkv7 models only"), std::string::npos) << model.status();
  }
}

// The one CUDA test that runs where there is no device: the backend and a model on it refuse to
// start, saying why, instead of failing later; the registry names the backend.
TEST(CudaBackend, WithoutADeviceRefusesToStartSayingSo) {
  if (retain::testing::NoCudaDeviceReason().empty()) GTEST_SKIP() << "this machine has a CUDA device";
  auto backend = CreateBackend("cuda", {});
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kFailedPrecondition) << backend.status();
  EXPECT_NE(backend.status().message().find("no CUDA device here"), std::string::npos) << backend.status();
  ModelOptions options;
  options.backend = "cuda";
  auto model = LoadModel(KitDir("rwkv7-tiny"), options);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kFailedPrecondition) << model.status();
  auto unknown = CreateBackend("tpu", {});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("cpu, cuda"), std::string::npos) << unknown.status();
}

}  // namespace
}  // namespace retain::engine
