// Unit tests of the tokenizer core on small hand-made vocabs: SentencePiece and byte-level BPE
// merging (checked against plain O(n^2) reference implementations on random text), added
// tokens, decoding, the streaming decoder, bad input and thread safety.
#include "yunzhi/engine/tokenizer.h"

#include <cstdint>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace yunzhi::engine {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr std::string_view kSp = "\xE2\x96\x81";  // "▁"

std::string Sp(std::string_view text) {  // spaces -> "▁"
  std::string out;
  for (const char c : text) {
    if (c == ' ') {
      out += kSp;
    } else {
      out += c;
    }
  }
  return out;
}

// ---- SentencePiece

// <unk> <s> </s>, the 256 byte tokens (ids 3..258), then `pieces` with their scores.
Vocab MakeSpmVocab(const std::vector<std::pair<std::string, float>>& pieces) {
  Vocab vocab;
  vocab.model = TokenizerModel::kSentencePiece;
  vocab.tokens.push_back({"<unk>", 0, TokenType::kUnknown});
  vocab.tokens.push_back({"<s>", 0, TokenType::kControl});
  vocab.tokens.push_back({"</s>", 0, TokenType::kControl});
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab.tokens.push_back({name, 0, TokenType::kByte});
  }
  for (const auto& [text, score] : pieces) vocab.tokens.push_back({Sp(text), score});
  vocab.unk_id = 0;
  vocab.bos_id = 1;
  vocab.eos_id = 2;
  vocab.add_bos = true;
  return vocab;
}

constexpr int32_t kFirstPiece = 259;

Tokenizer MustCreate(Vocab vocab) {
  auto tokenizer = Tokenizer::Create(std::move(vocab));
  EXPECT_TRUE(tokenizer.has_value()) << tokenizer.error().ToString();
  YZ_CHECK(tokenizer.has_value());
  return std::move(*tokenizer);
}

Tokenizer HelloSpm() {
  return MustCreate(MakeSpmVocab({{" ", -1},       // 259
                                  {"h", -2},       // 260
                                  {"e", -2},       // 261
                                  {"l", -2},       // 262
                                  {"o", -2},       // 263
                                  {" h", -3},      // 264
                                  {"ll", -4},      // 265
                                  {" he", -5},     // 266
                                  {"llo", -6},     // 267
                                  {" hello", -7},  // 268
                                  {"w", -2},       // 269
                                  {"r", -2},       // 270
                                  {"d", -2},       // 271
                                  {" w", -3},      // 272
                                  {"or", -3}}));   // 273
}

TEST(SentencePiece, MergesToTheWholeWordWithASpacePrefix) {
  const Tokenizer tok = HelloSpm();
  EXPECT_THAT(tok.Encode("hello"), ElementsAre(268));
  EXPECT_THAT(tok.Encode(" hello"), ElementsAre(259, 268));
  EXPECT_THAT(tok.Encode("hello world"), ElementsAre(268, 272, 273, 262, 271));
  EXPECT_THAT(tok.Encode(""), IsEmpty());
}

TEST(SentencePiece, HigherScoreMergesFirstAndTiesGoLeft) {
  // "abc": "ab" and "bc" are both pieces; the higher score wins.
  Vocab v1 = MakeSpmVocab({{"a", -1}, {"b", -1}, {"c", -1}, {"ab", -5}, {"bc", -2}});
  v1.add_space_prefix = false;
  EXPECT_THAT(MustCreate(v1).Encode("abc"), ElementsAre(kFirstPiece, kFirstPiece + 4));
  Vocab v2 = MakeSpmVocab({{"a", -1}, {"b", -1}, {"c", -1}, {"ab", -2}, {"bc", -2}});
  v2.add_space_prefix = false;
  EXPECT_THAT(MustCreate(v2).Encode("abc"), ElementsAre(kFirstPiece + 3, kFirstPiece + 2));
}

TEST(SentencePiece, UnknownCharactersBecomeByteTokens) {
  const Tokenizer tok = HelloSpm();
  // "é" = C3 A9 is not a piece: byte tokens 3 + 0xC3, 3 + 0xA9.
  EXPECT_THAT(tok.Encode("hé"), ElementsAre(264, 3 + 0xC3, 3 + 0xA9));
  EXPECT_THAT(tok.Encode("\n"), ElementsAre(259, 3 + 0x0A));
}

