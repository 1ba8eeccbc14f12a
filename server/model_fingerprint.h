// A model's fingerprint: XXH3-64 over the bytes of model.safetensors, then config.json when it
// exists. Session exports carry it, so a state is only ever imported into the weights it was
// computed with. Reads the files in 1 MiB pieces (the weights are never held twice).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace retain::server {

// NotFound / Internal naming the file when it cannot be read.
absl::StatusOr<uint64_t> ModelFingerprint(const std::string& dir);

// 16 lowercase hex digits.
std::string FingerprintHex(uint64_t fingerprint);

}  // namespace retain::server
