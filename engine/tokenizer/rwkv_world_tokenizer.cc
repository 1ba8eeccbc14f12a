// RWKV World tokenizer (spec §6.1): vocab file parser and greedy longest-byte-match encoder.
#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "retain/engine/tokenizer.h"

namespace retain::engine {
namespace {

// The models' embedding row count; ids past the file's last line are padding with no bytes.
constexpr int32_t kVocabSize = 65536;

// Byte trie. The root is a direct 256-entry table because every encoded token starts there;
// deeper nodes keep sorted edge lists, since a 256-ary table per node (~10^5 nodes) would cost
// hundreds of MB for almost no speed gain.
class ByteTrie {
 public:
  ByteTrie() : build_(1) {}

  // Returns the id already holding these bytes, or 0 if the bytes were new.
  TokenId Insert(std::string_view bytes, TokenId id) {
    int32_t node = 0;
    for (unsigned char b : bytes) {
      const auto size = static_cast<int32_t>(build_.size());
      node = build_[node].kids.try_emplace(b, size).first->second;
      if (node == size) build_.emplace_back();
    }
    TokenId& slot = build_[node].token;
    if (slot != 0) return slot;
    slot = id;
    return 0;
  }

  // Flattens the build-time maps into CSR arrays: node n's edges are [first_[n], first_[n + 1]).
  void Finalize() {
    for (const BuildNode& n : build_) {
      token_.push_back(n.token);
      first_.push_back(static_cast<uint32_t>(edge_byte_.size()));
      for (const auto& [b, child] : n.kids) {  // std::map iterates sorted by byte
        edge_byte_.push_back(b);
        edge_child_.push_back(child);
      }
    }
    first_.push_back(static_cast<uint32_t>(edge_byte_.size()));
    root_.fill(-1);
    for (const auto& [b, child] : build_[0].kids) root_[b] = child;
    build_.clear();
    build_.shrink_to_fit();
  }

  bool HasSingleByte(unsigned char b) const { return root_[b] >= 0 && token_[root_[b]] != 0; }

  // Longest token that is a prefix of `text` as (id, byte length); length 0 when none.
  std::pair<TokenId, size_t> LongestPrefix(std::string_view text) const {
    TokenId best = 0;
    size_t best_len = 0;
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    int32_t node = text.empty() ? -1 : root_[p[0]];
    for (size_t i = 1; node >= 0; ++i) {
      if (token_[node] != 0) {
        best = token_[node];
        best_len = i;
      }
      if (i == text.size()) break;
      const unsigned char* begin = edge_byte_.data() + first_[node];
      const unsigned char* end = edge_byte_.data() + first_[node + 1];
      const unsigned char* it = std::lower_bound(begin, end, p[i]);
      node = it != end && *it == p[i] ? edge_child_[it - edge_byte_.data()] : -1;
    }
    return {best, best_len};
  }

 private:
  struct BuildNode {
    TokenId token = 0;
    std::map<unsigned char, int32_t> kids;
  };

  std::vector<BuildNode> build_;
  std::array<int32_t, 256> root_{};
  std::vector<TokenId> token_;  // per node; 0 when the path is only a prefix of longer tokens
  std::vector<uint32_t> first_;
  std::vector<unsigned char> edge_byte_;
  std::vector<int32_t> edge_child_;
};

class RwkvWorldTokenizer final : public Tokenizer {
 public:
  RwkvWorldTokenizer(std::vector<std::string> bytes, ByteTrie trie)
      : bytes_(std::move(bytes)), trie_(std::move(trie)) {}

  std::vector<TokenId> Encode(std::string_view text) const override {
    std::vector<TokenId> ids;
    ids.reserve(text.size() / 3 + 1);
    while (!text.empty()) {
      // The loader guarantees every single byte is a token, so len >= 1 here.
      auto [id, len] = trie_.LongestPrefix(text);
      ids.push_back(id);
      text.remove_prefix(len);
    }
    return ids;
  }

  absl::StatusOr<std::string> Decode(const std::vector<TokenId>& ids) const override {
    std::string out;
    for (TokenId id : ids) {
      if (id < 0 || id >= kVocabSize) return OutOfRange(id);
      out += bytes_[id];
    }
    return out;
  }

  absl::StatusOr<std::string> TokenBytes(TokenId id) const override {
    if (id < 0 || id >= kVocabSize) return OutOfRange(id);
    return bytes_[id];
  }

  int32_t vocab_size() const override { return kVocabSize; }
  std::string name() const override { return "rwkv_world"; }

 private:
  static absl::Status OutOfRange(TokenId id) {
    return absl::InvalidArgumentError(
        absl::StrCat("rwkv_world: token id ", id, " out of range [0, ", kVocabSize, ")"));
  }

  std::vector<std::string> bytes_;  // indexed by id; empty for id 0 and unassigned ids
  ByteTrie trie_;
};

// Code points here come from \xNN or \uNNNN, so at most U+FFFF (three bytes).
void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
    return;
  }
  if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
  } else {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
  }
  out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
}

// Whole-field match only: from_chars alone would accept "12x" as 12.
bool ParseNumber(std::string_view s, int base, uint32_t* value) {
  const char* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, *value, base);
  return !s.empty() && ec == std::errc() && ptr == end;
}

