// Where tests find their data (tests/data: the conformance kits, copied from shared/) and the source
// tree; set by tests/CMakeLists.txt.
#pragma once

#include <string>

namespace retain::testing {

inline std::string DataDir() { return RETAIN_TEST_DATA_DIR; }
inline std::string ConformanceDir() { return DataDir() + "/conformance"; }
inline std::string KitDir(const std::string& kit) { return ConformanceDir() + "/" + kit; }
inline std::string SourceDir() { return RETAIN_SOURCE_DIR; }
// The shipped default model (models/rwkv7-kjv-byte).
inline std::string DefaultModelDir() { return SourceDir() + "/models/rwkv7-kjv-byte"; }

}  // namespace retain::testing
