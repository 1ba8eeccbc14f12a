// Loaders of each model family, called by LoadModel once the config is known.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "retain/engine/model.h"
#include "retain/engine/safetensors.h"

namespace retain::engine {

absl::StatusOr<std::unique_ptr<Model>> LoadRwkv7(const ModelConfig& config, const ModelOptions& options,
                                                 const SafetensorsFile& file, std::unique_ptr<Backend> backend);
absl::StatusOr<std::unique_ptr<Model>> LoadRwkv4(const ModelConfig& config, const ModelOptions& options,
                                                 const SafetensorsFile& file, std::unique_ptr<Backend> backend);
absl::StatusOr<std::unique_ptr<Model>> LoadRetNet(const ModelConfig& config, const ModelOptions& options,
                                                  const SafetensorsFile& file, std::unique_ptr<Backend> backend);
absl::StatusOr<std::unique_ptr<Model>> LoadTransNormer(const ModelConfig& config, const ModelOptions& options,
                                                       const SafetensorsFile& file, std::unique_ptr<Backend> backend);

}  // namespace retain::engine
