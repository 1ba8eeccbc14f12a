// Test model files.
#include "tests/testing/model_files.h"

#include <cmath>
#include <filesystem>
#include <unistd.h>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace retain::testing {

using engine::DType;
using engine::TensorToWrite;

TensorMap ReadTensors(const std::string& path) {
  TensorMap out;
  auto file = engine::SafetensorsFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  if (!file.ok()) return out;
  for (const auto& [name, info] : (*file)->tensors()) {
    TensorToWrite t{name, info.dtype, info.shape, std::vector<float>(info.numel())};
    for (size_t i = 0; i < t.values.size(); ++i) t.values[i] = engine::LoadAsFloat(info.data, info.dtype, i);
    out[name] = std::move(t);
  }
  return out;
}

std::string WriteModelDir(const std::string& name, const TensorMap& tensors, const std::string& config_json) {
  // ctest runs tests as parallel processes sharing TempDir(): keep each process's files apart.
  const std::string dir = absl::StrCat(::testing::TempDir(), "/retain_models_", getpid(), "/", name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::vector<TensorToWrite> list;
  for (const auto& [n, t] : tensors) list.push_back(t);
  EXPECT_TRUE(engine::WriteSafetensors(dir + "/model.safetensors", list).ok());
  if (!config_json.empty()) std::ofstream(dir + "/config.json") << config_json;
  return dir;
}

TensorMap RandomRwkv7(int n_layer, int c, int n, int vocab, int ffn, uint32_t seed) {
  std::mt19937 rng(seed);
  TensorMap m;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, float offset = 0) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    std::normal_distribution<float> dist(0.0f, 1.0f);
    TensorToWrite t{name, DType::kF32, shape, std::vector<float>(numel)};
    for (float& v : t.values) v = offset + scale * dist(rng);
    m[name] = std::move(t);
  };
  const float lin = 1.0f / std::sqrt(static_cast<float>(c));
  const int d = 16;
  add("emb.weight", {vocab, c}, 1.0f);
  add("head.weight", {vocab, c}, lin);
  add("ln_out.weight", {c}, 0.1f, 1.0f);
  add("ln_out.bias", {c}, 0.1f);
  add("blocks.0.ln0.weight", {c}, 0.1f, 1.0f);
  add("blocks.0.ln0.bias", {c}, 0.1f);
  for (int l = 0; l < n_layer; ++l) {
    const std::string p = absl::StrCat("blocks.", l, ".");
    for (const char* ln : {"ln1", "ln2"}) {
      add(p + ln + ".weight", {c}, 0.1f, 1.0f);
      add(p + ln + ".bias", {c}, 0.1f);
    }
    for (const char* x : {"x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "k_a"}) add(p + "att." + x, {1, 1, c}, 0.2f, 0.5f);
    add(p + "att.k_k", {1, 1, c}, 0.2f, 0.85f);
    for (const char* x : {"w0", "a0", "v0"}) add(p + "att." + x, {1, 1, c}, 0.5f);
    for (const char* x : {"w", "a", "v", "g"}) {
      add(p + "att." + x + "1", {c, d}, lin);
      add(p + "att." + x + "2", {d, c}, 0.25f);
    }
    add(p + "att.r_k", {c / n, n}, 0.3f);
    for (const char* x : {"receptance", "key", "value", "output"}) add(p + "att." + x + ".weight", {c, c}, lin);
    add(p + "att.ln_x.weight", {c}, 0.1f, 1.0f);
    add(p + "att.ln_x.bias", {c}, 0.1f);
    add(p + "ffn.x_k", {1, 1, c}, 0.2f, 0.5f);
    add(p + "ffn.key.weight", {ffn, c}, lin);
    add(p + "ffn.value.weight", {c, ffn}, 1.0f / std::sqrt(static_cast<float>(ffn)));
  }
  return m;
}

}  // namespace retain::testing
