// Byte-level tokenizer: token id = byte value, vocabulary of 256.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "retain/engine/tokenizer.h"

namespace retain::engine {
namespace {

constexpr int32_t kByteVocabSize = 256;

class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<TokenId> Encode(std::string_view text) const override {
    std::vector<TokenId> ids;
    ids.reserve(text.size());
    for (unsigned char c : text) ids.push_back(static_cast<TokenId>(c));
    return ids;
  }

  absl::StatusOr<std::string> Decode(const std::vector<TokenId>& ids) const override {
    std::string out;
    out.reserve(ids.size());
    for (TokenId id : ids) {
      if (id < 0 || id >= kByteVocabSize) return OutOfRange(id);
      out.push_back(static_cast<char>(id));
    }
    return out;
  }

  absl::StatusOr<std::string> TokenBytes(TokenId id) const override {
    if (id < 0 || id >= kByteVocabSize) return OutOfRange(id);
    return std::string(1, static_cast<char>(id));
  }

  int32_t vocab_size() const override { return kByteVocabSize; }
  std::string name() const override { return "byte"; }

 private:
  static absl::Status OutOfRange(TokenId id) {
    return absl::InvalidArgumentError(
        absl::StrCat("byte: token id ", id, " out of range [0, ", kByteVocabSize, ")"));
  }
};

}  // namespace

std::unique_ptr<Tokenizer> MakeByteTokenizer() { return std::make_unique<ByteTokenizer>(); }

}  // namespace retain::engine
