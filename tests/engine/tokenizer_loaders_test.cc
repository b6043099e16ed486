// Hermetic tests of the vocab loaders on small in-memory files (GGUF, tokenizer.json, tiktoken).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "yunzhi/engine/gguf.h"
#include "yunzhi/engine/tokenizer.h"

namespace yunzhi::engine {
namespace {

using ::testing::ElementsAre;

Tokenizer MustCreate(Result<Vocab> vocab) {
  EXPECT_TRUE(vocab.has_value()) << vocab.error().ToString();
  YZ_CHECK(vocab.has_value());
  auto tokenizer = Tokenizer::Create(std::move(*vocab));
  EXPECT_TRUE(tokenizer.has_value()) << tokenizer.error().ToString();
  YZ_CHECK(tokenizer.has_value());
  return std::move(*tokenizer);
}

// ---- GGUF

// Serializes `writer` and opens the bytes; the bytes must outlive the GgufFile.
GgufFile OpenInMemory(const GgufWriter& writer, std::string* bytes) {
  auto serialized = writer.Serialize();
  YZ_CHECK(serialized.has_value());
  *bytes = std::move(*serialized);
  auto gguf = GgufFile::FromMemory(
      std::span(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size()), "test.gguf");
  EXPECT_TRUE(gguf.has_value()) << gguf.error().ToString();
  YZ_CHECK(gguf.has_value());
  return std::move(*gguf);
}

TEST(VocabFromGguf, ReadsASentencePieceVocabWithLlamaDefaults) {
  GgufWriter w;
  w.SetString("tokenizer.ggml.model", "llama");
  const std::vector<std::string> tokens = {"<unk>",
                                           "<s>",
                                           "</s>",
                                           "<0x0A>",
                                           "\xE2\x96\x81",
                                           "a",
                                           "\xE2\x96\x81"
                                           "a"};
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  w.SetF32Array("tokenizer.ggml.scores", std::vector<float>{0, 0, 0, 0, -1, -2, -3});
  w.SetI32Array("tokenizer.ggml.token_type", std::vector<int32_t>{2, 3, 3, 6, 1, 1, 1});
  std::string bytes;
  const GgufFile gguf = OpenInMemory(w, &bytes);
  auto vocab = VocabFromGguf(gguf);
  ASSERT_TRUE(vocab.has_value()) << vocab.error().ToString();
  EXPECT_EQ(vocab->model, TokenizerModel::kSentencePiece);
  EXPECT_EQ(vocab->bos_id, 1);  // SentencePiece's conventional ids when the file is silent
  EXPECT_EQ(vocab->eos_id, 2);
  EXPECT_EQ(vocab->unk_id, 0);  // the token typed "unknown"
  EXPECT_TRUE(vocab->add_bos);
  EXPECT_FALSE(vocab->add_eos);
  EXPECT_TRUE(vocab->add_space_prefix);
  EXPECT_EQ(vocab->tokens[3].type, TokenType::kByte);
  const Tokenizer tok = MustCreate(std::move(vocab));
  EXPECT_THAT(tok.Encode("a\n", {.add_special = true}), ElementsAre(1, 6, 3));
}

TEST(VocabFromGguf, UndoesTheByteLevelMappingOfNormalTokensAndMerges) {
  GgufWriter w;
  w.SetString("tokenizer.ggml.model", "gpt2");
  w.SetString("tokenizer.ggml.pre", "gpt-2");
  // "Ġ" is the space; "<|endoftext|>" is a control token, stored raw.
  const std::vector<std::string> tokens = {"a", "b", "\xC4\xA0",
                                           "\xC4\xA0"
                                           "a",
                                           "<|endoftext|>"};
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  w.SetI32Array("tokenizer.ggml.token_type", std::vector<int32_t>{1, 1, 1, 1, 3});
  w.SetStringArray("tokenizer.ggml.merges", std::vector<std::string>{"\xC4\xA0 a"});
  w.SetU32("tokenizer.ggml.eos_token_id", 4);
  w.SetU32("tokenizer.ggml.bos_token_id", 99);  // out of range: ignored
  std::string bytes;
  const GgufFile gguf = OpenInMemory(w, &bytes);
  auto vocab = VocabFromGguf(gguf);
  ASSERT_TRUE(vocab.has_value()) << vocab.error().ToString();
  EXPECT_EQ(vocab->tokens[2].text, " ");
  EXPECT_EQ(vocab->tokens[3].text, " a");
  EXPECT_EQ(vocab->tokens[4].text, "<|endoftext|>");
  ASSERT_EQ(vocab->merges.size(), 1u);
  EXPECT_EQ(vocab->merges[0], (std::pair<std::string, std::string>{" ", "a"}));
  EXPECT_EQ(vocab->bos_id, -1);
  EXPECT_FALSE(vocab->add_bos);
  const Tokenizer tok = MustCreate(std::move(vocab));
  EXPECT_THAT(tok.Encode("b a<|endoftext|>", {.parse_special = true}), ElementsAre(1, 3, 4));
  EXPECT_EQ(tok.Decode(std::vector<int32_t>{1, 3, 4}), "b a<|endoftext|>");
}

TEST(VocabFromGguf, ReportsWhatItCannotRead) {
  std::string bytes;
  GgufWriter none;
  none.SetString("general.architecture", "llama");
  EXPECT_EQ(VocabFromGguf(OpenInMemory(none, &bytes)).error().code, Code::kNotFound);

  GgufWriter t5;
  t5.SetString("tokenizer.ggml.model", "t5");
  t5.SetStringArray("tokenizer.ggml.tokens", std::vector<std::string>{"<pad>"});
  EXPECT_EQ(VocabFromGguf(OpenInMemory(t5, &bytes)).error().code, Code::kUnimplemented);

  GgufWriter mismatch;
  mismatch.SetString("tokenizer.ggml.model", "llama");
  mismatch.SetStringArray("tokenizer.ggml.tokens", std::vector<std::string>{"a", "b"});
  mismatch.SetF32Array("tokenizer.ggml.scores", std::vector<float>{0});
  EXPECT_EQ(VocabFromGguf(OpenInMemory(mismatch, &bytes)).error().code, Code::kInvalidArgument);
}

TEST(VocabFromGguf, ReadsAWordPieceVocabRespellingItsPieces) {
  GgufWriter w;
  w.SetString("tokenizer.ggml.model", "bert");
  // llama.cpp's converter spells word starts "▁hel" and continuations "lo" (no "##").
  const std::vector<std::string> tokens = {
      "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[unused0]", "\xE2\x96\x81hel", "lo", "\xE2\x96\x81,"};
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  w.SetI32Array("tokenizer.ggml.token_type", std::vector<int32_t>{3, 3, 3, 3, 1, 1, 1, 1});
  w.SetU32("tokenizer.ggml.unknown_token_id", 1);
  w.SetU32("tokenizer.ggml.cls_token_id", 2);
  w.SetU32("tokenizer.ggml.seperator_token_id", 3);
  std::string bytes;
  const GgufFile gguf = OpenInMemory(w, &bytes);
  auto vocab = VocabFromGguf(gguf);
  ASSERT_TRUE(vocab.has_value()) << vocab.error().ToString();
  EXPECT_EQ(vocab->model, TokenizerModel::kWordPiece);
  EXPECT_EQ(vocab->tokens[4].text, "[unused0]");
  EXPECT_EQ(vocab->tokens[5].text, "hel");
  EXPECT_EQ(vocab->tokens[6].text, "##lo");
  EXPECT_EQ(vocab->tokens[7].text, ",");
  EXPECT_EQ(vocab->bos_id, 2);
  EXPECT_EQ(vocab->eos_id, 3);
  EXPECT_TRUE(vocab->add_bos);
  EXPECT_TRUE(vocab->add_eos);
  EXPECT_FALSE(vocab->add_space_prefix);
  const Tokenizer tok = MustCreate(std::move(vocab));
  EXPECT_THAT(tok.Encode("HELLO,hel lo", {.add_special = true}), ElementsAre(2, 5, 6, 7, 5, 1, 3));
  EXPECT_EQ(tok.Decode(std::vector<int32_t>{2, 5, 6, 7, 5, 3}), "[CLS] hello , hel [SEP]");
  EXPECT_EQ(tok.TokenToPiece(6), "lo");
  EXPECT_EQ(tok.TokenToPiece(5), " hel");
}

// ---- tokenizer.json

// A byte-level BPE tokenizer.json: "a", "b", "Ġ" and merges "a b", ["Ġ", "ab"].
constexpr std::string_view kTokenizerJson = R"({
  "version": "1.0",
  "added_tokens": [
    {"id": 5, "content": "<|bos|>", "special": true, "lstrip": false, "rstrip": false},
    {"id": 6, "content": "<tool>", "special": false, "lstrip": true, "rstrip": false}
  ],
  "normalizer": {"type": "NFC"},
  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": " ?[a-z]+|\\s+"}, "behavior": "Isolated",
     "invert": false},
    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
  ]},
  "post_processor": {"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<|bos|>", "type_id": 0}},
               {"Sequence": {"id": "A", "type_id": 0}}]},
  "model": {"type": "BPE", "ignore_merges": false,
    "vocab": {"a": 0, "b": 1, "\u0120": 2, "ab": 3, "\u0120ab": 4},
    "merges": ["a b", ["\u0120", "ab"]]}
})";

