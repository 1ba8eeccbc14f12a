// UTF-8 helper for streaming detokenization: length of an incomplete trailing sequence.
#include <cstddef>
#include <string_view>

#include "retain/engine/tokenizer.h"

namespace retain::engine {
namespace {

// Sequence length announced by a lead byte; 0 for continuation bytes and bytes that can never
// start a valid sequence (C0, C1 are overlong leads, F5..FF exceed U+10FFFF).
size_t SequenceLength(unsigned char c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c >= 0xE0 && c <= 0xEF) return 3;
  if (c >= 0xF0 && c <= 0xF4) return 4;
  return 0;
}

// Whether `c` may follow lead byte `lead` as its first continuation byte; the narrower ranges
// exclude overlong forms, surrogates and code points above U+10FFFF, which no later byte can fix.
bool ValidSecondByte(unsigned char lead, unsigned char c) {
  unsigned char lo = 0x80, hi = 0xBF;
  if (lead == 0xE0) lo = 0xA0;
  if (lead == 0xED) hi = 0x9F;
  if (lead == 0xF0) lo = 0x90;
  if (lead == 0xF4) hi = 0x8F;
  return c >= lo && c <= hi;
}

bool IsContinuation(unsigned char c) { return (c & 0xC0) == 0x80; }

}  // namespace

size_t IncompleteUtf8Tail(std::string_view text) {
  const size_t n = text.size();
  // An incomplete sequence is at most 3 bytes (a 4-byte lead plus two continuations).
  for (size_t k = 1; k <= 3 && k <= n; ++k) {
    const auto c = static_cast<unsigned char>(text[n - k]);
    if (IsContinuation(c)) continue;
    // Found the would-be lead byte: hold back only if more bytes could still make it valid.
    const size_t need = SequenceLength(c);
    if (need <= k) return 0;
    if (k >= 2 && !ValidSecondByte(c, static_cast<unsigned char>(text[n - k + 1]))) return 0;
    return k;
  }
  return 0;
}

}  // namespace retain::engine
