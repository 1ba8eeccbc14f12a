// RWKV World encode and decode over the real vocabulary: any bytes encode, to ids in range, and
// decode back to the same bytes; the same bytes read as ids decode or give a status (an id the
// vocabulary lacks), never crash; the streaming UTF-8 tail is at most 3 bytes.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz/fuzz_support.h"

using namespace retain;

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const engine::Tokenizer& tokenizer = fuzz::WorldTokenizer();
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  const std::vector<engine::TokenId> ids = tokenizer.Encode(text);
  for (engine::TokenId id : ids) {
    if (id <= 0 || id >= tokenizer.vocab_size()) Fail("Encode gave an id out of range");
  }
  auto decoded = tokenizer.Decode(ids);
  if (!decoded.ok() || *decoded != text) Fail("Decode(Encode(text)) != text");
  if (engine::IncompleteUtf8Tail(text) > 3) Fail("IncompleteUtf8Tail > 3");

  // The bytes as ids, any value (negative, past the vocabulary).
  std::vector<engine::TokenId> raw(size / sizeof(engine::TokenId));
  if (!raw.empty()) std::memcpy(raw.data(), data, raw.size() * sizeof(engine::TokenId));
  (void)tokenizer.Decode(raw);
  for (engine::TokenId id : raw) (void)tokenizer.TokenBytes(id);
  return 0;
}
