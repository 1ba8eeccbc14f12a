// Models with random weights at real shapes, built as safetensors images in memory (no disk), so
// the benchmark goes through the same loader and validation as a real checkpoint.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "retain/engine/dtype.h"

namespace retain::bench {

struct RandomModelImage {
  std::vector<uint8_t> bytes;  // a complete safetensors file
  std::string config_json;     // "" when the shapes say everything
};

// arch: rwkv7 | rwkv4; shape names as in the issue (rwkv7: 0.1b 0.4b 1.5b; rwkv4: 169m 430m 1.5b
// 3b 7b 14b). InvalidArgument lists the known shapes.
absl::StatusOr<RandomModelImage> BuildRandomModel(const std::string& arch, const std::string& shape,
                                                  engine::DType dtype, uint64_t seed);

}  // namespace retain::bench