TEST(VocabFromHfJson, ReadsByteLevelBpeWithAddedTokensAndTemplate) {
  auto vocab = VocabFromHfJson(kTokenizerJson);
  ASSERT_TRUE(vocab.has_value()) << vocab.error().ToString();
  EXPECT_EQ(vocab->tokens[2].text, " ");
  EXPECT_EQ(vocab->tokens[5].type, TokenType::kControl);
  EXPECT_EQ(vocab->tokens[6].type, TokenType::kUserDefined);
  EXPECT_TRUE(vocab->tokens[6].lstrip);
  EXPECT_EQ(vocab->bos_id, 5);  // from the template
  EXPECT_TRUE(vocab->add_bos);
  const Tokenizer tok = MustCreate(std::move(vocab));
  EXPECT_THAT(tok.Encode("ab ab  <tool>", {.add_special = true}), ElementsAre(5, 3, 4, 6));
}

TEST(VocabFromHfJson, TokenizerConfigOverridesTheTemplate) {
  auto vocab = VocabFromHfJson(kTokenizerJson, R"({"add_bos_token": false,
      "bos_token": {"content": "<|bos|>"}, "eos_token": "<|bos|>"})");
  ASSERT_TRUE(vocab.has_value()) << vocab.error().ToString();
  EXPECT_FALSE(vocab->add_bos);
  EXPECT_EQ(vocab->eos_id, 5);
}

