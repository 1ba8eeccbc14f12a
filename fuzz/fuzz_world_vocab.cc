// The RWKV World vocabulary file parser: any file either loads or gives a status naming the
// line. A vocabulary that loads has every single byte, so encoding its own text and decoding
// the ids must give the text back.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz/fuzz_support.h"

using namespace retain;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto tokenizer = engine::LoadRwkvWorldTokenizer(fuzz::WriteScratchFile("vocab.txt", text));
  if (!tokenizer.ok()) return 0;
  const std::vector<engine::TokenId> ids = (*tokenizer)->Encode(text);
  auto decoded = (*tokenizer)->Decode(ids);
  if (!decoded.ok() || *decoded != text) {
    std::fprintf(stderr, "a loaded vocabulary does not round-trip its own text\n");
    std::abort();
  }
  return 0;
}
