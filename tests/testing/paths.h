// Where tests find their data (tests/data: the conformance kits, copied from shared/) and the source
// tree; set by tests/CMakeLists.txt.
#pragma once

#include <cstdlib>
#include <string>

namespace retain::testing {

// $RETAIN_TEST_DATA_DIR overrides the build's folder: scripts/gpu-check.sh's bundle runs the CUDA
// tests on another machine, with the kits beside them.
inline std::string DataDir() {
  const char* env = std::getenv("RETAIN_TEST_DATA_DIR");
  return env != nullptr && *env != '\0' ? env : RETAIN_TEST_DATA_DIR;
}
inline std::string ConformanceDir() { return DataDir() + "/conformance"; }
inline std::string KitDir(const std::string& kit) { return ConformanceDir() + "/" + kit; }
inline std::string SourceDir() { return RETAIN_SOURCE_DIR; }
// The shipped default model (models/rwkv7-kjv-byte).
inline std::string DefaultModelDir() { return SourceDir() + "/models/rwkv7-kjv-byte"; }

}  // namespace retain::testing