TEST(VocabFromHfJson, BareByteLevelWithoutRegexSplitsNothing) {
  std::string json(kTokenizerJson);
  const size_t begin = json.find(R"("pre_tokenizer")");
  const size_t end = json.find(R"("post_processor")");
  json.replace(begin, end - begin,
               R"("pre_tokenizer": {"type": "ByteLevel", "use_regex": false}, )");
  const Tokenizer tok = MustCreate(VocabFromHfJson(json));
  // One piece: "ab" merges, then " " + "ab" merges across what GPT-2's regex would split.
  EXPECT_THAT(tok.Encode("ab ab"), ElementsAre(3, 4));
}

// A Llama 2 style tokenizer.json: BPE with byte fallback, spaces as "▁" by the normalizer.
// "ba" is a piece but no rule forms it; the rules make "ab" before "▁a".
constexpr std::string_view kSentencePieceJson = R"({
  "added_tokens": [
    {"id": 0, "content": "<unk>", "special": true},
    {"id": 1, "content": "<s>", "special": true},
    {"id": 2, "content": "</s>", "special": true}
  ],
  "normalizer": {"type": "Sequence", "normalizers": [
    {"type": "Prepend", "prepend": "▁"},
    {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
  "pre_tokenizer": null,
  "post_processor": {"type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
               {"Sequence": {"id": "A", "type_id": 0}}]},
  "decoder": {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
    {"type": "ByteFallback"}, {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
  "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true,
    "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "▁": 4, "a": 5, "b": 6,
              "ab": 7, "▁a": 8, "▁ab": 9, "ba": 10},
    "merges": [["a", "b"], ["▁", "ab"], ["▁", "a"]]}
})";

