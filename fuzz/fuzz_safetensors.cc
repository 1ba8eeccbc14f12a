// The safetensors reader and the model loader behind it: any bytes given as model.safetensors
// either load or give a status; a loaded model's tensors lie inside the image and a model built
// from them runs a step.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "retain/engine/model_config.h"

using namespace retain;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = engine::SafetensorsFile::FromMemory("fuzz.safetensors", std::vector<uint8_t>(data, data + size));
  if (!file.ok()) return 0;
  // Read each tensor's first and last byte: ASan catches a range Open let past the image.
  unsigned sum = 0;
  for (const auto& [name, t] : (*file)->tensors()) {
    if (t.nbytes == 0) continue;
    const auto* p = static_cast<const unsigned char*>(t.data);
    sum += p[0] + p[t.nbytes - 1];
  }
  if (sum == 0xFFFFFFFFu) std::abort();  // keeps the reads

  // Shapes only (no config.json), then the whole loader: every tensor checked by name and shape.
  if (!engine::LoadModelConfig("", **file).ok()) return 0;
  auto model = engine::LoadModelFromWeights(**file, "", fuzz::OneThread());
  if (!model.ok()) return 0;
  // A loaded model must run: one token through a fresh state.
  auto& m = **model;
  auto state = m.AllocateStates(1);
  if (!state.ok()) return 0;
  const engine::TokenId token = 0;
  std::vector<float> logits(static_cast<size_t>(m.config().vocab_size));
  engine::SequenceInput seq{absl::MakeConstSpan(&token, 1), *state, false};
  absl::Status st = m.Forward(absl::MakeConstSpan(&seq, 1), absl::MakeSpan(logits));
  if (!st.ok()) {
    std::fprintf(stderr, "a loaded model failed its first step: %s\n", st.ToString().c_str());
    std::abort();
  }
  return 0;
}
