// Where tests find shared/ (conformance kits) and the source tree; set by tests/CMakeLists.txt.
#pragma once

#include <string>

namespace retain::testing {

inline std::string SharedDir() { return RETAIN_SHARED_DIR; }
inline std::string KitDir(const std::string& kit) { return SharedDir() + "/conformance/" + kit; }
inline std::string SourceDir() { return RETAIN_SOURCE_DIR; }

}  // namespace retain::testing
