// Tests for the RWKV World and byte tokenizers and IncompleteUtf8Tail.
#include "retain/engine/tokenizer.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace retain::engine {
namespace {

const std::string kTokDir = std::string(RETAIN_SHARED_DIR) + "/conformance/tokenizer";

// Loaded once: parsing 65k lines per test would dominate the suite under sanitizers.
const Tokenizer* World() {
  static const Tokenizer* tok = [] {
    auto loaded = LoadRwkvWorldTokenizer(kTokDir + "/rwkv_vocab_v20230424.txt");
    if (!loaded.ok()) ADD_FAILURE() << loaded.status();
    return loaded.ok() ? loaded->release() : nullptr;
  }();
  return tok;
}

std::string MustDecode(const Tokenizer& tok, const std::vector<TokenId>& ids) {
  absl::StatusOr<std::string> s = tok.Decode(ids);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : std::string();
}

// Independent oracle: the spec's pseudo-code over a hash map, trying lengths 128 down to 1.
std::vector<TokenId> NaiveEncode(const Tokenizer& tok, std::string_view text) {
  static const auto* by_bytes = [&] {
    auto* m = new std::unordered_map<std::string_view, TokenId>;
    static std::vector<std::string> storage(tok.vocab_size());
    for (TokenId id = 0; id < tok.vocab_size(); ++id) {
      storage[id] = *tok.TokenBytes(id);
      if (!storage[id].empty()) (*m)[storage[id]] = id;
    }
    return m;
  }();
  std::vector<TokenId> ids;
  for (size_t i = 0, len = 0; i < text.size(); i += len) {
    for (len = std::min<size_t>(128, text.size() - i); len > 1; --len) {
      if (by_bytes->count(text.substr(i, len))) break;
    }
    ids.push_back(by_bytes->at(text.substr(i, len)));
  }
  return ids;
}

std::string RandomBytes(std::mt19937& rng, size_t max_len) {
  std::string s(std::uniform_int_distribution<size_t>(0, max_len)(rng), '\0');
  for (char& c : s) {
    // Bias towards printable ASCII, NUL and 0xFF so real tokens and edge bytes both occur often.
    const int b = std::uniform_int_distribution<int>(0, 255)(rng);
    const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
    c = static_cast<char>(kind < 5 ? 32 + b % 95 : kind == 5 ? 0 : kind == 6 ? 0xFF : b);
  }
  return s;
}

void AppendCodePoint(uint32_t cp, std::string* out) {
  static constexpr unsigned kLead[] = {0, 0, 0xC0, 0xE0, 0xF0};
  const int n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  out->push_back(static_cast<char>(n == 1 ? cp : kLead[n] | (cp >> (6 * (n - 1)))));
  for (int k = n - 2; k >= 0; --k)
    out->push_back(static_cast<char>(0x80 | ((cp >> (6 * k)) & 0x3F)));
}

// Mixes 1-, 2-, 3- and 4-byte code points with equal probability.
std::string RandomUtf8(std::mt19937& rng, size_t max_chars) {
  static constexpr uint32_t kLo[] = {0, 0x80, 0x800, 0x10000};
  static constexpr uint32_t kHi[] = {0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
  std::string s;
  for (size_t n = std::uniform_int_distribution<size_t>(0, max_chars)(rng); n > 0; --n) {
    const int w = std::uniform_int_distribution<int>(0, 3)(rng);
    const uint32_t cp = std::uniform_int_distribution<uint32_t>(kLo[w], kHi[w])(rng);
    if (cp < 0xD800 || cp > 0xDFFF) AppendCodePoint(cp, &s);  // surrogates are not encodable
  }
  return s;
}

// Fixture for tests on the real vocabulary; SetUp's fatal failure skips the test body.
class RwkvWorldTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(World(), nullptr); }
  const Tokenizer* tok_ = World();

  // Round trip on every string; exact ids against the naive oracle on a sample.
  void ExpectRandomRoundTrips(const std::function<std::string(std::mt19937&)>& gen) {
    std::mt19937 rng(20230424);
    for (int i = 0; i < 3000; ++i) {
      const std::string s = gen(rng);
      const std::vector<TokenId> ids = tok_->Encode(s);
      ASSERT_EQ(MustDecode(*tok_, ids), s) << "case " << i;
      if (i % 5 == 0) {
        ASSERT_EQ(ids, NaiveEncode(*tok_, s)) << "case " << i;
      }
    }
  }
};

