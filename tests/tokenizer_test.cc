// Tests for the RWKV World and byte tokenizers and IncompleteUtf8Tail.
#include "retain/engine/tokenizer.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/paths.h"
#include "tests/testing/random_utf8.h"

namespace retain::engine {
namespace {

const std::string kTokDir = retain::testing::ConformanceDir() + "/tokenizer";

// Loaded once: parsing 65k lines per test would dominate the suite under sanitizers.
const Tokenizer* World() {
  static const Tokenizer* tok = [] {
    auto loaded = LoadRwkvWorldTokenizer(kTokDir + "/rwkv_vocab_v20230424.txt");
    if (!loaded.ok()) ADD_FAILURE() << loaded.status();
    return loaded.ok() ? loaded->release() : nullptr;
  }();
  return tok;
}

// Writes `contents` to a file under the test temp dir and returns its path.
std::string WriteTemp(const std::string& name, const std::string& contents) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

std::string MustDecode(const Tokenizer& tok, const std::vector<TokenId>& ids) {
  absl::StatusOr<std::string> s = tok.Decode(ids);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : std::string();
}

// Independent oracle: the spec's pseudo-code, trying lengths 128 down to 1 in a hash map.
std::vector<TokenId> NaiveEncode(std::string_view text) {
  static const auto* by_bytes = [] {
    auto* m = new std::unordered_map<std::string, TokenId>;
    for (TokenId id = 1; id < World()->vocab_size(); ++id) {
      if (std::string b = *World()->TokenBytes(id); !b.empty()) m->emplace(std::move(b), id);
    }
    return m;
  }();
  std::vector<TokenId> ids;
  for (size_t i = 0, len = 0; i < text.size(); i += len) {
    for (len = std::min<size_t>(128, text.size() - i); len > 1; --len) {
      if (by_bytes->count(std::string(text.substr(i, len)))) break;
    }
    ids.push_back(by_bytes->at(std::string(text.substr(i, len))));
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

using retain::testing::RandomUtf8;

// Fixture for tests on the real vocabulary; SetUp's fatal failure skips the test body.
class RwkvWorldTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(World(), nullptr) << "could not load the vocabulary in " << kTokDir; }

  void ExpectCodec(const std::string& text, const std::vector<TokenId>& ids) {
    EXPECT_EQ(tok_->Encode(text), ids) << text;
    EXPECT_EQ(MustDecode(*tok_, ids), text);
  }

  const Tokenizer* tok_ = World();
};

TEST_F(RwkvWorldTest, ConformanceCases) {
  std::ifstream in(kTokDir + "/rwkv_world_cases.json");
  ASSERT_TRUE(in.good()) << "cannot read " << kTokDir << "/rwkv_world_cases.json";
  const nlohmann::json doc = nlohmann::json::parse(in);
  ASSERT_FALSE(doc.at("cases").empty());
  for (const auto& c : doc.at("cases")) {
    ExpectCodec(c.at("text").get<std::string>(), c.at("ids").get<std::vector<TokenId>>());
  }
}

TEST_F(RwkvWorldTest, SpecVectors) {
  ExpectCodec("User: hi\n\nAssistant:", {24281, 59, 4571, 261, 5585, 41693, 59});
  ExpectCodec("Hello world", {33155, 40213});
  ExpectCodec("The Eiffel tower is in the city of",
              {6699, 304, 25740, 109, 39990, 4600, 4596, 22590, 30449, 4706});
  ExpectCodec("你好，世界", {10464, 11685, 19137, 10267, 14610});
  ExpectCodec("😀!", {3319, 153, 129, 34});  // emoji split across byte tokens
  ExpectCodec("", {});
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
  std::string nbsp8;  // '\xa0' * 8 in a str literal: U+00A0 is two UTF-8 bytes
  for (int i = 0; i < 8; ++i) nbsp8 += "\xC2\xA0";
  EXPECT_EQ(*tok_->TokenBytes(65297), nbsp8);
  EXPECT_EQ(*tok_->TokenBytes(9804), "\xE2\x80\x82");  // '\u2002'
  EXPECT_FALSE(tok_->TokenBytes(65529)->empty());
}

TEST_F(RwkvWorldTest, OutOfRangeIdsAreInvalidArgument) {
  for (TokenId bad : {-1, 65536}) {
    const absl::Status s = tok_->Decode({33155, bad}).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(s.message(), std::to_string(bad))) << s;
    EXPECT_EQ(tok_->TokenBytes(bad).status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(MustDecode(*tok_, {0, 65535, 33155}), "Hello");
}

TEST_F(RwkvWorldTest, RandomRoundTripsMatchNaiveGreedy) {
  std::mt19937 rng(20230424);
  for (int i = 0; i < 6000; ++i) {
    // Odd cases: valid UTF-8; even: arbitrary bytes (invalid UTF-8, NUL, 0xFF).
    const std::string s = i % 2 ? RandomUtf8(rng, 32) : RandomBytes(rng, 64);
    const std::vector<TokenId> ids = tok_->Encode(s);
    ASSERT_EQ(MustDecode(*tok_, ids), s) << "case " << i;
    if (i % 5 < 2) {
      ASSERT_EQ(ids, NaiveEncode(s)) << "case " << i;
    }
  }
}

// Encode/decode speed: bench/tokenizer_bench.cc (retain-tokenizer-bench).

// Malformed vocab files: each is valid up to line 3, which has one defect.
// (name, line 3, text expected in the error message)
const std::tuple<const char*, const char*, const char*> kBadLines[] = {
    {"byte_length", "3 'ab' 3", "2 bytes but the line says 3"},
    {"bad_escape", "3 '\\q' 1", "unknown escape \\q"},
    {"bad_hex", "3 '\\xZZ' 1", "\\x needs 2 hex digits"},
    {"u_in_bytes", "3 b'\\u0041' 1", "unknown escape \\u"},
    {"surrogate", "3 '\\ud800' 3", "surrogate"},
    {"non_numeric_id", "x3 'ab' 2", "id is not a decimal number"},
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

class MalformedVocabTest
    : public ::testing::TestWithParam<std::tuple<const char*, const char*, const char*>> {};

TEST_P(MalformedVocabTest, RejectedWithLineNumber) {
  const auto& [name, bad_line, reason] = GetParam();
  const std::string path =
      WriteTemp(std::string("bad_vocab_") + name + ".txt",
                std::string("1 '\\x00' 1\n2 b'\\xff' 1\n") + bad_line + "\n4 'z' 1\n");
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadRwkvWorldTokenizer(path);
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument) << tok.status();
  EXPECT_TRUE(absl::StrContains(tok.status().message(), path + ":3: ")) << tok.status();
  EXPECT_TRUE(absl::StrContains(tok.status().message(), reason)) << tok.status();
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(All, MalformedVocabTest, ::testing::ValuesIn(kBadLines),
                         [](const auto& info) { return std::string(std::get<0>(info.param)); });

// A complete small vocabulary exercises parser paths the real file does not need.
TEST(RwkvWorldTokenizer, SmallVocabFile) {
  std::string vocab;  // all single bytes, then longer tokens; one CRLF line, no final newline
  for (int b = 0; b < 256; ++b) {
    absl::StrAppend(&vocab, b + 1, " b'\\x", absl::Hex(b, absl::kZeroPad2), "' 1\n");
  }
  vocab +=
      "300 'a b' 3\n301 \"it's\" 4\n302 '\\u4f60\\t\\\\' 5\n303 '\\xe9' 2\r\n"
      "304 'a b c' 5\n305 b'\\xE9\\'' 2\n306 '你' 3";
  const std::string path = WriteTemp("small_vocab.txt", vocab);
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

TEST(RwkvWorldTokenizer, FileLevelErrors) {
  // Well-formed lines, but most single bytes have no token.
  const std::string partial = WriteTemp("partial_vocab.txt", "1 'a' 1\n2 'ab' 2\n");
  absl::Status status = LoadRwkvWorldTokenizer(partial).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), partial)) << status;
  std::remove(partial.c_str());

  const std::string missing = ::testing::TempDir() + "/no_such_vocab.txt";
  status = LoadRwkvWorldTokenizer(missing).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(status.message(), missing)) << status;
  status = LoadRwkvWorldTokenizer(::testing::TempDir()).status();  // a directory
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
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
    const absl::Status s = tok->Decode({bad}).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StrContains(s.message(), std::to_string(bad))) << s;
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
  EXPECT_EQ(IncompleteUtf8Tail("\xF0\x9F\x98\x80"), 0u);
  EXPECT_EQ(IncompleteUtf8Tail("\xC3\xA9\xE4"), 1u);
  // Tails no later byte can make valid are emitted, not held back forever.
  EXPECT_EQ(IncompleteUtf8Tail("\xF8"), 0u);          // never a lead byte
  EXPECT_EQ(IncompleteUtf8Tail("\xC0"), 0u);          // overlong lead
  EXPECT_EQ(IncompleteUtf8Tail("\xE0\x80"), 0u);      // overlong
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