TEST(SentencePiece, WithoutByteTokensUsesUnknownOncePerCharacter) {
  Vocab vocab;
  vocab.tokens = {{"<unk>", 0, TokenType::kUnknown}, {Sp(" "), -1}, {"a", -1}};
  vocab.unk_id = 0;
  EXPECT_THAT(MustCreate(vocab).Encode("a中a"), ElementsAre(1, 2, 0, 2));
}

TEST(SentencePiece, AddSpecialAddsBosAndParseSpecialMatchesControlTokens) {
  const Tokenizer tok = HelloSpm();
  EXPECT_THAT(tok.Encode("hello", {.add_special = true}), ElementsAre(1, 268));
  // Not parsed: "<s>" is text (all bytes here, the test vocab has no "<" piece).
  const auto as_text = tok.Encode("<s>hello");
  ASSERT_FALSE(as_text.empty());
  EXPECT_EQ(as_text[0], 259);  // the space prefix
  EXPECT_THAT(as_text, Not(Contains(1)));
  EXPECT_EQ(tok.Decode(as_text), "<s>hello");
  // Parsed: the token, and the text after it gets a space prefix again.
  EXPECT_THAT(tok.Encode("<s>hello", {.parse_special = true}), ElementsAre(1, 268));
  EXPECT_THAT(tok.Encode("hello</s>hello", {.parse_special = true}), ElementsAre(268, 2, 268));
}

TEST(SentencePiece, DecodeRemovesTheSpacePrefixAgain) {
  const Tokenizer tok = HelloSpm();
  for (const std::string text : {"hello", " hello", "hello world", "  hello\n", "hé"}) {
    EXPECT_EQ(tok.Decode(tok.Encode(text)), text);
  }
  EXPECT_EQ(tok.Decode(std::vector<int32_t>{1, 268}), "<s>hello");
  EXPECT_EQ(tok.Decode(std::vector<int32_t>{1, 268, 2}, /*skip_special=*/true), "hello");
  EXPECT_EQ(tok.Decode(std::vector<int32_t>{268, 268}), "hello hello");
  // Continuing earlier text: the space is real.
  EXPECT_EQ(tok.Decode(std::vector<int32_t>{268}, DecodeOptions{.remove_space_prefix = false}),
            " hello");
  EXPECT_EQ(tok.TokenToPiece(268), " hello");
  EXPECT_EQ(tok.TokenToPiece(3 + 0x0A), "\n");
}

TEST(SentencePiece, NoSpacePrefixWhenTheVocabSaysSo) {
  Vocab vocab = MakeSpmVocab({{" ", -1}, {"h", -2}, {"i", -2}, {"hi", -3}});
  vocab.add_space_prefix = false;
  const Tokenizer tok = MustCreate(vocab);
  EXPECT_THAT(tok.Encode("hi"), ElementsAre(kFirstPiece + 3));
  EXPECT_EQ(tok.Decode(tok.Encode(" hi")), " hi");
}

TEST(SentencePiece, InvalidUtf8RoundTripsThroughByteTokens) {
  const Tokenizer tok = HelloSpm();
  const std::string bad = "he\xFFllo\xE4\xB8 \xC0\xAF";
  const auto ids = tok.Encode(bad);
  EXPECT_EQ(tok.Decode(ids), bad);
}

// Plain SentencePiece BPE: merge the best-scoring adjacent pair (leftmost on ties) until none.
std::vector<int32_t> ReferenceSpm(const Vocab& vocab, const std::string& escaped) {
  std::map<std::string, int32_t> pieces;
  std::map<int, int32_t> bytes;
  for (size_t id = 0; id < vocab.tokens.size(); ++id) {
    const VocabToken& t = vocab.tokens[id];
    if (t.type == TokenType::kNormal) pieces.emplace(t.text, static_cast<int32_t>(id));
    if (t.type == TokenType::kByte) {
      bytes[std::stoi(t.text.substr(3, 2), nullptr, 16)] = static_cast<int32_t>(id);
    }
  }
  std::vector<std::string> symbols;
  for (size_t i = 0; i < escaped.size();) {
    const auto b = static_cast<uint8_t>(escaped[i]);
    const size_t n = b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;  // test text is valid
    symbols.push_back(escaped.substr(i, n));
    i += n;
  }
  while (true) {
    int best = -1;
    float best_score = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      const auto it = pieces.find(symbols[i] + symbols[i + 1]);
      if (it == pieces.end()) continue;
      const float score = vocab.tokens[it->second].score;
      if (best < 0 || score > best_score) {
        best = static_cast<int>(i);
        best_score = score;
      }
    }
    if (best < 0) break;
    symbols[best] += symbols[best + 1];
    symbols.erase(symbols.begin() + best + 1);
  }
  std::vector<int32_t> ids;
  for (const std::string& s : symbols) {
    const auto it = pieces.find(s);
    if (it != pieces.end()) {
      ids.push_back(it->second);
    } else {
      for (const char c : s) ids.push_back(bytes.at(static_cast<uint8_t>(c)));
    }
  }
  return ids;
}