void ExpectEncodeDecode(const Tokenizer& tok, const std::string& text,
                        const std::vector<TokenId>& ids) {
  EXPECT_EQ(tok.Encode(text), ids) << text;
  EXPECT_EQ(MustDecode(tok, ids), text);
}

TEST_F(RwkvWorldTest, ConformanceCases) {
  std::ifstream in(kTokDir + "/rwkv_world_cases.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json doc = nlohmann::json::parse(in);
  ASSERT_FALSE(doc.at("cases").empty());
  for (const auto& c : doc.at("cases")) {
    ExpectEncodeDecode(*tok_, c.at("text").get<std::string>(),
                       c.at("ids").get<std::vector<TokenId>>());
  }
}

TEST_F(RwkvWorldTest, SpecVectors) {
  ExpectEncodeDecode(*tok_, "User: hi\n\nAssistant:", {24281, 59, 4571, 261, 5585, 41693, 59});
  ExpectEncodeDecode(*tok_, "Hello world", {33155, 40213});
  ExpectEncodeDecode(*tok_, "The Eiffel tower is in the city of",
                     {6699, 304, 25740, 109, 39990, 4600, 4596, 22590, 30449, 4706});
  ExpectEncodeDecode(*tok_, "你好，世界", {10464, 11685, 19137, 10267, 14610});
  ExpectEncodeDecode(*tok_, "😀!", {3319, 153, 129, 34});  // emoji split across byte tokens
  ExpectEncodeDecode(*tok_, "", {});
}

TEST_F(RwkvWorldTest, TokenBytesAndLiteralKinds) {
  EXPECT_EQ(tok_->vocab_size(), 65536);
  EXPECT_EQ(tok_->name(), "rwkv_world");
  EXPECT_EQ(*tok_->TokenBytes(0), "");
  EXPECT_EQ(*tok_->TokenBytes(65535), "");  // padding row
  EXPECT_EQ(*tok_->TokenBytes(1), std::string(1, '\0'));
  EXPECT_EQ(*tok_->TokenBytes(256), "\xFF");
  EXPECT_EQ(*tok_->TokenBytes(261), "\n\n");
  EXPECT_EQ(*tok_->TokenBytes(129), "\x80");  // b'\x80': one raw byte
  std::string nbsp8;
  for (int i = 0; i < 8; ++i) nbsp8 += "\xC2\xA0";  // str '\xa0' is U+00A0: two bytes each
  EXPECT_EQ(*tok_->TokenBytes(65297), nbsp8);
  EXPECT_EQ(*tok_->TokenBytes(9804), "\xE2\x80\x82");  // '\u2002'
  EXPECT_FALSE(tok_->TokenBytes(65529)->empty());
  EXPECT_EQ(tok_->TokenBytes(-1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tok_->TokenBytes(65536).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RwkvWorldTest, DecodeRejectsOutOfRangeIds) {
  for (TokenId bad : {-1, 65536}) {
    absl::StatusOr<std::string> s = tok_->Decode({33155, bad});
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(s.status().message(), std::to_string(bad))) << s.status();
  }
  EXPECT_EQ(MustDecode(*tok_, {0, 65535, 33155}), "Hello");
}

TEST_F(RwkvWorldTest, RandomBytesRoundTrip) {
  ExpectRandomRoundTrips([](std::mt19937& rng) { return RandomBytes(rng, 64); });
}

TEST_F(RwkvWorldTest, RandomUtf8RoundTrip) {
  ExpectRandomRoundTrips([](std::mt19937& rng) { return RandomUtf8(rng, 32); });
}

TEST_F(RwkvWorldTest, EncodeSpeed) {
  std::mt19937 rng(7);
  const std::string prose = "The quick brown fox jumps over the lazy dog. 你好，世界。 café 😀\n";
  std::string text;
  while (text.size() < (8 << 20)) text += text.size() % 3 ? prose : RandomUtf8(rng, 40);
  const auto start = std::chrono::steady_clock::now();
  const size_t n_ids = tok_->Encode(text).size();
  const std::chrono::duration<double> secs = std::chrono::steady_clock::now() - start;
  const double mb_per_s = text.size() / 1e6 / secs.count();
  std::printf("encode: %zu bytes -> %zu ids, %.1f MB/s\n", text.size(), n_ids, mb_per_s);
#if defined(__OPTIMIZE__) && !defined(__SANITIZE_ADDRESS__)
  EXPECT_GE(mb_per_s, 10);
#else
  EXPECT_GE(mb_per_s, 1);  // instrumented or unoptimised builds: only catch pathologies
#endif
}

// Malformed vocab files: each is valid up to line 3, which has one defect.
struct BadLine {
  const char* name;
  const char* line;
  const char* reason;  // expected in the error message
};

const BadLine kBadLines[] = {
    {"byte_length", "3 'ab' 3", "2 bytes but the line says 3"},
    {"bad_escape", "3 '\\q' 1", "unknown escape \\q"},
    {"bad_hex", "3 '\\xZZ' 1", "\\x needs 2 hex digits"},
    {"short_u", "3 '\\u41' 1", "\\u needs 4 hex digits"},
    {"u_in_bytes", "3 b'\\u0041' 1", "unknown escape \\u"},
    {"surrogate", "3 '\\ud800' 3", "surrogate"},
    {"non_numeric_id", "x3 'ab' 2", "id is not a decimal number"},
    {"negative_id", "-3 'ab' 2", "id is not a decimal number"},
    {"id_zero", "0 'ab' 2", "id 0 out of range"},
    {"id_too_big", "65536 'ab' 2", "id 65536 out of range"},
    {"duplicate_id", "2 'ab' 2", "duplicate id 2"},
    {"duplicate_bytes", "3 '\\x00' 1", "same bytes as id 1"},
    {"unterminated", "3 'ab 2", "unterminated literal"},
    {"escaped_close", "3 'ab\\' 3", "unterminated literal"},
    {"after_quote", "3 'a'b' 3", "text after closing quote"},
    {"no_quote", "3 ab 2", "does not start with a quote"},
    {"empty_token", "3 '' 0", "empty token"},
    {"missing_length", "3 'ab'", "expected '<id> <literal> <byte length>'"},
    {"bad_length", "3 'ab' 2x", "byte length is not a decimal"},
    {"raw_utf8_in_bytes", "3 b'\xC3\xA9' 2", "non-ASCII character in bytes literal"},
    {"empty_line", "", "expected '<id>"},
};

class MalformedVocabTest : public ::testing::TestWithParam<BadLine> {};

TEST_P(MalformedVocabTest, RejectedWithLineNumber) {
  const BadLine& bad = GetParam();
  const std::string path = ::testing::TempDir() + "/bad_vocab_" + bad.name + ".txt";
  std::ofstream(path, std::ios::binary) << "1 '\\x00' 1\n2 b'\\xff' 1\n"
                                        << bad.line << "\n4 'z' 1\n";
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadRwkvWorldTokenizer(path);
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument) << tok.status();
  EXPECT_TRUE(absl::StrContains(tok.status().message(), path + ":3: ")) << tok.status();
  EXPECT_TRUE(absl::StrContains(tok.status().message(), bad.reason)) << tok.status();
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(All, MalformedVocabTest, ::testing::ValuesIn(kBadLines),
                         [](const auto& info) { return std::string(info.param.name); });

// A complete small vocabulary exercises parser paths the real file does not need.
TEST(RwkvWorldTokenizer, SmallVocabFile) {
  const std::string path = ::testing::TempDir() + "/small_vocab.txt";
  {
    std::ofstream out(path, std::ios::binary);
    char line[32];
    for (int b = 0; b < 256; ++b) {
      std::snprintf(line, sizeof(line), "%d b'\\x%02x' 1\n", b + 1, b);
      out << line;
    }
    out << "300 'a b' 3\n301 \"it's\" 4\n302 '\\u4f60\\t\\\\' 5\n303 '\\xe9' 2\r\n"
        << "304 'a b c' 5\n305 b'\\xE9\\'' 2\n306 '你' 3";  // CRLF line; no final newline
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadRwkvWorldTokenizer(path);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const Tokenizer& t = **tok;
  EXPECT_EQ(*t.TokenBytes(302), "\xE4\xBD\xA0\t\\");
  EXPECT_EQ(*t.TokenBytes(303), "\xC3\xA9");
  EXPECT_EQ(*t.TokenBytes(305), "\xE9'");
  EXPECT_EQ(*t.TokenBytes(299), "");
  EXPECT_EQ(t.Encode("a b cit'sa bx\xE9'"), (std::vector<TokenId>{304, 301, 300, 'x' + 1, 305}));
  EXPECT_EQ(t.Encode("你\xE4\xBD"), (std::vector<TokenId>{306, 0xE4 + 1, 0xBD + 1}));
  std::remove(path.c_str());
}

TEST(RwkvWorldTokenizer, VocabMissingASingleByteIsRejected) {
  const std::string path = ::testing::TempDir() + "/partial_vocab.txt";
  std::ofstream(path, std::ios::binary) << "1 'a' 1\n2 'ab' 2\n";
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadRwkvWorldTokenizer(path);
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(tok.status().message(), path)) << tok.status();
  std::remove(path.c_str());
}

TEST(RwkvWorldTokenizer, MissingFileIsNotFound) {
  const std::string path = ::testing::TempDir() + "/no_such_vocab.txt";
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadRwkvWorldTokenizer(path);
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(tok.status().message(), path)) << tok.status();
  EXPECT_EQ(LoadRwkvWorldTokenizer(::testing::TempDir()).status().code(),  // a directory
            absl::StatusCode::kInvalidArgument);
}

TEST(ByteTokenizer, RoundTripAndErrors) {
  std::unique_ptr<Tokenizer> tok = MakeByteTokenizer();
  EXPECT_EQ(tok->name(), "byte");
  EXPECT_EQ(tok->vocab_size(), 256);
  EXPECT_EQ(tok->Encode(std::string("a\0\xFF", 3)), (std::vector<TokenId>{97, 0, 255}));
  EXPECT_EQ(*tok->TokenBytes(255), "\xFF");
  std::mt19937 rng(1);
  for (int i = 0; i < 2000; ++i) {
    const std::string s = i % 2 ? RandomBytes(rng, 64) : RandomUtf8(rng, 16);
    ASSERT_EQ(MustDecode(*tok, tok->Encode(s)), s);
  }
  for (TokenId bad : {-1, 256}) {
    absl::StatusOr<std::string> s = tok->Decode({bad});
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(s.status().message(), std::to_string(bad))) << s.status();
    EXPECT_FALSE(tok->TokenBytes(bad).ok());
  }
}

