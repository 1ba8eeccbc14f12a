// One conformance kit's case through a model loaded with given options, compared with the kit's
// reference logits: what the conformance tests of every backend share.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/tools/conformance_case.h"
#include "retain/engine/model.h"
#include "retain/engine/status_macros.h"

namespace retain::testing {

struct KitResult {
  double max_abs_diff = 0;  // over every logit of the case
  double tolerance = 0;     // the kit's tolerance.max_abs
};

// batch: as RunConformanceCase. An error when the model does not load or run, or the kit names
// no positive tolerance.
inline absl::StatusOr<KitResult> RunKit(const std::string& kit_dir, const engine::ModelOptions& options, bool batch) {
  RETAIN_ASSIGN_OR_RETURN(auto model, engine::LoadModel(kit_dir, options));
  RETAIN_ASSIGN_OR_RETURN(engine::ConformanceCase c, engine::ReadConformanceCase(kit_dir + "/case.json"));
  if (!(c.max_abs > 0)) return absl::InvalidArgumentError(absl::StrCat(kit_dir, "/case.json: no positive tolerance"));
  RETAIN_ASSIGN_OR_RETURN(engine::CaseOutput out, engine::RunConformanceCase(*model, c, batch));
  RETAIN_ASSIGN_OR_RETURN(double diff, engine::MaxAbsDiff(out, kit_dir + "/expected.safetensors"));
  return KitResult{diff, c.max_abs};
}

}  // namespace retain::testing
