// Text <-> token ids. Implementations are immutable after construction and thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace retain::engine {

using TokenId = int32_t;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Any byte string (valid UTF-8 or not) encodes; encoding never fails.
  virtual std::vector<TokenId> Encode(std::string_view text) const = 0;
  // Concatenated bytes of the tokens; may end in the middle of a UTF-8 sequence. An id the
  // vocabulary does not have is InvalidArgument naming the id.
  virtual absl::StatusOr<std::string> Decode(const std::vector<TokenId>& ids) const = 0;
  // Bytes of one token (empty for id 0 / ids without bytes). InvalidArgument when out of range.
  virtual absl::StatusOr<std::string> TokenBytes(TokenId id) const = 0;
  // One past the largest id Encode can produce.
  virtual int32_t vocab_size() const = 0;
  virtual std::string name() const = 0;
};

// RWKV World: greedy longest byte match over rwkv_vocab_v20230424.txt (spec §6.1). The file is
// validated line by line (id, Python literal, byte length); errors name the file and line.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadRwkvWorldTokenizer(const std::string& vocab_path);

// Byte-level: token id = byte value, vocab 256.
std::unique_ptr<Tokenizer> MakeByteTokenizer();

// Counts how many trailing bytes of `text` form an incomplete (so far valid) UTF-8 sequence, so a
// streaming detokenizer can hold them back until the next token completes them. 0..3.
size_t IncompleteUtf8Tail(std::string_view text);

}  // namespace retain::engine