// `word_pieces_only`: keep only pieces whose spaces all lead ("  ab", not "a b"), the shape of
// real SentencePiece vocabs, for which the tokenizer merges word by word.
void CheckSpmAgainstReference(bool word_pieces_only) {
  std::mt19937 rng(42);
  const std::vector<std::string> alphabet = {"a", "b", "c", " ", "é", "中"};
  // Strings of up to 3 symbols over the alphabet become pieces with random scores.
  std::vector<std::pair<std::string, float>> pieces;
  std::uniform_real_distribution<float> score(-20, 0);
  for (const auto& x : alphabet) {
    pieces.push_back({x, score(rng)});
    for (const auto& y : alphabet) {
      if (rng() % 2) pieces.push_back({x + y, score(rng)});
      for (const auto& z : alphabet) {
        if (rng() % 4 == 0) pieces.push_back({x + y + z, score(rng)});
      }
    }
  }
  std::erase_if(pieces, [&](const auto& p) {
    if (p.first == "é") return true;  // falls back to bytes
    const size_t first_other = p.first.find_first_not_of(' ');
    return word_pieces_only && first_other != std::string::npos &&
           p.first.find(' ', first_other) != std::string::npos;
  });
  const Vocab vocab = MakeSpmVocab(pieces);
  const Tokenizer tok = MustCreate(vocab);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    const int n = 1 + static_cast<int>(rng() % 30);
    for (int i = 0; i < n; ++i) text += alphabet[rng() % alphabet.size()];
    const auto expected = ReferenceSpm(vocab, std::string(kSp) + Sp(text));
    ASSERT_EQ(tok.Encode(text), expected) << "'" << text << "'";
    ASSERT_EQ(tok.Decode(expected), text);
  }
}

TEST(SentencePiece, MatchesThePlainReferenceOnRandomText) { CheckSpmAgainstReference(false); }

TEST(SentencePiece, MatchesThePlainReferenceWordByWord) { CheckSpmAgainstReference(true); }

// ---- Byte-level BPE

// The 256 single bytes (id = byte value), then the merges' results in order, then `extra`.
Vocab MakeBpeVocab(const std::vector<std::pair<std::string, std::string>>& merges,
                   const std::vector<VocabToken>& extra = {}) {
  Vocab vocab;
  vocab.model = TokenizerModel::kByteLevelBpe;
  vocab.pre = "gpt-2";
  for (int b = 0; b < 256; ++b) vocab.tokens.push_back({std::string(1, static_cast<char>(b))});
  for (const auto& [a, b] : merges) vocab.tokens.push_back({a + b});
  for (const VocabToken& t : extra) vocab.tokens.push_back(t);
  vocab.merges = merges;
  return vocab;
}

TEST(ByteLevelBpe, LowestRankMergesFirstAndTiesGoLeft) {
  // "abc": rank 0 "bc" beats rank 1 "ab".
  const Tokenizer tok1 = MustCreate(MakeBpeVocab({{"b", "c"}, {"a", "b"}}));
  EXPECT_THAT(tok1.Encode("abc"), ElementsAre('a', 256));
  const Tokenizer tok2 = MustCreate(MakeBpeVocab({{"a", "b"}, {"b", "c"}}));
  EXPECT_THAT(tok2.Encode("abc"), ElementsAre(256, 'c'));
  // "aaa" with only "aa": the leftmost pair merges.
  const Tokenizer tok3 = MustCreate(MakeBpeVocab({{"a", "a"}}));
  EXPECT_THAT(tok3.Encode("aaa"), ElementsAre(256, 'a'));
  EXPECT_THAT(tok3.Encode("aaaa"), ElementsAre(256, 256));
}

TEST(ByteLevelBpe, MergesOnlyWithinPreTokenizedPieces) {
  // GPT-2 splits "a b" into "a" and " b": no merge across the boundary.
  const Tokenizer tok = MustCreate(MakeBpeVocab({{"a", " "}, {" ", "b"}}));
  EXPECT_THAT(tok.Encode("a b"), ElementsAre('a', 257));
}