// Decodes a Python str ('..', "..") or bytes (b'..', b"..") repr literal to its bytes.
absl::StatusOr<std::string> ParseLiteral(std::string_view lit) {
  const bool is_bytes = !lit.empty() && lit[0] == 'b';
  if (is_bytes) lit.remove_prefix(1);
  if (lit.empty() || (lit[0] != '\'' && lit[0] != '"')) {
    return absl::InvalidArgumentError("literal does not start with a quote");
  }
  constexpr std::string_view kSimpleEscapes = "\\'\"ntr";
  constexpr std::string_view kSimpleValues = "\\'\"\n\t\r";
  const char quote = lit[0];
  std::string out;
  for (size_t i = 1;;) {
    if (i >= lit.size()) return absl::InvalidArgumentError("unterminated literal");
    const char c = lit[i++];
    if (c == quote) {
      if (i != lit.size()) return absl::InvalidArgumentError("text after closing quote");
      return out;
    }
    if (c != '\\') {
      if (is_bytes && static_cast<unsigned char>(c) >= 0x80) {
        return absl::InvalidArgumentError("non-ASCII character in bytes literal");
      }
      out.push_back(c);
      continue;
    }
    if (i >= lit.size()) return absl::InvalidArgumentError("unterminated literal");
    const char e = lit[i++];
    if (const size_t k = kSimpleEscapes.find(e); k != std::string_view::npos) {
      out.push_back(kSimpleValues[k]);
      continue;
    }
    // bytes literals have no \u: Python keeps b'\u' as two characters, which repr never writes.
    if (e != 'x' && (e != 'u' || is_bytes)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown escape \\", std::string(1, e)));
    }
    const size_t digits = e == 'x' ? 2 : 4;
    uint32_t v = 0;
    if (lit.size() - i < digits || !ParseNumber(lit.substr(i, digits), 16, &v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("\\", std::string(1, e), " needs ", digits, " hex digits"));
    }
    i += digits;
    if (v >= 0xD800 && v <= 0xDFFF) {
      return absl::InvalidArgumentError("\\u escape is a surrogate (not encodable)");
    }
    // The spec's pitfall: str \xNN is code point U+00NN, bytes \xNN is one raw byte.
    if (is_bytes) {
      out.push_back(static_cast<char>(v));
    } else {
      AppendUtf8(v, &out);
    }
  }
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    std::string msg = absl::StrCat(path, ": cannot open: ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::InvalidArgumentError(msg);
  }
  std::string data;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) data.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return absl::InvalidArgumentError(absl::StrCat(path, ": read error"));
  return data;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadRwkvWorldTokenizer(const std::string& vocab_path) {
  absl::StatusOr<std::string> data = ReadFile(vocab_path);
  if (!data.ok()) return data.status();

  std::vector<std::string> bytes(kVocabSize);
  ByteTrie trie;
  std::string_view rest = *data;
  for (int line_no = 1; !rest.empty(); ++line_no) {
    const size_t eol = rest.find('\n');
    std::string_view line = rest.substr(0, eol);
    rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 1);
    // Tolerate CRLF checkouts; a literal's own \r is always escaped, so this strips nothing real.
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto fail = [&](const std::string& msg) {
      return absl::InvalidArgumentError(absl::StrCat(vocab_path, ":", line_no, ": ", msg));
    };

    // The literal may contain spaces, so split on the first and last space only.
    const size_t first = line.find(' ');
    const size_t last = line.rfind(' ');
    if (first == std::string_view::npos || first == last) {
      return fail("expected '<id> <literal> <byte length>'");
    }
    uint32_t id = 0;
    if (!ParseNumber(line.substr(0, first), 10, &id)) return fail("id is not a decimal number");
    if (id < 1 || id >= static_cast<uint32_t>(kVocabSize)) {
      return fail(absl::StrCat("id ", id, " out of range [1, ", kVocabSize, ")"));
    }
    if (!bytes[id].empty()) return fail(absl::StrCat("duplicate id ", id));
    uint32_t length = 0;
    if (!ParseNumber(line.substr(last + 1), 10, &length)) {
      return fail("byte length is not a decimal number");
    }
    absl::StatusOr<std::string> token = ParseLiteral(line.substr(first + 1, last - first - 1));
    if (!token.ok()) return fail(std::string(token.status().message()));
    if (token->empty()) return fail("empty token");
    if (token->size() != length) {
      return fail(absl::StrCat("literal has ", token->size(), " bytes but the line says ", length));
    }
    if (TokenId other = trie.Insert(*token, static_cast<TokenId>(id)); other != 0) {
      return fail(absl::StrCat("id ", id, " has the same bytes as id ", other));
    }
    bytes[id] = *std::move(token);
  }
  trie.Finalize();

  // Encode never fails only because greedy matching can always fall back to one byte.
  for (int b = 0; b < 256; ++b) {
    if (!trie.HasSingleByte(static_cast<unsigned char>(b))) {
      return absl::InvalidArgumentError(
          absl::StrCat(vocab_path, ": no token for the single byte ", b));
    }
  }
  return std::make_unique<RwkvWorldTokenizer>(std::move(bytes), std::move(trie));
}

}  // namespace retain::engine
