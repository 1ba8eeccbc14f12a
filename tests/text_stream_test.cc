// TextStream: UTF-8 hold-back and sanitising, stop strings across tokens, against an
// independent whole-text reference; byte tokenizer and RWKV World tokenizer.
#include "retain/engine/text_stream.h"

#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "retain/engine/tokenizer.h"

namespace retain::engine {
namespace {

const std::string kFFFD = "\xEF\xBF\xBD";

std::vector<TokenId> Bytes(std::string_view s) {
  std::vector<TokenId> ids;
  for (unsigned char c : s) ids.push_back(c);
  return ids;
}

// Pushes every id, returns each piece's text; stops pushing nothing early (pieces after a stop
// are collected too, so a test sees that they are empty).
std::vector<TextStream::Piece> PushAll(TextStream& ts, const std::vector<TokenId>& ids) {
  std::vector<TextStream::Piece> out;
  for (TokenId id : ids) {
    absl::StatusOr<TextStream::Piece> p = ts.Push(id);
    EXPECT_TRUE(p.ok()) << p.status();
    if (p.ok()) out.push_back(*p);
  }
  return out;
}

std::string Concat(const std::vector<TextStream::Piece>& pieces) {
  std::string s;
  for (const auto& p : pieces) s += p.text;
  return s;
}

// Reference, whole-text: the longest prefix of a well-formed sequence at `i` (Unicode Table 3-7)
// and whether it is complete. A maximal subpart is that prefix when incomplete (at least 1 byte).
struct Prefix {
  size_t len;
  bool complete;
};
Prefix WellFormedPrefix(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return {1, true};
  int need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) need = 1;
  else if (c == 0xE0) need = 2, lo = 0xA0;
  else if (c == 0xED) need = 2, hi = 0x9F;
  else if (c >= 0xE1 && c <= 0xEF) need = 2;
  else if (c == 0xF0) need = 3, lo = 0x90;
  else if (c == 0xF4) need = 3, hi = 0x8F;
  else if (c >= 0xF1 && c <= 0xF3) need = 3;
  else return {0, false};
  size_t k = 1;
  for (; k <= static_cast<size_t>(need); ++k) {
    if (i + k >= s.size()) return {k, false};
    const unsigned char x = b(i + k);
    if (x < (k == 1 ? lo : 0x80) || x > (k == 1 ? hi : 0xBF)) return {k, false};
  }
  return {k, true};
}

// Sanitised text; with `hold_tail`, an incomplete well-formed tail is left out (not yet text).
std::string Sanitise(std::string_view s, bool hold_tail) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const Prefix p = WellFormedPrefix(s, i);
    if (p.complete) {
      out.append(s.substr(i, p.len));
    } else {
      if (hold_tail && p.len > 0 && i + p.len == s.size()) break;
      out += kFFFD;
    }
    i += std::max<size_t>(p.len, 1);
  }
  return out;
}

// Reference stream over byte tokens: after token t the text is Sanitise(bytes[0..t], true); the
// first t whose text contains a stop string stops there (earliest position, then longest).
struct Expected {
  std::string out;  // everything the stream should ever return (pieces + Flush)
  bool stopped = false;
  std::string matched;
};
Expected ReferenceStream(std::string_view bytes, const std::vector<std::string>& stops) {
  for (size_t t = 1; t <= bytes.size(); ++t) {
    const std::string text = Sanitise(bytes.substr(0, t), true);
    size_t best_pos = std::string::npos;
    std::string best;
    for (const std::string& s : stops) {
      const size_t pos = text.find(s);
      if (pos == std::string::npos) continue;
      if (pos < best_pos || (pos == best_pos && s.size() > best.size())) best_pos = pos, best = s;
    }
    if (best_pos != std::string::npos) return {text.substr(0, best_pos), true, best};
  }
  return {Sanitise(bytes, false), false, ""};
}

// What may be sent once `text` is known: all but its longest suffix that is a proper prefix of
// a stop string.
std::string Sendable(const std::string& text, const std::vector<std::string>& stops) {
  for (size_t j = 0; j < text.size(); ++j) {
    for (const std::string& s : stops)
      if (s.size() > text.size() - j && s.compare(0, text.size() - j, text, j) == 0) return text.substr(0, j);
  }
  return text;
}

TEST(TextStream, MultiByteCharacterSplitOverTokensIsHeldThenWhole) {
  auto tok = MakeByteTokenizer();
  TextStream ts(tok.get(), {});
  auto pieces = PushAll(ts, Bytes("a\xC3\xA9" "b\xE2\x82\xAC" "\xF0\x9F\x98\x80"));
  std::vector<std::string> texts;
  for (const auto& p : pieces) texts.push_back(p.text);
  EXPECT_EQ(texts, (std::vector<std::string>{"a", "", "\xC3\xA9", "b", "", "", "\xE2\x82\xAC", "", "", "",
                                             "\xF0\x9F\x98\x80"}));
  EXPECT_EQ(ts.Flush(), "");
}

