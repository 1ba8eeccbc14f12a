// What the fuzz targets share: a private scratch directory for parsers that take a path, and the
// paths of the test data the targets load once (the shipped model, the conformance kits).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "retain/engine/model.h"
#include "retain/engine/safetensors.h"
#include "retain/engine/serving.h"
#include "retain/engine/tokenizer.h"

namespace retain::fuzz {

// This process's own scratch directory (made once under $TMPDIR, removed at exit), so parallel
// fuzzers never share a file.
const std::string& ScratchDir();

// Writes `bytes` to ScratchDir()/name (replacing it) and returns the path; aborts on an I/O
// error, which is the machine's fault, not the input's.
std::string WriteScratchFile(const std::string& name, std::string_view bytes);

// The checkout the fuzzers were built from (models/, tests/data/conformance/).
std::string SourcePath(const std::string& relative);

// Loaded once and kept: aborts when the checkout's file does not load, since then the target
// would fuzz nothing.
const engine::Tokenizer& WorldTokenizer();            // tests/data/conformance/tokenizer
std::unique_ptr<engine::SafetensorsFile> OpenWeights(const std::string& relative_path);

// The engine's options for a fuzzer: one thread, so a run costs one core.
engine::ModelOptions OneThread();

}  // namespace retain::fuzz

namespace retain::fuzz {

// The shipped model (models/rwkv7-kjv-byte) served as retain-server serves it: an engine with its
// byte tokenizer (or none), a few slots, and the identity an import must match.
struct ServedModel {
  std::unique_ptr<engine::Engine> engine;
  std::string architecture;
  uint64_t fingerprint = 0;
};
// `with_tokenizer` false: the same model served with token ids only. Made once each.
ServedModel& ShippedModel(bool with_tokenizer);

}  // namespace retain::fuzz
