// retain-write-model: writes a model directory with random weights at a real shape (the models
// retain-bench builds in memory), so a server or any other tool can load it from disk.
//
//   retain-write-model --arch rwkv7|rwkv4|retnet|transnormer --shape NAME --dtype f32|f16|bf16
//                      [--seed S] [--world-vocab PATH] --out DIR
//
// DIR/model.safetensors holds the tensors under the official checkpoint names; DIR/config.json
// names the architecture (RetNet and TransNormerLLM: their full hyper-parameters) and, with
// --world-vocab, the RWKV World tokenizer at that absolute path. Without it the model has no
// tokenizer and works on token ids alone (a random model's text would be noise anyway). DIR may
// be absent or an empty directory; anything else is refused, nothing is overwritten.
#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "bench/cli.h"
#include "bench/random_models.h"
#include "nlohmann/json.hpp"
#include "retain/engine/status_macros.h"

namespace retain::bench {
namespace {

constexpr char kUsage[] =
    "usage: retain-write-model [--arch rwkv7|rwkv4|retnet|transnormer] [--shape NAME]\n"
    "                          [--dtype f32|f16|bf16] [--seed S] [--world-vocab PATH] --out DIR\n"
    "Writes DIR/model.safetensors (random weights at a real shape, as retain-bench builds them) and\n"
    "DIR/config.json. DIR must be absent or empty. Defaults: --arch rwkv7 --shape 0.1b --dtype f16\n"
    "--seed 1. --world-vocab names the RWKV World vocabulary file (rwkv_vocab_v20230424.txt) for the\n"
    "config's tokenizer; without it the model has none and takes token ids only. An unknown --shape\n"
    "lists the known ones.\n";

struct Options {
  std::string arch = "rwkv7", shape = "0.1b", dtype = "f16", out, world_vocab;
  int seed = 1;
  bool help = false;
};

absl::StatusOr<Options> Parse(int argc, char** argv) {
  Options o;
  RETAIN_RETURN_IF_ERROR(ParseFlags(
      argc, argv,
      {.strings = {{"--arch", &o.arch}, {"--shape", &o.shape}, {"--dtype", &o.dtype}, {"--out", &o.out},
                   {"--world-vocab", &o.world_vocab}},
       .ints = {{"--seed", &o.seed}},
       .doubles = {},
       .switches = {}},
      &o.help));
  if (o.help) return o;
  if (o.out.empty()) return absl::InvalidArgumentError("--out DIR is required");
  return o;
}

// OK when `dir` does not exist (*exists = false) or is an empty directory.
absl::Status CheckDir(const std::string& dir, bool* exists) {
  struct stat st;
  *exists = stat(dir.c_str(), &st) == 0;
  if (!*exists) {
    if (errno != ENOENT) return absl::InternalError(absl::StrCat(dir, ": ", std::strerror(errno)));
    return absl::OkStatus();
  }
  if (!S_ISDIR(st.st_mode)) return absl::AlreadyExistsError(absl::StrCat(dir, " exists and is not a directory"));
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return absl::InternalError(absl::StrCat(dir, ": ", std::strerror(errno)));
  bool empty = true;
  while (dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) empty = false;
  }
  closedir(d);
  if (!empty) return absl::AlreadyExistsError(absl::StrCat(dir, " is not empty: refusing to overwrite it"));
  return absl::OkStatus();
}

absl::Status WriteFile(const std::string& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out.flush()) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::Status Run(const Options& o) {
  RETAIN_ASSIGN_OR_RETURN(engine::DType dtype, ParseDType(o.dtype));
  std::string vocab;
  if (!o.world_vocab.empty()) {
    // The World vocabulary has 65536 tokens: RWKV-7's vocabulary (RWKV-4 uses GPT-NeoX's 50277).
    if (o.arch != "rwkv7") return absl::InvalidArgumentError("--world-vocab fits --arch rwkv7 only (vocabulary 65536)");
    char resolved[PATH_MAX];
    if (realpath(o.world_vocab.c_str(), resolved) == nullptr)
      return absl::NotFoundError(absl::StrCat("--world-vocab ", o.world_vocab, ": ", std::strerror(errno)));
    vocab = resolved;
  }
  // Every check before anything is created, so a refusal leaves nothing behind.
  bool exists = false;
  RETAIN_RETURN_IF_ERROR(CheckDir(o.out, &exists));
  RETAIN_ASSIGN_OR_RETURN(RandomModelImage image, BuildRandomModel(o.arch, o.shape, dtype, static_cast<uint64_t>(o.seed)));
  nlohmann::json config = image.config_json.empty() ? nlohmann::json::object() : nlohmann::json::parse(image.config_json);
  if (!config.contains("architecture") && !config.contains("model_type")) config["architecture"] = o.arch;
  if (!vocab.empty()) config["tokenizer"] = {{"type", "rwkv_world"}, {"vocab", vocab}};
  if (!exists && mkdir(o.out.c_str(), 0755) != 0)
    return absl::InternalError(absl::StrCat("cannot create ", o.out, ": ", std::strerror(errno)));
  RETAIN_RETURN_IF_ERROR(WriteFile(o.out + "/model.safetensors", image.bytes.data(), image.bytes.size()));
  const std::string text = config.dump(2) + "\n";
  RETAIN_RETURN_IF_ERROR(WriteFile(o.out + "/config.json", text.data(), text.size()));
  std::printf("%s: %s %s %s, %zu bytes\n", o.out.c_str(), o.arch.c_str(), o.shape.c_str(), o.dtype.c_str(), image.bytes.size());
  return absl::OkStatus();
}

}  // namespace
}  // namespace retain::bench

int main(int argc, char** argv) {
  return retain::bench::ToolMain("retain-write-model", retain::bench::kUsage, retain::bench::Parse(argc, argv),
                                 retain::bench::Run);
}