TEST(TextStream, InvalidBytesBecomeReplacementCharacters) {
  auto tok = MakeByteTokenizer();
  struct Case {
    std::string bytes, expected;  // expected = Python bytes.decode("utf-8", "replace")
  };
  const std::vector<Case> cases = {
      {"\xFF", kFFFD},
      {"x\x80y", "x" + kFFFD + "y"},
      {"\xE2\x82" "A", kFFFD + "A"},  // truncated 3-byte sequence: one U+FFFD
      {"\xED\xA0\x80", kFFFD + kFFFD + kFFFD},  // surrogate
      {"\xC0\xAF", kFFFD + kFFFD},              // overlong
      {"\xE0\x80\xAF", kFFFD + kFFFD + kFFFD},
      {"\xF4\x90\x80\x80", kFFFD + kFFFD + kFFFD + kFFFD},
      {"\xF0\x9F\xF0\x9F\x98\x80", kFFFD + "\xF0\x9F\x98\x80"},
  };
  for (const Case& c : cases) {
    TextStream ts(tok.get(), {});
    auto pieces = PushAll(ts, Bytes(c.bytes));
    EXPECT_EQ(Concat(pieces) + ts.Flush(), c.expected);
    EXPECT_EQ(Sanitise(c.bytes, false), c.expected);  // the reference agrees
  }
  // 0xFF is sent at once; a truncated sequence is sent as soon as the next byte breaks it.
  TextStream ts(tok.get(), {});
  EXPECT_EQ(ts.Push(0xFF)->text, kFFFD);
  EXPECT_EQ(ts.Push(0xE2)->text, "");
  EXPECT_EQ(ts.Push(0x82)->text, "");
  EXPECT_EQ(ts.Push('A')->text, kFFFD + "A");
  // An incomplete tail at the end becomes one U+FFFD.
  EXPECT_EQ(ts.Push(0xF0)->text, "");
  EXPECT_EQ(ts.Push(0x9F)->text, "");
  EXPECT_EQ(ts.Flush(), kFFFD);
  EXPECT_EQ(ts.Flush(), "");
}