TEST(VocabFromHfJson, ReadsSentencePieceStyleBpeAndMergesByRank) {
  auto vocab = VocabFromHfJson(kSentencePieceJson);
  ASSERT_TRUE(vocab.has_value()) << vocab.error().ToString();
  EXPECT_EQ(vocab->model, TokenizerModel::kSentencePiece);
  EXPECT_TRUE(vocab->add_space_prefix);
  EXPECT_EQ(vocab->space_prefix_rule, SpacePrefixRule::kEveryFragment);
  EXPECT_EQ(vocab->tokens[0].type, TokenType::kUnknown);
  EXPECT_EQ(vocab->tokens[1].type, TokenType::kControl);
  EXPECT_EQ(vocab->tokens[3].type, TokenType::kByte);
  EXPECT_EQ(vocab->tokens[4].text, "\xE2\x96\x81");
  EXPECT_EQ(vocab->bos_id, 1);
  EXPECT_TRUE(vocab->add_bos);
  ASSERT_EQ(vocab->merges.size(), 3u);
  const Tokenizer tok = MustCreate(std::move(vocab));
  // "▁aba": a+b (rank 0), then ▁+ab (rank 1); "b a" has no rule.
  EXPECT_THAT(tok.Encode("aba", {.add_special = true}), ElementsAre(1, 9, 5));
  EXPECT_THAT(tok.Encode("ba"), ElementsAre(4, 6, 5));
  EXPECT_THAT(tok.Encode("a\n"), ElementsAre(8, 3));
  // Prepend puts "▁" before every fragment, even one starting with a space.
  EXPECT_THAT(tok.Encode(" a"), ElementsAre(4, 8));
  EXPECT_THAT(tok.Encode("<s>a", {.parse_special = true}), ElementsAre(1, 8));
  EXPECT_EQ(tok.Decode(tok.Encode("ab ba\n", {.add_special = true})), "<s>ab ba\n");
}

TEST(VocabFromHfJson, MetaspacePrependSchemes) {
  std::string json(kSentencePieceJson);
  const size_t begin = json.find(R"("normalizer")");
  const size_t end = json.find(R"("post_processor")");
  auto with_pre = [&](std::string_view pre) {
    std::string out = json;
    out.replace(begin, end - begin,
                fmt::format(R"("normalizer": null, "pre_tokenizer": {}, )", pre));
    return MustCreate(VocabFromHfJson(out));
  };
  const Tokenizer first = with_pre(
      R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false})");
  EXPECT_EQ(first.vocab().space_prefix_rule, SpacePrefixRule::kMetaspaceFirst);
  EXPECT_THAT(first.Encode("a"), ElementsAre(8));
  EXPECT_THAT(first.Encode(" a"), ElementsAre(8));  // already starts with "▁"
  EXPECT_THAT(first.Encode("<s>a", {.parse_special = true}), ElementsAre(1, 5));
  const Tokenizer always =
      with_pre(R"({"type": "Metaspace", "replacement": "▁", "add_prefix_space": true})");
  EXPECT_EQ(always.vocab().space_prefix_rule, SpacePrefixRule::kMetaspaceAlways);
  EXPECT_THAT(always.Encode(" a"), ElementsAre(8));
  EXPECT_THAT(always.Encode("<s>a", {.parse_special = true}), ElementsAre(1, 8));
  const Tokenizer never =
      with_pre(R"({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never"})");
  EXPECT_THAT(never.Encode("a"), ElementsAre(5));
}

// A BERT style tokenizer.json: uncased WordPiece.
constexpr std::string_view kWordPieceJson = R"({
  "added_tokens": [
    {"id": 0, "content": "[PAD]", "special": true},
    {"id": 1, "content": "[UNK]", "special": true},
    {"id": 2, "content": "[CLS]", "special": true},
    {"id": 3, "content": "[SEP]", "special": true}
  ],
  "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                 "strip_accents": null, "lowercase": true},
  "pre_tokenizer": {"type": "BertPreTokenizer"},
  "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
  "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
  "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
    "max_input_chars_per_word": 5,
    "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "hel": 4, "##lo": 5, ",": 6,
              "world": 7, "中": 8, "cafe": 9, "##s": 10}}
})";

