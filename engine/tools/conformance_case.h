// Runs a conformance case (shared/conformance/README.md) through a Model and compares results
// with a kit's expected.safetensors. Used by `retain-run --case` and by the conformance tests.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "retain/engine/model.h"

namespace retain::engine {

struct ConformanceCase {
  std::vector<std::vector<TokenId>> prompts;
  std::vector<std::vector<TokenId>> decode;
  double max_abs = 0;  // tolerance.max_abs
};

absl::StatusOr<ConformanceCase> ReadConformanceCase(const std::string& path);

// Name -> ([rows, vocab] row-major f32). Names: prompt{i}.logits, prompt{i}.decode_logits.
struct CaseOutput {
  std::map<std::string, std::vector<float>> tensors;
  int vocab = 0;
};

// batch = false: each prompt alone, then its decode tokens one at a time.
// batch = true: all prompts in one Forward, then each decode step as one batch of every session
// that still has a token (so sessions sit at different positions).
absl::StatusOr<CaseOutput> RunConformanceCase(Model& model, const ConformanceCase& c, bool batch);

absl::Status WriteCaseOutput(const CaseOutput& out, const std::string& path);

// Largest |actual - expected| over every tensor of `expected_path`; error when a tensor is
// missing or shaped differently.
absl::StatusOr<double> MaxAbsDiff(const CaseOutput& actual, const std::string& expected_path);

}  // namespace retain::engine