TEST(TextStream, StopStringAcrossTokensEndsTheStream) {
  auto tok = MakeByteTokenizer();
  TextStream ts(tok.get(), {"end"});
  auto pieces = PushAll(ts, Bytes("the end. more"));
  ASSERT_EQ(pieces.size(), 13u);
  EXPECT_EQ(Concat(pieces), "the ");
  EXPECT_EQ(pieces[2].text, "");    // "e" might start "end"
  EXPECT_EQ(pieces[3].text, "e ");  // false alarm
  EXPECT_FALSE(pieces[5].stopped);
  EXPECT_TRUE(pieces[6].stopped);  // the 'd'
  EXPECT_EQ(pieces[6].matched, "end");
  EXPECT_EQ(pieces[6].text, "");  // "the " was sent before: "e", "en" were held
  for (size_t i = 7; i < pieces.size(); ++i) {
    EXPECT_TRUE(pieces[i].stopped);
    EXPECT_EQ(pieces[i].matched, "end");
    EXPECT_EQ(pieces[i].text, "");
  }
  EXPECT_TRUE(ts.stopped());
  EXPECT_EQ(ts.Flush(), "");
  EXPECT_EQ(ts.Push(300).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TextStream, FalseAlarmReleasesHeldText) {
  auto tok = MakeByteTokenizer();
  TextStream ts(tok.get(), {"ab"});
  std::vector<std::string> texts;
  for (const auto& p : PushAll(ts, Bytes("aac"))) {
    EXPECT_FALSE(p.stopped);
    texts.push_back(p.text);
  }
  EXPECT_EQ(texts, (std::vector<std::string>{"", "a", "ac"}));
  EXPECT_EQ(ts.Flush(), "");
  // Held text at the end comes out of Flush.
  TextStream ts2(tok.get(), {"ab"});
  EXPECT_EQ(Concat(PushAll(ts2, Bytes("xa"))), "x");
  EXPECT_EQ(ts2.Flush(), "a");
}

TEST(TextStream, StopStringAcrossASplitMultiByteCharacter) {
  auto tok = MakeByteTokenizer();
  TextStream ts(tok.get(), {"\xC3\xA9!"});  // "é!"
  auto pieces = PushAll(ts, Bytes("caf\xC3\xA9!x"));
  EXPECT_EQ(Concat(pieces), "caf");
  EXPECT_TRUE(pieces[5].stopped);
  EXPECT_EQ(pieces[5].matched, "\xC3\xA9!");
  TextStream ts2(tok.get(), {"\xE2\x82\xAC"});  // "€" completed by its third byte
  pieces = PushAll(ts2, Bytes("1\xE2\x82\xAC"));
  EXPECT_EQ(Concat(pieces), "1");
  EXPECT_TRUE(pieces[3].stopped);
  EXPECT_FALSE(pieces[2].stopped);
}

TEST(TextStream, EarliestThenLongestMatchWins) {
  auto tok = MakeByteTokenizer();
  {
    TextStream ts(tok.get(), {"c", "bc"});  // both complete at 'c': "bc" starts earlier
    auto pieces = PushAll(ts, Bytes("abc"));
    EXPECT_EQ(Concat(pieces), "a");
    EXPECT_EQ(pieces[2].matched, "bc");
  }
  {
    TextStream ts(tok.get(), {"bcd", "c"});  // "c" completes first: a longer one does not wait
    auto pieces = PushAll(ts, Bytes("abcd"));
    EXPECT_EQ(Concat(pieces), "ab");
    EXPECT_EQ(pieces[2].matched, "c");
  }
  {
    // A token that breaks a sequence adds U+FFFD and a character at once: both matches new.
    TextStream ts(tok.get(), {kFFFD + "A", kFFFD, "A"});
    auto pieces = PushAll(ts, Bytes("x\xE2" "A"));
    EXPECT_EQ(Concat(pieces), "x");
    EXPECT_EQ(pieces[2].matched, kFFFD + "A");
  }
}

TEST(TextStream, InvalidStopStringMatchesInItsSanitisedForm) {
  auto tok = MakeByteTokenizer();
  TextStream ts(tok.get(), {"\xFF", ""});  // the empty one is ignored
  auto pieces = PushAll(ts, Bytes("ok\x80z"));
  EXPECT_EQ(Concat(pieces), "ok");
  EXPECT_EQ(pieces[2].matched, "\xFF");
}

TEST(TextStream, MatchesAnIndependentReferenceOnRandomBytes) {
  auto tok = MakeByteTokenizer();
  const std::vector<std::string> alphabet = {"a", "b", "c", "\xC3", "\xA9", "\xE2", "\x82", "\xAC",
                                             "\xFF", "\x80", "\xF0", "\x9F", "\x98", "\xC3\xA9"};
  const std::vector<std::string> stop_pool = {"ab", "ba", "\xC3\xA9", "a\xC3\xA9", "\xE2\x82\xAC" "c", kFFFD,
                                              "bb", "cab", "\xC3\xA9\xE2\x82\xAC", "aaa", "abcabc"};
  std::mt19937 rng(12345);
  int stopped = 0, ran_out = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string bytes;
    const int n = std::uniform_int_distribution<int>(0, 30)(rng);
    for (int i = 0; i < n; ++i) bytes += alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)];
    std::vector<std::string> stops;
    const int k = std::uniform_int_distribution<int>(0, 3)(rng);
    for (int i = 0; i < k; ++i) stops.push_back(stop_pool[std::uniform_int_distribution<size_t>(0, stop_pool.size() - 1)(rng)]);

    const Expected want = ReferenceStream(bytes, stops);
    TextStream ts(tok.get(), stops);
    std::string sent;
    bool seen_stop = false;
    for (size_t t = 0; t < bytes.size(); ++t) {
      absl::StatusOr<TextStream::Piece> p = ts.Push(static_cast<unsigned char>(bytes[t]));
      ASSERT_TRUE(p.ok());
      if (seen_stop) {
        ASSERT_TRUE(p->stopped);
        ASSERT_EQ(p->text, "");
        continue;
      }
      sent += p->text;
      if (p->stopped) {
        seen_stop = true;
        ASSERT_TRUE(want.stopped) << iter;
        EXPECT_EQ(p->matched, want.matched) << iter;
        continue;
      }
      // Sent so far = exactly the text known so far less what might still start a stop string.
      ASSERT_EQ(sent, Sendable(Sanitise(std::string_view(bytes).substr(0, t + 1), true), stops)) << iter << " " << t;
    }
    const std::string flushed = ts.Flush();
    if (seen_stop) EXPECT_EQ(flushed, "");
    ASSERT_EQ(sent + flushed, want.out) << iter;
    EXPECT_EQ(seen_stop, want.stopped) << iter;
    (seen_stop ? stopped : ran_out)++;
    if (stops.empty()) EXPECT_EQ(sent + flushed, Sanitise(bytes, false));
  }
  EXPECT_GT(stopped, 300);
  EXPECT_GT(ran_out, 300);
}

