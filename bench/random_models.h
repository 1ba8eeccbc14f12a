// Models with random weights at real shapes, built as safetensors images in memory (no disk), so
// the benchmark goes through the same loader and validation as a real checkpoint.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "retain/engine/dtype.h"

namespace retain::bench {

struct RandomModelImage {
  std::vector<uint8_t> bytes;  // a complete safetensors file
  std::string config_json;     // "" when the shapes say everything
  // For the roofline: the embedding (one row gathered per token) and the output head. A tied
  // head is the embedding matrix itself, read whole by every decode step.
  std::string embedding = "emb.weight";
  std::string head = "head.weight";
  bool tied = false;
};

// "f32" | "f16" | "bf16", the --dtype flag of the bench tools.
absl::StatusOr<engine::DType> ParseDType(const std::string& name);

// arch: rwkv7 | rwkv4 | retnet | transnormer; shape names as in the issues (rwkv7: 0.1b 0.4b 1.5b;
// rwkv4: 169m 430m 1.5b 3b 7b 14b; retnet: small 1.3b; transnormer: 1b). InvalidArgument lists the
// known shapes.
absl::StatusOr<RandomModelImage> BuildRandomModel(const std::string& arch, const std::string& shape,
                                                  engine::DType dtype, uint64_t seed);

// The image's config.json in a fresh temporary directory, removed again on destruction; path() is
// "" for families whose shapes say everything. Pass path() to LoadModelFromWeights.
class ConfigDir {
 public:
  static absl::StatusOr<std::unique_ptr<ConfigDir>> Write(const RandomModelImage& image);
  ~ConfigDir();
  ConfigDir(const ConfigDir&) = delete;
  ConfigDir& operator=(const ConfigDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  ConfigDir() = default;
  std::string path_;
};

}  // namespace retain::bench