TEST(VocabFromHfJson, ReadsWordPieceWithBertNormalizer) {
  auto vocab = VocabFromHfJson(kWordPieceJson);
  ASSERT_TRUE(vocab.has_value()) << vocab.error().ToString();
  EXPECT_EQ(vocab->model, TokenizerModel::kWordPiece);
  EXPECT_EQ(vocab->tokens[1].type, TokenType::kUnknown);
  EXPECT_EQ(vocab->unk_id, 1);
  EXPECT_EQ(vocab->bos_id, 2);
  EXPECT_EQ(vocab->eos_id, 3);
  EXPECT_TRUE(vocab->add_bos);
  EXPECT_TRUE(vocab->add_eos);
  EXPECT_EQ(vocab->wordpiece.max_input_chars_per_word, 5);
  const Tokenizer tok = MustCreate(std::move(vocab));
  // Lower-cased, accents stripped, CJK split off, punctuation isolated, "##" continuations; a
  // word that cannot be cut ("!" has no piece) or is too long ("worlds") is [UNK].
  const std::vector<int32_t> ids =
      tok.Encode("HELLO,\xE4\xB8\xADWorld! Caf\xC3\xA9\tworlds", {.add_special = true});
  EXPECT_THAT(ids, ElementsAre(2, 4, 5, 6, 8, 7, 1, 9, 1, 3));
  EXPECT_EQ(tok.Decode(ids), "[CLS] hello , \xE4\xB8\xAD world [UNK] cafe [UNK] [SEP]");
  EXPECT_EQ(tok.Decode(ids, DecodeOptions{.skip_special = true}),
            "hello , \xE4\xB8\xAD world cafe");
  // Zero-width joiner (format) and control characters are dropped; "cafes" = cafe ##s.
  EXPECT_THAT(tok.Encode("caf\xE2\x80\x8D"
                         "es\x01"),
              ElementsAre(9, 10));
  EXPECT_THAT(tok.Encode(""), ElementsAre());
  EXPECT_THAT(tok.Encode("", {.add_special = true}), ElementsAre(2, 3));
}

TEST(VocabFromHfJson, RejectsWhatItDoesNotImplement) {
  EXPECT_EQ(VocabFromHfJson("{not json").error().code, Code::kInvalidArgument);
  EXPECT_EQ(VocabFromHfJson(R"({"model": {"type": "Unigram", "vocab": []}})").error().code,
            Code::kUnimplemented);
  // BPE with neither a ByteLevel pre-tokenizer nor SentencePiece-style spaces.
  EXPECT_EQ(VocabFromHfJson(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})")
                .error()
                .code,
            Code::kUnimplemented);
  EXPECT_EQ(VocabFromHfJson(R"({"pre_tokenizer": {"type": "Whitespace"},
      "model": {"type": "WordPiece", "vocab": {"a": 0}}})")
                .error()
                .code,
            Code::kUnimplemented);
  std::string lowercase(kTokenizerJson);
  lowercase.replace(lowercase.find(R"({"type": "NFC"})"), 15, R"({"type": "Lowercase"})");
  EXPECT_EQ(VocabFromHfJson(lowercase).error().code, Code::kUnimplemented);
  EXPECT_EQ(VocabFromHfDir("/nonexistent/dir").error().code, Code::kNotFound);
}

// ---- tiktoken

TEST(VocabFromTiktoken, ReadsRanksAndAddsQwenSpecialTokens) {
  // "a" = YQ==, "b" = Yg==, "ab" = YWI=, " " = IA==
  auto vocab = VocabFromTiktoken("YQ== 0\nYg== 1\nYWI= 2\nIA== 3\n");
  ASSERT_TRUE(vocab.has_value()) << vocab.error().ToString();
  ASSERT_EQ(vocab->tokens.size(), 7u);
  EXPECT_EQ(vocab->tokens[2].text, "ab");
  EXPECT_EQ(vocab->tokens[4].text, "<|endoftext|>");
  EXPECT_EQ(vocab->eos_id, 4);
  EXPECT_EQ(vocab->eot_id, 6);  // <|im_end|>
  EXPECT_EQ(vocab->merge_rule, BpeMergeRule::kTokenRank);
  const Tokenizer tok = MustCreate(std::move(vocab));
  EXPECT_THAT(tok.Encode("ab<|im_start|>", {.parse_special = true}), ElementsAre(2, 5));
}

TEST(VocabFromTiktoken, RejectsMalformedRanks) {
  EXPECT_EQ(VocabFromTiktoken("YQ== x\n").error().code, Code::kInvalidArgument);
  EXPECT_EQ(VocabFromTiktoken("Y!Q= 0\n").error().code, Code::kInvalidArgument);
  EXPECT_EQ(VocabFromTiktoken("YQ== 0\nYg== 0\n").error().code, Code::kInvalidArgument);
  EXPECT_EQ(VocabFromTiktoken("YQ== 0\nYg== 2\n").error().code, Code::kInvalidArgument);
  EXPECT_EQ(VocabFromTiktokenFile("/nonexistent.tiktoken").error().code, Code::kNotFound);
}

}  // namespace
}  // namespace yunzhi::engine
