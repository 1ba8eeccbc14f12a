// Every RetNet and TransNormerLLM checkpoint layout the engine loads computes what its reference
// computes. The conformance kits cover torchscale RetNet and OpenNLPLab TransNormerLLM in f32; the
// other layouts (fla-hub fused and split MLP, torchscale Jul 2023, "decoder."-prefixed names,
// bf16 weights, non-power-of-two head counts, unscaled embeddings) are checked against an
// independent f64 transcription of the spec (tests/testing/naive_retention.h), which is itself
// first checked against both kits.
#include <cmath>
#include <functional>
#include <random>

#include "absl/strings/str_replace.h"
#include "engine/tools/conformance_case.h"
#include "gtest/gtest.h"
#include "retain/engine/model.h"
#include "retain/engine/safetensors.h"
#include "tests/testing/model_files.h"
#include "tests/testing/naive_retention.h"
#include "tests/testing/paths.h"

namespace retain::engine {
namespace {

using retain::testing::KitDir;
using retain::testing::ModelFiles;
using retain::testing::NaiveRetNet;
using retain::testing::NaiveRetNetKind;
using retain::testing::NaiveTransNormer;
using retain::testing::RandomRetNet;
using retain::testing::RandomTransNormer;
using retain::testing::ReadTensors;
using retain::testing::RetNetLayout;
using retain::testing::RetNetShape;
using retain::testing::TransNormerShape;

// Engine vs f64 transcription: f32 activations and states against f64 everywhere. Measured
// worst case over the cases below ≈ 2e-5; the kits' own tolerance is 2e-4.
constexpr double kTolerance = 2e-4;

// Largest |a − b| over `rows` rows of `vocab`, a from row a0 and b from row b0.
double MaxDiff(const std::vector<float>& a, size_t a0, const std::vector<double>& b, size_t b0, size_t rows, int vocab) {
  double worst = 0;
  for (size_t i = 0; i < rows * vocab; ++i) {
    const double d = std::fabs(a[a0 * vocab + i] - b[b0 * vocab + i]);
    if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
  }
  return worst;
}

std::vector<float> ExpectedRows(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo* t = f.Find(name);
  EXPECT_NE(t, nullptr) << name;
  std::vector<float> v(t == nullptr ? 0 : t->numel());
  for (size_t i = 0; i < v.size(); ++i) v[i] = LoadAsFloat(t->data, t->dtype, i);
  return v;
}

// The transcription over each kit prompt followed by its decode tokens reproduces the kit.
void CheckNaiveAgainstKit(const std::string& kit,
                          const std::function<std::vector<double>(const std::vector<int>&)>& naive) {
  auto c = ReadConformanceCase(KitDir(kit) + "/case.json");
  ASSERT_TRUE(c.ok()) << c.status();
  auto expected = SafetensorsFile::Open(KitDir(kit) + "/expected.safetensors");
  ASSERT_TRUE(expected.ok());
  double worst = 0;
  for (size_t i = 0; i < c->prompts.size(); ++i) {
    std::vector<int> tokens(c->prompts[i].begin(), c->prompts[i].end());
    tokens.insert(tokens.end(), c->decode[i].begin(), c->decode[i].end());
    const std::vector<double> got = naive(tokens);
    const std::vector<float> prompt = ExpectedRows(**expected, "prompt" + std::to_string(i) + ".logits");
    const std::vector<float> decode = ExpectedRows(**expected, "prompt" + std::to_string(i) + ".decode_logits");
    worst = std::max(worst, MaxDiff(prompt, 0, got, 0, c->prompts[i].size(), 256));
    worst = std::max(worst, MaxDiff(decode, 0, got, c->prompts[i].size(), c->decode[i].size(), 256));
  }
  EXPECT_LE(worst, c->max_abs) << kit;
  std::printf("[ naive f64 ] %s max|diff| vs expected = %.3g\n", kit.c_str(), worst);
}

TEST(NaiveReference, ReproducesTheRetNetKit) {
  const auto t = ReadTensors(KitDir("retnet-tiny") + "/model.safetensors");
  NaiveRetNet cfg;  // torchscale, 2 heads, eps 1e-6, swish, ×sqrt(d): the kit's config.json
  CheckNaiveAgainstKit("retnet-tiny", [&](const std::vector<int>& tok) { return NaiveRetNetLogits(t, cfg, tok); });
}

TEST(NaiveReference, ReproducesTheTransNormerKit) {
  const auto t = ReadTensors(KitDir("transnormer-tiny") + "/model.safetensors");
  NaiveTransNormer cfg;
  cfg.lrpe = {1, 0};
  CheckNaiveAgainstKit("transnormer-tiny", [&](const std::vector<int>& tok) { return NaiveTransNormerLogits(t, cfg, tok); });
}

struct LayoutCase {
  std::string name;
  ModelFiles files;
  std::function<std::vector<double>(const testing::TensorMap&, const std::vector<int>&)> naive;
  Architecture arch;
  RetNetVariant variant;
};

ModelFiles WithPrefix(ModelFiles m, const std::string& prefix) {
  testing::TensorMap renamed;
  for (auto& [name, t] : m.tensors) {
    t.name = prefix + name;
    renamed[t.name] = std::move(t);
  }
  m.tensors = std::move(renamed);
  return m;
}

std::vector<LayoutCase> Cases() {
  const RetNetShape rs{2, 128, 4, 256, 192, 300};  // dk 32, dv 64
  const RetNetShape fs{2, 128, 4, 256, 256, 300};
  auto retnet = [](NaiveRetNetKind kind, int heads, bool gelu, double eps, std::string prefix = "") {
    NaiveRetNet c;
    c.kind = kind;
    c.n_head = heads;
    c.gelu = gelu;
    c.eps = eps;
    c.scale_embedding = kind != NaiveRetNetKind::kFla;
    c.prefix = prefix;
    return [c](const testing::TensorMap& t, const std::vector<int>& tok) { return NaiveRetNetLogits(t, c, tok); };
  };
  auto tnl = [](int heads, std::vector<int> lrpe, bool scale) {
    NaiveTransNormer c;
    c.n_head = heads;
    c.lrpe = lrpe;
    c.scale_embedding = scale;
    return [c](const testing::TensorMap& t, const std::vector<int>& tok) { return NaiveTransNormerLogits(t, c, tok); };
  };
  std::vector<LayoutCase> v;
  v.push_back({"torchscale", RandomRetNet(RetNetLayout::kTorchscale, rs, 21),
               retnet(NaiveRetNetKind::kTorchscale, 4, false, 1e-6), Architecture::kRetNet, RetNetVariant::kTorchscale});
  v.push_back({"torchscale_decoder_prefix", WithPrefix(RandomRetNet(RetNetLayout::kTorchscale, rs, 22), "decoder."),
               retnet(NaiveRetNetKind::kTorchscale, 4, false, 1e-6, "decoder."), Architecture::kRetNet,
               RetNetVariant::kTorchscale});
  v.push_back({"torchscale_2023_07", RandomRetNet(RetNetLayout::kTorchscaleLegacy, rs, 23),
               retnet(NaiveRetNetKind::kTorchscaleLegacy, 4, true, 1e-5), Architecture::kRetNet,
               RetNetVariant::kTorchscaleLegacy});
  v.push_back({"fla_fused_mlp", RandomRetNet(RetNetLayout::kFlaFusedMlp, fs, 24),
               retnet(NaiveRetNetKind::kFla, 4, false, 1e-6), Architecture::kRetNet, RetNetVariant::kFla});
  v.push_back({"fla_split_mlp", RandomRetNet(RetNetLayout::kFlaSplitMlp, fs, 25),
               retnet(NaiveRetNetKind::kFla, 4, false, 1e-6), Architecture::kRetNet, RetNetVariant::kFla});
  v.push_back({"fla_bf16", RandomRetNet(RetNetLayout::kFlaFusedMlp, fs, 26, DType::kBF16),
               retnet(NaiveRetNetKind::kFla, 4, false, 1e-6), Architecture::kRetNet, RetNetVariant::kFla});
  v.push_back({"transnormer_h4_lrpe101", RandomTransNormer({3, 128, 4, 320, 300, {1, 0, 1}}, 27),
               tnl(4, {1, 0, 1}, true), Architecture::kTransNormer, RetNetVariant::kNone});
  v.push_back({"transnormer_h3_lrpe01", RandomTransNormer({2, 96, 3, 256, 300, {0, 1}}, 28),
               tnl(3, {0, 1}, true), Architecture::kTransNormer, RetNetVariant::kNone});
  v.push_back({"transnormer_h6_bf16", RandomTransNormer({2, 96, 6, 256, 300, {1, 0}}, 29, DType::kBF16),
               tnl(6, {1, 0}, true), Architecture::kTransNormer, RetNetVariant::kNone});
  ModelFiles unscaled = RandomTransNormer({2, 64, 2, 176, 300, {1, 0}}, 30);
  unscaled.config_json = absl::StrReplaceAll(unscaled.config_json, {{R"("no_scale_embedding": false)", R"("no_scale_embedding": true)"}});
  v.push_back({"transnormer_unscaled_embedding", unscaled, tnl(2, {1, 0}, false), Architecture::kTransNormer,
               RetNetVariant::kNone});
  return v;
}

void PrintTo(const LayoutCase& c, std::ostream* os) { *os << c.name; }

class Layouts : public ::testing::TestWithParam<LayoutCase> {};

TEST_P(Layouts, EngineMatchesTheF64Transcription) {
  const LayoutCase& p = GetParam();
  const std::string dir = testing::WriteModelDir("layout-" + p.name, p.files.tensors, p.files.config_json);
  ModelOptions o;
  o.num_threads = 2;
  o.chunk_size = 16;  // the 41-token prompt spans three chunks, the last one partial
  auto model = LoadModel(dir, o);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->config().arch, p.arch);
  EXPECT_EQ((*model)->config().retnet_variant, p.variant);
  const int v = (*model)->config().vocab_size;
  std::mt19937 rng(7);
  std::vector<int> tokens(49);
  for (int& t : tokens) t = static_cast<int>(rng() % v);
  const std::vector<TokenId> prompt(tokens.begin(), tokens.begin() + 41);
  void* state = *(*model)->AllocateStates(1);
  std::vector<float> got(tokens.size() * v);
  SequenceInput seq{prompt, state, true};
  ASSERT_TRUE((*model)->Forward({&seq, 1}, absl::MakeSpan(got).subspan(0, prompt.size() * v)).ok());
  for (size_t i = prompt.size(); i < tokens.size(); ++i) {  // then decode, one token at a time
    TokenId t = tokens[i];
    ASSERT_TRUE((*model)->Decode({&t, 1}, {&state, 1}, absl::MakeSpan(got).subspan(i * v, v)).ok());
  }
  // The weights as stored (bf16 cases are rounded on write), widened exactly.
  const std::vector<double> want = p.naive(ReadTensors(dir + "/model.safetensors"), tokens);
  const double diff = MaxDiff(got, 0, want, 0, tokens.size(), v);
  EXPECT_LE(diff, kTolerance) << p.name;
  std::printf("[ layout ] %s max|engine - f64| = %.3g\n", p.name.c_str(), diff);
}

INSTANTIATE_TEST_SUITE_P(RetentionLayouts, Layouts, ::testing::ValuesIn(Cases()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace retain::engine
