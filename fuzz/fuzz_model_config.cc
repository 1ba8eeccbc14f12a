// config.json parsing and its checks against the tensor shapes: the input's first byte picks
// the weights (a conformance kit or the shipped model, loaded once), the rest is config.json.
// Whatever the text, LoadModelConfig gives a config or a status, and a config it accepts builds
// a model (LoadModelFromWeights checks every tensor against it) or gives a status.
#include <array>
#include <memory>
#include <string>

#include "fuzz/fuzz_support.h"
#include "retain/engine/model_config.h"

using namespace retain;

namespace {

constexpr std::array<const char*, 6> kWeights = {
    "tests/data/conformance/rwkv7-tiny/model.safetensors",
    "tests/data/conformance/rwkv7-tiny-bf16/model.safetensors",
    "tests/data/conformance/rwkv4-tiny/model.safetensors",
    "tests/data/conformance/retnet-tiny/model.safetensors",
    "tests/data/conformance/transnormer-tiny/model.safetensors",
    "models/rwkv7-kjv-byte/model.safetensors",
};

const engine::SafetensorsFile& Weights(size_t i) {
  static std::array<std::unique_ptr<engine::SafetensorsFile>, kWeights.size()> files;
  if (!files[i]) files[i] = fuzz::OpenWeights(kWeights[i]);
  return *files[i];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const engine::SafetensorsFile& weights = Weights(data[0] % kWeights.size());
  fuzz::WriteScratchFile("config.json", std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  const std::string& dir = fuzz::ScratchDir();
  auto config = engine::LoadModelConfig(dir, weights);
  if (!config.ok()) return 0;
  // The tokenizer is not loaded: config.json may name any file as its vocabulary.
  (void)engine::LoadModelFromWeights(weights, dir, fuzz::OneThread());
  return 0;
}