TEST(ByteLevelBpe, OnlyListedPairsMergeUnlessRankedByToken) {
  // "abc" is a token, but only reachable as "ab"+"c", which is not listed.
  Vocab vocab = MakeBpeVocab({{"a", "b"}, {"b", "c"}, {"a", "bc"}});
  EXPECT_THAT(MustCreate(vocab).Encode("abc"), ElementsAre(256, 'c'));
  // tiktoken rule: any pair whose concatenation is a token merges, lowest id first:
  // "ab" (256) first, then "ab"+"c" = "abc" (258).
  vocab.merge_rule = BpeMergeRule::kTokenRank;
  EXPECT_THAT(MustCreate(vocab).Encode("abc"), ElementsAre(258));
}

TEST(ByteLevelBpe, IgnoreMergesEmitsWholeTokens) {
  Vocab vocab = MakeBpeVocab({{"a", "b"}}, {{"abc"}});
  EXPECT_THAT(MustCreate(vocab).Encode("abc"), ElementsAre(256, 'c'));
  vocab.ignore_merges = true;
  EXPECT_THAT(MustCreate(vocab).Encode("abc"), ElementsAre(257));
}

TEST(ByteLevelBpe, BytesWithoutATokenAreDroppedOrUnknown) {
  Vocab vocab = MakeBpeVocab({});
  vocab.tokens[7].type = TokenType::kUnused;                         // no token for byte 7 any more
  EXPECT_THAT(MustCreate(vocab).Encode("a\x07"), ElementsAre('a'));  // as HF without unk
  vocab.tokens.push_back({"<unk>", 0, TokenType::kUnknown});
  vocab.unk_id = 256;
  EXPECT_THAT(MustCreate(vocab).Encode("a\x07"), ElementsAre('a', 256));
}

TEST(ByteLevelBpe, InvalidUtf8RoundTrips) {
  const Tokenizer tok = MustCreate(MakeBpeVocab({{"a", "b"}}));
  for (const std::string bad : {"ab\xFF", "\xE4\xB8", "x \xC0\xAF y", "\xED\xA0\x80", "\x80\x80"}) {
    EXPECT_EQ(tok.Decode(tok.Encode(bad)), bad);
  }
}

std::vector<int32_t> ReferenceBpePiece(const Vocab& vocab, const std::string& piece) {
  std::map<std::string, int32_t> ids;
  for (size_t id = 0; id < vocab.tokens.size(); ++id) {
    ids.emplace(vocab.tokens[id].text, static_cast<int32_t>(id));
  }
  std::map<std::pair<std::string, std::string>, size_t> ranks;
  for (size_t r = 0; r < vocab.merges.size(); ++r) ranks.emplace(vocab.merges[r], r);
  std::vector<std::string> symbols;
  for (const char c : piece) symbols.emplace_back(1, c);
  while (true) {
    int best = -1;
    size_t best_rank = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      const auto it = ranks.find({symbols[i], symbols[i + 1]});
      if (it != ranks.end() && (best < 0 || it->second < best_rank)) {
        best = static_cast<int>(i);
        best_rank = it->second;
      }
    }
    if (best < 0) break;
    symbols[best] += symbols[best + 1];
    symbols.erase(symbols.begin() + best + 1);
  }
  std::vector<int32_t> out;
  for (const std::string& s : symbols) out.push_back(ids.at(s));
  return out;
}

TEST(ByteLevelBpe, MatchesThePlainReferenceOnRandomText) {
  std::mt19937 rng(7);
  const std::string alphabet = "abcd";
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<std::string> known = {"a", "b", "c", "d"};
  std::set<std::string> seen(known.begin(), known.end());
  while (merges.size() < 60) {
    const std::string x = known[rng() % known.size()];
    const std::string y = known[rng() % known.size()];
    if (x.size() + y.size() > 6 || seen.contains(x + y)) continue;
    merges.push_back({x, y});
    known.push_back(x + y);
    seen.insert(x + y);
  }
  Vocab vocab = MakeBpeVocab(merges);
  vocab.split_patterns = {"[a-d]+"};
  const Tokenizer tok = MustCreate(vocab);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    const int n = 1 + static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) text += alphabet[rng() % alphabet.size()];
    ASSERT_EQ(tok.Encode(text), ReferenceBpePiece(vocab, text)) << text;
  }
}