TEST(TextStream, UnknownIdIsInvalidArgumentAndChangesNothing) {
  auto tok = MakeByteTokenizer();
  TextStream ts(tok.get(), {"xy"});
  EXPECT_EQ(ts.Push('x')->text, "");
  EXPECT_EQ(ts.Push(256).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ts.Push(-1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ts.Push('z')->text, "xz");
}

// RWKV World: the vocabulary from tests/data if there, else from ../shared.
const Tokenizer* World() {
  static const Tokenizer* tok = []() -> const Tokenizer* {
    const std::string name = "/conformance/tokenizer/rwkv_vocab_v20230424.txt";
    for (const std::string& dir : {std::string(RETAIN_SOURCE_DIR) + "/tests/data", std::string(RETAIN_SOURCE_DIR) + "/../shared"}) {
      if (!std::filesystem::exists(dir + name)) continue;
      auto loaded = LoadRwkvWorldTokenizer(dir + name);
      if (!loaded.ok()) {
        ADD_FAILURE() << loaded.status();
        return nullptr;
      }
      return loaded->release();
    }
    return nullptr;
  }();
  return tok;
}

#define REQUIRE_WORLD()                                                                        \
  if (World() == nullptr) GTEST_SKIP() << "rwkv_vocab_v20230424.txt not found under tests/data " \
                                          "or ../shared (conformance/tokenizer)"

TokenId SingleToken(const Tokenizer& tok, std::string_view bytes) {
  std::vector<TokenId> ids = tok.Encode(bytes);
  EXPECT_EQ(ids.size(), 1u) << bytes;
  return ids.empty() ? 0 : ids[0];
}

TEST(TextStreamWorld, CharacterSplitOverByteTokens) {
  REQUIRE_WORLD();
  const Tokenizer& tok = *World();
  TextStream ts(&tok, {});
  // "你" = E4 BD A0 as three single-byte tokens.
  const std::vector<TokenId> ids = {SingleToken(tok, "a"), SingleToken(tok, "\xE4"), SingleToken(tok, "\xBD"),
                                    SingleToken(tok, "\xA0")};
  std::vector<std::string> texts;
  for (const auto& p : PushAll(ts, ids)) texts.push_back(p.text);
  EXPECT_EQ(texts, (std::vector<std::string>{"a", "", "", "\xE4\xBD\xA0"}));
  EXPECT_EQ(ts.Push(SingleToken(tok, "\xE4"))->text, "");
  EXPECT_EQ(ts.Flush(), kFFFD);
  EXPECT_EQ(ts.Push(tok.vocab_size()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TextStreamWorld, RoundTripsValidTextAndStopsInsideATokenSequence) {
  REQUIRE_WORLD();
  const Tokenizer& tok = *World();
  const std::string text = "Hello world, \xE4\xBD\xA0\xE5\xA5\xBD! caf\xC3\xA9 \xF0\x9F\x98\x80\n\nUser: more";
  const std::vector<TokenId> ids = tok.Encode(text);
  ASSERT_GT(ids.size(), 5u);
  {
    TextStream ts(&tok, {});
    EXPECT_EQ(Concat(PushAll(ts, ids)) + ts.Flush(), text);
  }
  {
    TextStream ts(&tok, {"\n\nUser:", "o w"});  // "o w" spans "Hello" and " world"
    auto pieces = PushAll(ts, ids);
    EXPECT_EQ(Concat(pieces), "Hell");
    EXPECT_TRUE(pieces[1].stopped);
    EXPECT_EQ(pieces[1].matched, "o w");
    EXPECT_EQ(ts.Flush(), "");
  }
  {
    TextStream ts(&tok, {"\n\nUser:"});
    auto pieces = PushAll(ts, ids);
    EXPECT_EQ(Concat(pieces) + ts.Flush(), text.substr(0, text.find("\n\n")));
  }
  {
    // Several matches inside one multi-character token: earliest position, then longest.
    TextStream ts(&tok, {"lo", "l", "ll", "ello"});
    auto p = ts.Push(SingleToken(tok, "Hello"));
    ASSERT_TRUE(p.ok());
    EXPECT_TRUE(p->stopped);
    EXPECT_EQ(p->text, "H");
    EXPECT_EQ(p->matched, "ello");
    TextStream ts2(&tok, {"lo", "l", "ll"});
    p = ts2.Push(SingleToken(tok, "Hello"));
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->text, "He");
    EXPECT_EQ(p->matched, "ll");
  }
}

}  // namespace
}  // namespace retain::engine
