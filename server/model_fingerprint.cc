#include "server/model_fingerprint.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "xxhash.h"

namespace retain::server {
namespace {

struct StateDeleter {
  void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
};
struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

absl::Status HashFile(const std::string& path, bool required, XXH3_state_t* state, std::vector<char>& buf) {
  std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) {
    if (!required && errno == ENOENT) return absl::OkStatus();
    return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) XXH3_64bits_update(state, buf.data(), n);
  if (std::ferror(f.get())) return absl::InternalError(absl::StrCat("cannot read ", path));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint64_t> ModelFingerprint(const std::string& dir) {
  std::unique_ptr<XXH3_state_t, StateDeleter> state(XXH3_createState());
  if (!state || XXH3_64bits_reset(state.get()) == XXH_ERROR) return absl::InternalError("XXH3_createState failed");
  std::vector<char> buf(size_t{1} << 20);
  absl::Status st = HashFile(dir + "/model.safetensors", /*required=*/true, state.get(), buf);
  if (!st.ok()) return st;
  st = HashFile(dir + "/config.json", /*required=*/false, state.get(), buf);
  if (!st.ok()) return st;
  return static_cast<uint64_t>(XXH3_64bits_digest(state.get()));
}

std::string FingerprintHex(uint64_t fingerprint) { return absl::StrFormat("%016x", fingerprint); }

}  // namespace retain::server