TEST(ByteLevelBpe, LongRunsStayFast) {
  // 200 KB without a split point: one piece. The priority queue keeps this near-linear.
  const Tokenizer tok = MustCreate(MakeBpeVocab({{"a", "a"}, {"aa", "aa"}, {"aaaa", "aaaa"}}));
  const std::string text(200000, 'a');
  const auto ids = tok.Encode(text);
  EXPECT_EQ(ids.size(), text.size() / 8);
  EXPECT_EQ(tok.Decode(ids), text);
}

// ---- Added tokens

Tokenizer WithAddedTokens() {
  // 256 bytes, then: 256 "<|im_start|>" control, 257 "<|im" user-defined,
  // 258 "<|im_start|>x" user-defined, 259 "[X]" control with lstrip/rstrip.
  return MustCreate(MakeBpeVocab({}, {{"<|im_start|>", 0, TokenType::kControl},
                                      {"<|im", 0, TokenType::kUserDefined},
                                      {"<|im_start|>x", 0, TokenType::kUserDefined},
                                      {"[X]", 0, TokenType::kControl, true, true}}));
}

TEST(AddedTokens, ControlTokensAreMatchedOnlyWhenParsingSpecial) {
  const Tokenizer tok = WithAddedTokens();
  // Not parsed: the user-defined "<|im" still matches (always), the rest is text.
  const auto plain = tok.Encode("<|im_start|>");
  ASSERT_FALSE(plain.empty());
  EXPECT_EQ(plain[0], 257);
  EXPECT_EQ(tok.Decode(plain), "<|im_start|>");
  EXPECT_THAT(tok.Encode("<|im_start|>", {.parse_special = true}), ElementsAre(256));
}

TEST(AddedTokens, LeftmostLongestWins) {
  const Tokenizer tok = WithAddedTokens();
  EXPECT_THAT(tok.Encode("<|im_start|>x", {.parse_special = true}), ElementsAre(258));
  EXPECT_THAT(tok.Encode("a<|im_start|>b", {.parse_special = true}), ElementsAre('a', 256, 'b'));
}

TEST(AddedTokens, LstripAndRstripAbsorbWhitespace) {
  const Tokenizer tok = WithAddedTokens();
  EXPECT_THAT(tok.Encode("a  [X]  b", {.parse_special = true}), ElementsAre('a', 259, 'b'));
}

TEST(AddedTokens, EndOfGenerationCoversEosEotAndKnownEndMarkers) {
  Vocab vocab = MakeBpeVocab({}, {{"<|im_end|>", 0, TokenType::kControl},
                                  {"<|endoftext|>", 0, TokenType::kControl},
                                  {"<|im_start|>", 0, TokenType::kControl},
                                  {"<|im_end|>x", 0, TokenType::kUserDefined}});
  vocab.eos_id = 'z';  // any token can be named EOS
  const Tokenizer tok = MustCreate(vocab);
  EXPECT_TRUE(tok.IsEndOfGeneration('z'));
  EXPECT_TRUE(tok.IsEndOfGeneration(256));
  EXPECT_TRUE(tok.IsEndOfGeneration(257));
  EXPECT_FALSE(tok.IsEndOfGeneration(258));
  EXPECT_FALSE(tok.IsEndOfGeneration(259));
  EXPECT_FALSE(tok.IsEndOfGeneration('a'));
  EXPECT_FALSE(tok.IsEndOfGeneration(-1));
}

TEST(AddedTokens, FindAddedTokenAndTypes) {
  const Tokenizer tok = WithAddedTokens();
  EXPECT_EQ(tok.FindAddedToken("<|im_start|>"), 256);
  EXPECT_EQ(tok.FindAddedToken("a"), std::nullopt);
  EXPECT_TRUE(tok.IsSpecial(256));
  EXPECT_FALSE(tok.IsSpecial(257));
  EXPECT_FALSE(tok.IsSpecial('a'));
  EXPECT_FALSE(tok.IsSpecial(-1));
  EXPECT_EQ(tok.Decode(std::vector<int32_t>{'a', 256, 257, 'b'}, true), "a<|imb");
}

// ---- Decode and streaming

