#include "fuzz/fuzz_support.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace retain::fuzz {
namespace {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "fuzz_support: %s\n", what.c_str());
  std::abort();
}

struct Scratch {
  std::string dir;
  Scratch() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/retain-fuzz-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) Die("mkdtemp " + pattern + " failed");
    dir = pattern;
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

}  // namespace

const std::string& ScratchDir() {
  static Scratch scratch;
  return scratch.dir;
}

std::string WriteScratchFile(const std::string& name, std::string_view bytes) {
  const std::string path = ScratchDir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) Die("cannot write " + path);
  return path;
}

std::string SourcePath(const std::string& relative) { return std::string(RETAIN_SOURCE_DIR) + "/" + relative; }

const engine::Tokenizer& WorldTokenizer() {
  static const engine::Tokenizer* tokenizer = [] {
    auto t = engine::LoadRwkvWorldTokenizer(SourcePath("tests/data/conformance/tokenizer/rwkv_vocab_v20230424.txt"));
    if (!t.ok()) Die(std::string(t.status().message()));
    return t->release();
  }();
  return *tokenizer;
}

std::unique_ptr<engine::SafetensorsFile> OpenWeights(const std::string& relative_path) {
  auto f = engine::SafetensorsFile::Open(SourcePath(relative_path));
  if (!f.ok()) Die(std::string(f.status().message()));
  return *std::move(f);
}

engine::ModelOptions OneThread() {
  engine::ModelOptions o;
  o.num_threads = 1;
  return o;
}

}  // namespace retain::fuzz

#include "server/model_fingerprint.h"

namespace retain::fuzz {

ServedModel& ShippedModel(bool with_tokenizer) {
  static ServedModel served[2];
  ServedModel& s = served[with_tokenizer ? 1 : 0];
  if (s.engine) return s;
  const std::string dir = SourcePath("models/rwkv7-kjv-byte");
  auto model = engine::LoadModel(dir, OneThread());
  if (!model.ok()) Die(std::string(model.status().message()));
  std::unique_ptr<engine::Tokenizer> tokenizer;
  if (with_tokenizer) {
    auto t = engine::LoadModelTokenizer((*model)->config());
    if (!t.ok()) Die(std::string(t.status().message()));
    tokenizer = *std::move(t);
  }
  auto fingerprint = server::ModelFingerprint(dir);
  if (!fingerprint.ok()) Die(std::string(fingerprint.status().message()));
  s.fingerprint = *fingerprint;
  s.architecture = std::string(engine::ArchitectureName((*model)->config().arch));
  engine::ServingOptions so;
  so.state_budget_bytes = 4 * (*model)->state_bytes();
  so.eos_token_id = -1;  // as retain-server serves a byte-level model
  auto eng = engine::Engine::Create(*std::move(model), std::move(tokenizer), so);
  if (!eng.ok()) Die(std::string(eng.status().message()));
  s.engine = *std::move(eng);
  return s;
}

}  // namespace retain::fuzz
