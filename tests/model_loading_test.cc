// Loading a model directory: hyper-parameters from config.json or inferred from shapes, and every
// way a checkpoint can be wrong for its architecture reported as an error that names the tensor
// (or, for RetNet and TransNormerLLM, the config field or the variant's tell-tale tensors).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/tools/conformance_case.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "retain/engine/model.h"
#include "tests/testing/model_files.h"
#include "tests/testing/paths.h"

namespace retain::engine {
namespace {

using retain::testing::KitDir;
using retain::testing::ReadTensors;
using retain::testing::TensorMap;
using retain::testing::WriteModelDir;

absl::Status LoadStatus(const std::string& dir) { return LoadModel(dir).status(); }

void ExpectError(const absl::Status& s, absl::StatusCode code, const std::vector<std::string>& parts) {
  EXPECT_EQ(s.code(), code) << s;
  for (const auto& p : parts) EXPECT_NE(s.message().find(p), std::string_view::npos) << "'" << p << "' not in: " << s;
}

TEST(ModelLoading, KitsWithoutConfigInferTheSameModel) {
  for (const char* kit : {"rwkv7-tiny", "rwkv4-tiny"}) {
    const std::string dir = WriteModelDir(std::string("noconfig-") + kit, ReadTensors(KitDir(kit) + "/model.safetensors"));
    auto inferred = LoadModel(dir);
    auto given = LoadModel(KitDir(kit));
    ASSERT_TRUE(inferred.ok() && given.ok()) << inferred.status();
    const ModelConfig& a = (*inferred)->config();
    const ModelConfig& b = (*given)->config();
    EXPECT_EQ(a.arch, b.arch);
    EXPECT_EQ(a.n_layer, 2);
    EXPECT_EQ(a.n_embd, 64);
    EXPECT_EQ(a.vocab_size, 256);
    EXPECT_EQ(a.dim_ffn, 256);
    EXPECT_EQ(a.head_size, b.head_size);
    EXPECT_EQ(a.d_mv_lora, b.d_mv_lora);
    auto c = ReadConformanceCase(KitDir(kit) + "/case.json");
    auto out = RunConformanceCase(**inferred, *c, true);
    ASSERT_TRUE(out.ok());
    EXPECT_LE(*MaxAbsDiff(*out, KitDir(kit) + "/expected.safetensors"), c->max_abs);
  }
}

TEST(ModelLoading, ReadsTheKitConfigs) {
  auto m = LoadModel(KitDir("rwkv7-tiny"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->config().n_head, 4);
  EXPECT_EQ((*m)->config().head_size, 16);
  EXPECT_EQ((*m)->config().d_decay_lora, 32);
  EXPECT_EQ((*m)->config().d_gate_lora, 48);
  // Official layout: per layer two shift vectors and H × N × N of WKV state, all f32.
  EXPECT_EQ((*m)->state_bytes(), 2u * (2 * 64 + 4 * 16 * 16) * 4);
  auto v4 = LoadModel(KitDir("rwkv4-tiny"));
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ((*v4)->state_bytes(), 2u * 5 * 64 * 4);
}

TEST(ModelLoading, WrongShapeForTheArchitectureNamesTheTensor) {
  TensorMap t = ReadTensors(KitDir("rwkv7-tiny") + "/model.safetensors");
  auto& key = t["blocks.1.att.key.weight"];
  key.shape = {64, 32};
  key.values.resize(64 * 32);
  ExpectError(LoadStatus(WriteModelDir("badshape", t)), absl::StatusCode::kInvalidArgument,
              {"blocks.1.att.key.weight", "[64, 32]", "[64, 64]"});
}

TEST(ModelLoading, MissingTensorIsNamed) {
  TensorMap t = ReadTensors(KitDir("rwkv7-tiny") + "/model.safetensors");
  t.erase("blocks.1.att.ln_x.bias");
  t.erase("ln_out.weight");
  ExpectError(LoadStatus(WriteModelDir("missing", t)), absl::StatusCode::kInvalidArgument,
              {"missing tensor 'blocks.1.att.ln_x.bias'", "missing tensor 'ln_out.weight'"});
}

TEST(ModelLoading, ExtraTensorIsNamed) {
  TensorMap t = ReadTensors(KitDir("rwkv4-tiny") + "/model.safetensors");
  // Experimental v4 "tiny attention" checkpoints carry these; released models do not (spec §1.1).
  t["blocks.0.head_q.weight"] = {"blocks.0.head_q.weight", DType::kF32, {4, 64}, std::vector<float>(256)};
  ExpectError(LoadStatus(WriteModelDir("extra", t)), absl::StatusCode::kInvalidArgument,
              {"unexpected tensor", "blocks.0.head_q.weight"});
}

TEST(ModelLoading, Block0ValueResidualTensorsMayBeAbsent) {
  TensorMap t = ReadTensors(KitDir("rwkv7-tiny") + "/model.safetensors");
  for (const char* n : {"blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2"}) t.erase(n);
  EXPECT_TRUE(LoadStatus(WriteModelDir("nov0", t)).ok());
}

TEST(ModelLoading, ConfigThatDisagreesWithTheShapesIsRejected) {
  TensorMap t = ReadTensors(KitDir("rwkv7-tiny") + "/model.safetensors");
  ExpectError(LoadStatus(WriteModelDir("cfg-width", t, R"({"architecture": "rwkv7", "n_embd": 32})")),
              absl::StatusCode::kInvalidArgument, {"n_embd", "32", "64"});
  ExpectError(LoadStatus(WriteModelDir("cfg-layers", t, R"({"n_layer": 3})")),
              absl::StatusCode::kInvalidArgument, {"n_layer", "3"});
  ExpectError(LoadStatus(WriteModelDir("cfg-json", t, R"({"n_layer": )")),
              absl::StatusCode::kInvalidArgument, {"config.json", "JSON"});
  ExpectError(LoadStatus(WriteModelDir("cfg-type", t, R"({"n_layer": "two"})")),
              absl::StatusCode::kInvalidArgument, {"n_layer", "integer"});
  ExpectError(LoadStatus(WriteModelDir("cfg-arch", t, R"({"architecture": "mamba"})")),
              absl::StatusCode::kUnimplemented, {"mamba"});
  ExpectError(LoadStatus(WriteModelDir("cfg-tok", t, R"({"tokenizer": "sentencepiece"})")),
              absl::StatusCode::kInvalidArgument, {"sentencepiece"});
}

TEST(ModelLoading, Rwkv4TensorsUnderAnRwkv7ConfigAreReported) {
  TensorMap t = ReadTensors(KitDir("rwkv4-tiny") + "/model.safetensors");
  ExpectError(LoadStatus(WriteModelDir("v4-as-v7", t, R"({"architecture": "rwkv7"})")),
              absl::StatusCode::kInvalidArgument, {"blocks.0.att.r_k"});
}

TEST(ModelLoading, MissingOrBrokenWeightFile) {
  ExpectError(LoadStatus(::testing::TempDir() + "/no-such-model"), absl::StatusCode::kNotFound, {"model.safetensors"});
  const std::string dir = ::testing::TempDir() + "/retain_models/broken";
  std::filesystem::create_directories(dir);
  { std::ofstream(dir + "/model.safetensors") << "not a safetensors file"; }
  EXPECT_EQ(LoadStatus(dir).code(), absl::StatusCode::kInvalidArgument);
}

// ---- RetNet and TransNormerLLM ----------------------------------------------------------------

std::string KitConfig(const std::string& kit) {
  std::ifstream in(KitDir(kit) + "/config.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The kit's config.json with `patch` merged in (a null value removes the field).
std::string PatchedConfig(const std::string& kit, const nlohmann::json& patch) {
  nlohmann::json j = nlohmann::json::parse(KitConfig(kit));
  j.merge_patch(patch);
  return j.dump();
}

TEST(ModelLoading, RetNetAndTransNormerKitsLoadAsTheirVariants) {
  auto r = LoadModel(KitDir("retnet-tiny"));
  ASSERT_TRUE(r.ok()) << r.status();
  const ModelConfig& rc = (*r)->config();
  EXPECT_EQ(rc.arch, Architecture::kRetNet);
  EXPECT_EQ(rc.retnet_variant, RetNetVariant::kTorchscale);
  EXPECT_EQ(rc.n_head, 2);
  EXPECT_EQ(rc.head_size, 32);
  EXPECT_EQ(rc.value_head_size, 64);
  EXPECT_EQ(rc.dim_ffn, 128);
  EXPECT_EQ(rc.ffn_activation, "swish");
  EXPECT_FLOAT_EQ(rc.embed_scale, 8.0f);  // sqrt(64): no_scale_embedding is false
  EXPECT_FALSE(rc.tie_embeddings);
  // Position header (16 floats) + per layer H × dk × dv.
  EXPECT_EQ((*r)->state_bytes(), (16u + 2 * 2 * 32 * 64) * 4);
  auto t = LoadModel(KitDir("transnormer-tiny"));
  ASSERT_TRUE(t.ok()) << t.status();
  const ModelConfig& tc = (*t)->config();
  EXPECT_EQ(tc.arch, Architecture::kTransNormer);
  EXPECT_EQ(tc.lrpe_layers, (std::vector<int>{1, 0}));
  EXPECT_TRUE(tc.tie_embeddings);
  // The kit README's state shapes: [1, 2, 64, 32] (LRPE doubles the key width) and [1, 2, 32, 32].
  EXPECT_EQ((*t)->state_bytes(), (16u + 2 * 64 * 32 + 2 * 32 * 32) * 4);
}

TEST(ModelLoading, UnknownRetNetVariantNamesWhatWasFound) {
  TensorMap t = ReadTensors(KitDir("retnet-tiny") + "/model.safetensors");
  // A GLU gate (torchscale since Sep 2023) together with projection biases (Jul 2023): no known
  // implementation wrote that.
  t["layers.0.retention.q_proj.bias"] = {"layers.0.retention.q_proj.bias", DType::kF32, {64}, std::vector<float>(64)};
  ExpectError(LoadStatus(WriteModelDir("retnet-mixed", t, KitConfig("retnet-tiny"))), absl::StatusCode::kInvalidArgument,
              {"unknown RetNet variant", "ffn.gate.weight present", "retention.q_proj.bias present",
               "retention_layer_norm.bias absent"});
  // fla-style and torchscale-style names in one file: the layout is read from the embedding name,
  // and everything of the other layout is reported.
  TensorMap both = ReadTensors(KitDir("retnet-tiny") + "/model.safetensors");
  both["model.embeddings.weight"] = both["embed_tokens.weight"];
  both["model.embeddings.weight"].name = "model.embeddings.weight";
  EXPECT_FALSE(LoadStatus(WriteModelDir("retnet-both", both, KitConfig("retnet-tiny"))).ok());
}

TEST(ModelLoading, RetNetWrongShapeNamesTheTensor) {
  TensorMap t = ReadTensors(KitDir("retnet-tiny") + "/model.safetensors");
  auto& v = t["layers.1.retention.v_proj.weight"];
  v.shape = {96, 64};
  v.values.resize(96 * 64);
  ExpectError(LoadStatus(WriteModelDir("retnet-badshape", t, KitConfig("retnet-tiny"))), absl::StatusCode::kInvalidArgument,
              {"layers.1.retention.v_proj.weight", "[96, 64]", "[128, 64]"});
  TensorMap n = ReadTensors(KitDir("transnormer-tiny") + "/model.safetensors");
  auto& l3 = n["model.layers.1.channel_mixer.l3.weight"];
  l3.shape = {64, 100};
  l3.values.resize(64 * 100);
  ExpectError(LoadStatus(WriteModelDir("tnl-badshape", n, KitConfig("transnormer-tiny"))), absl::StatusCode::kInvalidArgument,
              {"model.layers.1.channel_mixer.l3.weight", "[64, 100]", "[64, 176]"});
}

TEST(ModelLoading, RetNetConfigIsRequiredAndCheckedAgainstTheShapes) {
  const TensorMap t = ReadTensors(KitDir("retnet-tiny") + "/model.safetensors");
  auto load = [&](const std::string& name, const nlohmann::json& patch) {
    return LoadStatus(WriteModelDir(name, t, PatchedConfig("retnet-tiny", patch)));
  };
  ExpectError(LoadStatus(WriteModelDir("retnet-nocfg", t)), absl::StatusCode::kInvalidArgument, {"config.json"});
  // What shapes cannot tell is never guessed: the embedding scale (torchscale's two configs
  // disagree on its default) and the FFN activation.
  ExpectError(load("retnet-noscale", {{"no_scale_embedding", nullptr}}), absl::StatusCode::kInvalidArgument,
              {"no_scale_embedding", "required"});
  ExpectError(load("retnet-noact", {{"activation_fn", nullptr}}), absl::StatusCode::kInvalidArgument, {"activation_fn"});
  ExpectError(load("retnet-relu", {{"activation_fn", "relu"}}), absl::StatusCode::kUnimplemented, {"activation_fn", "relu"});
  ExpectError(load("retnet-heads", {{"decoder_retention_heads", 4}}), absl::StatusCode::kInvalidArgument,
              {"decoder_retention_heads", "4", "retnet_rel_pos.decay", "2"});
  ExpectError(load("retnet-vdim", {{"decoder_value_embed_dim", 96}}), absl::StatusCode::kInvalidArgument,
              {"decoder_value_embed_dim", "96", "128"});
  ExpectError(load("retnet-deepnorm", {{"deepnorm", true}}), absl::StatusCode::kUnimplemented, {"deepnorm"});
  // Without the saved decay buffer the head count comes from config.json alone.
  TensorMap no_buffers = t;
  no_buffers.erase("retnet_rel_pos.decay");
  no_buffers.erase("retnet_rel_pos.angle");
  EXPECT_TRUE(LoadStatus(WriteModelDir("retnet-nobuf", no_buffers, KitConfig("retnet-tiny"))).ok());
  ExpectError(LoadStatus(WriteModelDir("retnet-nobuf-noheads", no_buffers,
                                       PatchedConfig("retnet-tiny", {{"decoder_retention_heads", nullptr}}))),
              absl::StatusCode::kInvalidArgument, {"decoder_retention_heads", "required"});
}

TEST(ModelLoading, RetNetSavedBuffersMustBeTheRetNetDecaysAndAngles) {
  TensorMap t = ReadTensors(KitDir("retnet-tiny") + "/model.safetensors");
  ASSERT_TRUE(t.count("retnet_rel_pos.decay") && t.count("retnet_rel_pos.angle")) << KitDir("retnet-tiny");
  t["retnet_rel_pos.decay"].values[1] = -0.5f;  // some other decay than log(1 − 2^−6)
  ExpectError(LoadStatus(WriteModelDir("retnet-decay", t, KitConfig("retnet-tiny"))), absl::StatusCode::kInvalidArgument,
              {"retnet_rel_pos.decay"});
  TensorMap a = ReadTensors(KitDir("retnet-tiny") + "/model.safetensors");
  // NeoX-style 10000^(−2i/dk) angles instead of torchscale's 10000^(−i/(dk/2−1)).
  for (int i = 0; i < 16; ++i) a["retnet_rel_pos.angle"].values[2 * i] = a["retnet_rel_pos.angle"].values[2 * i + 1] =
      std::pow(10000.0f, -2.0f * i / 32);
  ExpectError(LoadStatus(WriteModelDir("retnet-angle", a, KitConfig("retnet-tiny"))), absl::StatusCode::kInvalidArgument,
              {"retnet_rel_pos.angle"});
}

TEST(ModelLoading, FlaRetNetConfigOptionsWithoutReleasedWeightsAreRefused) {
  const auto m = retain::testing::RandomRetNet(retain::testing::RetNetLayout::kFlaFusedMlp, {}, 3);
  auto load = [&](const std::string& name, const nlohmann::json& patch) {
    nlohmann::json j = nlohmann::json::parse(m.config_json);
    j.merge_patch(patch);
    return LoadStatus(WriteModelDir(name, m.tensors, j.dump()));
  };
  EXPECT_TRUE(load("fla-ok", nlohmann::json::object()).ok());
  ExpectError(load("fla-conv", {{"use_short_conv", true}}), absl::StatusCode::kUnimplemented, {"use_short_conv"});
  ExpectError(load("fla-kv", {{"num_kv_heads", 1}}), absl::StatusCode::kUnimplemented, {"num_kv_heads"});
  ExpectError(load("fla-ffn", {{"intermediate_size", 96}}), absl::StatusCode::kInvalidArgument,
              {"intermediate_size", "96", "mlp.down_proj.weight"});
  ExpectError(load("fla-heads", {{"num_heads", 3}}), absl::StatusCode::kInvalidArgument, {"head count 3"});
  // Without intermediate_size, fla's own rule: 256·ceil(int(d·hidden_ratio·2/3)/256) = 256 for d 64.
  ExpectError(load("fla-ratio", {{"intermediate_size", nullptr}}), absl::StatusCode::kInvalidArgument,
              {"256", "128"});
}

TEST(ModelLoading, TransNormerLrpeListMustMatchTheTensors) {
  const TensorMap t = ReadTensors(KitDir("transnormer-tiny") + "/model.safetensors");
  ExpectError(LoadStatus(WriteModelDir("tnl-lrpe11", t, PatchedConfig("transnormer-tiny", {{"linear_use_lrpe_list", {1, 1}}}))),
              absl::StatusCode::kInvalidArgument, {"missing tensor 'model.layers.1.token_mixer.lrpe.theta'"});
  ExpectError(LoadStatus(WriteModelDir("tnl-lrpe00", t, PatchedConfig("transnormer-tiny", {{"linear_use_lrpe_list", {0, 0}}}))),
              absl::StatusCode::kInvalidArgument, {"unexpected tensor", "model.layers.0.token_mixer.lrpe.theta"});
  ExpectError(LoadStatus(WriteModelDir("tnl-lrpe3", t, PatchedConfig("transnormer-tiny", {{"linear_use_lrpe_list", {1, 0, 0}}}))),
              absl::StatusCode::kInvalidArgument, {"linear_use_lrpe_list"});
  ExpectError(LoadStatus(WriteModelDir("tnl-noscale", t, PatchedConfig("transnormer-tiny", {{"no_scale_embedding", nullptr}}))),
              absl::StatusCode::kInvalidArgument, {"no_scale_embedding"});
  ExpectError(LoadStatus(WriteModelDir("tnl-norm", t, PatchedConfig("transnormer-tiny", {{"norm_type", "layernorm"}}))),
              absl::StatusCode::kUnimplemented, {"norm_type", "layernorm"});
  // HF configs name the family in model_type, not "architecture"; the tensor names also tell.
  EXPECT_TRUE(LoadStatus(WriteModelDir("tnl-hf", t, PatchedConfig("transnormer-tiny",
                                                                  {{"architecture", nullptr}, {"model_type", "transnormer"}}))).ok());
  EXPECT_TRUE(LoadStatus(WriteModelDir("tnl-sniff", t, PatchedConfig("transnormer-tiny", {{"architecture", nullptr}}))).ok());
}

TEST(ModelLoading, TiedHeadStoredTooMustEqualTheEmbedding) {
  TensorMap t = ReadTensors(KitDir("transnormer-tiny") + "/model.safetensors");
  t["lm_head.weight"] = t["model.embed_tokens.weight"];
  t["lm_head.weight"].name = "lm_head.weight";
  const std::string same = WriteModelDir("tnl-head-same", t, KitConfig("transnormer-tiny"));
  auto model = LoadModel(same);
  ASSERT_TRUE(model.ok()) << model.status();
  auto c = ReadConformanceCase(KitDir("transnormer-tiny") + "/case.json");
  auto out = RunConformanceCase(**model, *c, true);
  ASSERT_TRUE(out.ok());
  EXPECT_LE(*MaxAbsDiff(*out, KitDir("transnormer-tiny") + "/expected.safetensors"), c->max_abs);
  t["lm_head.weight"].values[5] += 1.0f;
  ExpectError(LoadStatus(WriteModelDir("tnl-head-diff", t, KitConfig("transnormer-tiny"))),
              absl::StatusCode::kInvalidArgument, {"lm_head.weight", "model.embed_tokens.weight", "tie"});
}

TEST(ModelLoading, RetentionOptionsAreValidated) {
  ModelOptions o;
  o.chunk_size = 0;
  EXPECT_EQ(LoadModel(KitDir("retnet-tiny"), o).status().code(), absl::StatusCode::kInvalidArgument);
  o.chunk_size = 4096;
  EXPECT_EQ(LoadModel(KitDir("transnormer-tiny"), o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace retain::engine