TEST(Decode, OutOfRangeIdsBecomeReplacementCharacters) {
  const Tokenizer tok = HelloSpm();
  EXPECT_EQ(tok.Decode(std::vector<int32_t>{268, -1, 1000000}), "hello\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(tok.TokenToPiece(-5), "\xEF\xBF\xBD");
  EXPECT_FALSE(tok.IsValid(tok.n_vocab()));
  EXPECT_TRUE(tok.IsValid(tok.n_vocab() - 1));
}

TEST(StreamingDecoder, HoldsBackByteTokensUntilTheCharacterIsComplete) {
  const Tokenizer tok = HelloSpm();
  StreamingDecoder stream(tok);
  EXPECT_EQ(stream.Push(268), "hello");
  EXPECT_EQ(stream.Push(3 + 0xE4), "");  // 中 = E4 B8 AD
  EXPECT_EQ(stream.n_pending_bytes(), 1u);
  EXPECT_EQ(stream.Push(3 + 0xB8), "");
  EXPECT_EQ(stream.Push(3 + 0xAD), "中");
  EXPECT_EQ(stream.Push(3 + 0xF0), "");  // 😀 = F0 9F 98 80
  EXPECT_EQ(stream.Push(3 + 0x9F), "");
  EXPECT_EQ(stream.Push(3 + 0x98), "");
  EXPECT_EQ(stream.Push(3 + 0x80), "😀");
  EXPECT_EQ(stream.Flush(), "");
}

TEST(StreamingDecoder, ReplacesBytesThatCanNeverBeValid) {
  const Tokenizer tok = HelloSpm();
  StreamingDecoder stream(tok);
  EXPECT_EQ(stream.Push(3 + 0xFF), "\xEF\xBF\xBD");  // never valid
  EXPECT_EQ(stream.Push(3 + 0xE4), "");              // could still complete
  EXPECT_EQ(stream.Push(260),
            "\xEF\xBF\xBD"
            "h");  // ... but did not
  EXPECT_EQ(stream.Push(3 + 0xE4), "");
  EXPECT_EQ(stream.Flush(), "\xEF\xBF\xBD");  // cut off at the end
  // After Flush the decoder starts a new sequence (space prefix removed again).
  EXPECT_EQ(stream.Push(268), "hello");
}

TEST(StreamingDecoder, ConcatenationEqualsDecode) {
  const Tokenizer tok = HelloSpm();
  const std::string text = "hello 中文 world é😀 hello";
  const auto ids = tok.Encode(text, {.add_special = true});
  for (const bool skip : {false, true}) {
    StreamingDecoder stream(tok, {.skip_special = skip});
    std::string streamed;
    for (const int32_t id : ids) streamed += stream.Push(id);
    streamed += stream.Flush();
    EXPECT_EQ(streamed, tok.Decode(ids, skip));
  }
  EXPECT_EQ(tok.Decode(ids, true), text);
}

// ---- Construction errors and thread safety

TEST(TokenizerCreate, RejectsBrokenVocabs) {
  EXPECT_EQ(Tokenizer::Create(Vocab{}).error().code, Code::kInvalidArgument);
  Vocab bad_id = MakeSpmVocab({});
  bad_id.eos_id = 100000;
  EXPECT_EQ(Tokenizer::Create(bad_id).error().code, Code::kInvalidArgument);
  Vocab bad_byte = MakeSpmVocab({});
  bad_byte.tokens[5].text = "<0xZZ>";
  EXPECT_EQ(Tokenizer::Create(bad_byte).error().code, Code::kInvalidArgument);
  Vocab bad_pattern = MakeBpeVocab({});
  bad_pattern.split_patterns = {"(unclosed"};
  const auto error = Tokenizer::Create(bad_pattern).error();
  EXPECT_EQ(error.code, Code::kInvalidArgument);
  EXPECT_NE(error.message.find("(unclosed"), std::string::npos) << error.message;
  Vocab bad_pre = MakeBpeVocab({});
  bad_pre.pre = "no-such-family";
  EXPECT_EQ(Tokenizer::Create(bad_pre).error().code, Code::kUnimplemented);
}

TEST(Tokenizer, IsSafeToUseFromManyThreads) {
  const Tokenizer tok = MustCreate(MakeBpeVocab({{"a", "b"}, {"ab", "c"}, {" ", "ab"}}));
  const std::string text = "abc ab abcabc 中文 ab\n\n  abc";
  const auto expected = tok.Encode(text);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) ok[t] += tok.Encode(text) == expected ? 1 : 0;
    });
  }
  for (auto& thread : threads) thread.join();
  for (const int n : ok) EXPECT_EQ(n, 500);
}

}  // namespace
}  // namespace yunzhi::engine
