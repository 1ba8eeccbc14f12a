// LoadModel: open the weights, read the config, hand over to the family's loader. The weight file
// is unmapped when this returns: every tensor has been copied into backend memory.
#include "absl/strings/str_cat.h"
#include "engine/model/families.h"
#include "retain/engine/model.h"
#include "retain/engine/safetensors.h"
#include "retain/engine/status_macros.h"

namespace retain::engine {

absl::StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& dir, const ModelOptions& options) {
  RETAIN_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(absl::StrCat(dir, "/model.safetensors")));
  return LoadModelFromWeights(*file, dir, options);
}

absl::StatusOr<std::unique_ptr<Model>> LoadModelFromWeights(const SafetensorsFile& weights,
                                                            const std::string& config_dir,
                                                            const ModelOptions& options) {
  if (options.max_step_tokens < 1 || options.max_step_tokens > 65536) {
    return absl::InvalidArgumentError(absl::StrCat("max_step_tokens must be in [1, 65536], got ",
                                                   options.max_step_tokens));
  }
  RETAIN_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(config_dir, weights));
  RETAIN_ASSIGN_OR_RETURN(auto backend, CreateBackend(options.backend, {options.num_threads}));
  RETAIN_RETURN_IF_ERROR(backend->CheckArchitecture(config.arch));
  switch (config.arch) {
    case Architecture::kRwkv7: return LoadRwkv7(config, options, weights, std::move(backend));
    case Architecture::kRwkv4: return LoadRwkv4(config, options, weights, std::move(backend));
    case Architecture::kRetNet: return LoadRetNet(config, options, weights, std::move(backend));
    case Architecture::kTransNormer: return LoadTransNormer(config, options, weights, std::move(backend));
  }
  return absl::InternalError("unhandled architecture");
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadModelTokenizer(const ModelConfig& config) {
  if (config.tokenizer_type == "byte") return MakeByteTokenizer();
  if (config.tokenizer_type == "rwkv_world") return LoadRwkvWorldTokenizer(config.tokenizer_vocab);
  return absl::NotFoundError("the model's config.json names no tokenizer");
}

}  // namespace retain::engine
