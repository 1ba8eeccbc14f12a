// An independent double-precision transcription of the RetNet and TransNormerLLM forward passes,
// written from the equations of shared/spec/retnet-transnormer.md (A.2-A.4, A.7, B.3-B.4), not
// from the engine: the parallel form over a whole token sequence, no chunking, no state, no
// shared code with engine/. Tests use it for the checkpoint layouts no conformance kit covers
// (fla-hub, torchscale Jul 2023, bf16, non-power-of-two heads); it is itself checked against the
// kits. Quadratic in the sequence length: for short sequences only.
#pragma once

#include <string>
#include <vector>

#include "tests/testing/model_files.h"

namespace retain::testing {

enum class NaiveRetNetKind { kTorchscale, kTorchscaleLegacy, kFla };

struct NaiveRetNet {
  NaiveRetNetKind kind = NaiveRetNetKind::kTorchscale;
  int n_head = 2;
  double eps = 1e-6;
  bool gelu = false;         // torchscale FFN activation (else swish)
  bool scale_embedding = true;  // ×sqrt(d) (torchscale with no_scale_embedding false)
  std::string prefix;        // torchscale tensor-name prefix ("" or "decoder.")
};

// Logits [tokens.size() × vocab], row-major.
std::vector<double> NaiveRetNetLogits(const TensorMap& t, const NaiveRetNet& cfg, const std::vector<int>& tokens);

struct NaiveTransNormer {
  int n_head = 2;
  bool scale_embedding = true;
  std::vector<int> lrpe;  // per layer
};

std::vector<double> NaiveTransNormerLogits(const TensorMap& t, const NaiveTransNormer& cfg,
                                           const std::vector<int>& tokens);

}  // namespace retain::testing
