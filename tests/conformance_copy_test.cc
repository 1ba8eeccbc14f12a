// tests/data/conformance is a copy of shared/conformance that is never edited (tests/data/README.md):
// every file under it must equal, byte for byte, the file at the same path in the shared folder, and
// the two must hold the same files. The shared folder is $RETAIN_SHARED_CONFORMANCE when that is set
// (then it must exist: CI sets it to force the check), else ../shared/conformance beside the
// checkout; without either the test is skipped, as in a fresh clone on its own.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <system_error>

#include "gtest/gtest.h"
#include "tests/testing/paths.h"

namespace {

namespace fs = std::filesystem;

// Paths of the regular files under `root`, relative to it; `error` says why a walk failed.
std::set<std::string> FilesUnder(const fs::path& root, std::string* error) {
  std::set<std::string> files;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec)) continue;
    files.insert(it->path().lexically_relative(root).generic_string());
  }
  if (ec) *error = root.string() + ": " + ec.message();
  return files;
}

bool ReadAll(const fs::path& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

TEST(ConformanceCopy, MatchesTheSharedKitsFileForFile) {
  const char* env = std::getenv("RETAIN_SHARED_CONFORMANCE");
  const bool forced = env != nullptr && *env != '\0';
  const fs::path shared = forced ? fs::path(env) : fs::path(RETAIN_SHARED_CONFORMANCE_DEFAULT);
  if (!fs::is_directory(shared)) {
    if (forced) FAIL() << "RETAIN_SHARED_CONFORMANCE is " << shared << ", which is not a folder";
    GTEST_SKIP() << "no shared conformance folder at " << shared
                 << " (RETAIN_SHARED_CONFORMANCE is not set and ../shared/conformance is not beside the checkout), "
                 << "so the copy in " << retain::testing::ConformanceDir() << " cannot be compared with it";
  }
  const fs::path copy = retain::testing::ConformanceDir();
  ASSERT_TRUE(fs::is_directory(copy)) << copy << " is not a folder: the copy of " << shared << " is missing";

  std::string error;
  const std::set<std::string> want = FilesUnder(shared, &error);
  ASSERT_TRUE(error.empty()) << error;
  const std::set<std::string> have = FilesUnder(copy, &error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_FALSE(want.empty()) << "no files under " << shared;

  for (const std::string& f : want)
    if (have.count(f) == 0) ADD_FAILURE() << f << " is in " << shared << " but missing from " << copy;
  for (const std::string& f : have)
    if (want.count(f) == 0) ADD_FAILURE() << f << " is in " << copy << " but not in " << shared;
  int compared = 0;
  for (const std::string& f : want) {
    if (have.count(f) == 0) continue;
    std::string a, b;
    ASSERT_TRUE(ReadAll(shared / f, &a)) << "cannot read " << shared / f;
    ASSERT_TRUE(ReadAll(copy / f, &b)) << "cannot read " << copy / f;
    if (a != b)
      ADD_FAILURE() << f << " differs: " << copy / f << " (" << b.size() << " bytes) is not a copy of "
                    << shared / f << " (" << a.size() << " bytes); copy the folder again, never edit it";
    ++compared;
  }
  std::printf("[ conformance copy ] %d files of %s compared with %s\n", compared, copy.c_str(), shared.c_str());
}

}  // namespace