TEST(IncompleteUtf8Tail, Cases) {
  EXPECT_EQ(IncompleteUtf8Tail(""), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("a"), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("\xE4\xBD"), 2u);
  EXPECT_EQ(IncompleteUtf8Tail("\xE4\xBD\xA0"), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(IncompleteUtf8Tail("\x80"), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("abc\xC3"), 1u);
  EXPECT_EQ(IncompleteUtf8Tail("\xF0\x9F\x98\x80"), 0u);  // complete 4-byte sequence
  EXPECT_EQ(IncompleteUtf8Tail("\xF0"), 1u);
  EXPECT_EQ(IncompleteUtf8Tail("\xC3\xA9\xE4"), 1u);
  EXPECT_EQ(IncompleteUtf8Tail("\xF8"), 0u);          // never a lead byte
  EXPECT_EQ(IncompleteUtf8Tail("\xC0"), 0u);          // overlong lead
  EXPECT_EQ(IncompleteUtf8Tail("\xE0\x80"), 0u);      // overlong: no continuation can fix it
  EXPECT_EQ(IncompleteUtf8Tail("\xED\xA0"), 0u);      // surrogate
  EXPECT_EQ(IncompleteUtf8Tail("\x80\x80\x80"), 0u);  // lone continuation bytes
}

TEST_F(RwkvWorldTest, StreamingDecodeHoldsBackSplitEmoji) {
  std::string pending, emitted;
  for (TokenId id : tok_->Encode("😀!")) {
    pending += *tok_->TokenBytes(id);
    const size_t ready = pending.size() - IncompleteUtf8Tail(pending);
    EXPECT_TRUE(ready == pending.size() || ready == 0);  // only the emoji's prefix is held
    emitted += pending.substr(0, ready);
    pending.erase(0, ready);
  }
  EXPECT_EQ(emitted, "😀!");
  EXPECT_TRUE(pending.empty());
}

}  // namespace
}  // namespace retain::engine
