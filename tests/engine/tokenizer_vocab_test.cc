// Integration tests of the tokenizers against real vocabs and the reference tokenizations in
// ../shared/testdata/tokenizer/ (llama.cpp's test-tokenizer-0 vectors, produced with the models'
// Hugging Face tokenizers), plus round trips over real documents.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "yunzhi/engine/gguf.h"
#include "yunzhi/engine/tokenizer.h"

namespace yunzhi::engine {
namespace {

const std::string kTestdata = YUNZHI_TESTDATA_DIR;
const std::string kTokenizerDir = kTestdata + "/tokenizer/";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Where a vocab comes from.
enum class Source {
  kGguf,
  kTiktoken,
  kHfDir,
  // A tokenizer.json written by this test from a GGUF vocab, in the shape Hugging Face's
  // converters give the model family (see HfJsonFromGguf).
  kHfJsonFromGguf,
};

struct VocabSpec {
  std::string name;  // test parameter name
  Source source;
  std::string path;         // relative to testdata/tokenizer/
  std::string cases;        // the .inp/.out base name, "" when there are none
  bool cases_only = false;  // an extra set of cases for a vocab already in the list
  bool lossless = true;     // Decode(Encode(x)) == x (not WordPiece, which normalises)
};

// gtest prints parameters in test names and failures: show the name, not the bytes.
void PrintTo(const VocabSpec& spec, std::ostream* os) { *os << spec.name; }

const std::vector<VocabSpec>& AllVocabs() {
  static const std::vector<VocabSpec> specs = {
      {"llama_spm", Source::kGguf, "ggml-vocab-llama-spm.gguf", "ggml-vocab-llama-spm.gguf"},
      {"llama_spm_hf", Source::kHfJsonFromGguf, "ggml-vocab-llama-spm.gguf",
       "ggml-vocab-llama-spm.gguf"},
      {"bert_bge", Source::kGguf, "ggml-vocab-bert-bge.gguf", "ggml-vocab-bert-bge.gguf", false,
       /*lossless=*/false},
      {"bert_bge_hf", Source::kHfJsonFromGguf, "ggml-vocab-bert-bge.gguf",
       "ggml-vocab-bert-bge.gguf", false, /*lossless=*/false},
      {"phi_3", Source::kGguf, "ggml-vocab-phi-3.gguf", "ggml-vocab-phi-3.gguf"},
      {"baichuan", Source::kGguf, "ggml-vocab-baichuan.gguf", ""},
      // A real model's 512-piece vocab: most text goes through byte fallback.
      {"stories260k", Source::kGguf, "../models/stories260K.gguf", ""},
      {"gpt_2", Source::kGguf, "ggml-vocab-gpt-2.gguf", "ggml-vocab-gpt-2.gguf"},
      {"gpt_neox", Source::kGguf, "ggml-vocab-gpt-neox.gguf", ""},
      {"mpt", Source::kGguf, "ggml-vocab-mpt.gguf", "ggml-vocab-mpt.gguf"},
      {"falcon", Source::kGguf, "ggml-vocab-falcon.gguf", "ggml-vocab-falcon.gguf"},
      {"starcoder", Source::kGguf, "ggml-vocab-starcoder.gguf", "ggml-vocab-starcoder.gguf"},
      {"refact", Source::kGguf, "ggml-vocab-refact.gguf", "ggml-vocab-refact.gguf"},
      {"deepseek_coder", Source::kGguf, "ggml-vocab-deepseek-coder.gguf",
       "ggml-vocab-deepseek-coder.gguf"},
      {"deepseek_llm", Source::kGguf, "ggml-vocab-deepseek-llm.gguf",
       "ggml-vocab-deepseek-llm.gguf"},
      {"qwen2_tiktoken", Source::kTiktoken, "qwen.tiktoken", "ggml-vocab-qwen2.gguf"},
      {"qwen2_hf", Source::kHfDir, "hf/qwen2.5", "ggml-vocab-qwen2.gguf"},
      {"llama3_hf", Source::kHfDir, "hf/llama3.1", "ggml-vocab-llama-bpe.gguf"},
      // Qwen3.5's cases (a newer vocab that keeps Qwen2's ids for these inputs) also pass with
      // Qwen2's ranks and pre-tokenizer.
      {"qwen35_cases_via_qwen2_tiktoken", Source::kTiktoken, "qwen.tiktoken",
       "ggml-vocab-qwen35.gguf", true},
  };
  return specs;
}

const VocabSpec& FindSpec(std::string_view name) {
  for (const VocabSpec& spec : AllVocabs()) {
    if (spec.name == name) return spec;
  }
  YZ_CHECK(false && "no such vocab spec");
  return AllVocabs().front();
}

// A JSON string literal.
std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<uint8_t>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<int>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

// Writes `vocab` (read from GGUF) as the tokenizer.json Hugging Face's converters write for the
// family: Llama 2 style (BPE with byte fallback, merges, Prepend + Replace normalizer,
// ByteFallback decoder) for SentencePiece, BERT style (WordPiece, BertNormalizer,
// BertPreTokenizer, [CLS] $A [SEP]) for WordPiece.
//
// SentencePiece GGUF has scores, not merges: they are derived as HF's converter derives them
// from a SentencePiece model. For every normal piece, in score order (highest first, ties by
// id), each split into two normal pieces is a merge rule, splits ordered by the ids of their
// halves.
std::string HfJsonFromGguf(const Vocab& vocab) {
  const bool spm = vocab.model == TokenizerModel::kSentencePiece;
  std::string added, entries;
  std::map<std::string, int32_t> normal;  // text -> id
  for (size_t id = 0; id < vocab.tokens.size(); ++id) {
    const VocabToken& t = vocab.tokens[id];
    if (!entries.empty()) entries += ",";
    entries += fmt::format("{}:{}", JsonString(t.text), id);
    if (t.type == TokenType::kNormal) normal.emplace(t.text, static_cast<int32_t>(id));
    if (t.type == TokenType::kControl || t.type == TokenType::kUnknown) {
      if (!added.empty()) added += ",";
      added +=
          fmt::format(R"({{"id":{},"content":{},"single_word":false,"lstrip":false,"rstrip":false,)"
                      R"("normalized":false,"special":true}})",
                      id, JsonString(t.text));
    }
  }
  const std::string unk = JsonString(vocab.tokens[vocab.unk_id].text);
  const std::string bos = JsonString(vocab.tokens[vocab.bos_id].text);
  if (!spm) {
    const std::string sep = JsonString(vocab.tokens[vocab.eos_id].text);
    return fmt::format(
        R"({{"version":"1.0","truncation":null,"padding":null,"added_tokens":[{}],)"
        R"("normalizer":{{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,)"
        R"("strip_accents":null,"lowercase":true}},"pre_tokenizer":{{"type":"BertPreTokenizer"}},)"
        R"("post_processor":{{"type":"TemplateProcessing","single":[)"
        R"({{"SpecialToken":{{"id":{},"type_id":0}}}},{{"Sequence":{{"id":"A","type_id":0}}}},)"
        R"({{"SpecialToken":{{"id":{},"type_id":0}}}}],"pair":[],"special_tokens":{{}}}},)"
        R"("decoder":{{"type":"WordPiece","prefix":"##","cleanup":true}},)"
        R"("model":{{"type":"WordPiece","unk_token":{},"continuing_subword_prefix":"##",)"
        R"("max_input_chars_per_word":100,"vocab":{{{}}}}}}})",
        added, bos, sep, unk, entries);
  }

  std::vector<int32_t> by_score;
  for (const auto& [text, id] : normal) by_score.push_back(id);
  std::stable_sort(by_score.begin(), by_score.end());
  std::stable_sort(by_score.begin(), by_score.end(), [&](int32_t a, int32_t b) {
    return vocab.tokens[a].score > vocab.tokens[b].score;
  });
  std::string merges;
  for (const int32_t id : by_score) {
    const std::string& text = vocab.tokens[id].text;
    std::vector<std::pair<int32_t, int32_t>> splits;
    for (size_t cut = 1; cut < text.size(); ++cut) {
      if ((static_cast<uint8_t>(text[cut]) & 0xC0) == 0x80) continue;  // inside a character
      const auto left = normal.find(text.substr(0, cut));
      const auto right = normal.find(text.substr(cut));
      if (left != normal.end() && right != normal.end()) {
        splits.emplace_back(left->second, right->second);
      }
    }
    std::sort(splits.begin(), splits.end());
    for (const auto& [left, right] : splits) {
      if (!merges.empty()) merges += ",";
      merges += fmt::format("[{},{}]", JsonString(vocab.tokens[left].text),
                            JsonString(vocab.tokens[right].text));
    }
  }
  return fmt::format(
      R"({{"version":"1.0","truncation":null,"padding":null,"added_tokens":[{}],)"
      R"("normalizer":{{"type":"Sequence","normalizers":[{{"type":"Prepend","prepend":"▁"}},)"
      R"({{"type":"Replace","pattern":{{"String":" "}},"content":"▁"}}]}},)"
      R"("pre_tokenizer":null,)"
      R"("post_processor":{{"type":"TemplateProcessing","single":[)"
      R"({{"SpecialToken":{{"id":{},"type_id":0}}}},{{"Sequence":{{"id":"A","type_id":0}}}}],)"
      R"("pair":[],"special_tokens":{{}}}},)"
      R"("decoder":{{"type":"Sequence","decoders":[)"
      R"({{"type":"Replace","pattern":{{"String":"▁"}},"content":" "}},)"
      R"({{"type":"ByteFallback"}},{{"type":"Fuse"}},)"
      R"({{"type":"Strip","content":" ","start":1,"stop":0}}]}},)"
      R"("model":{{"type":"BPE","dropout":null,"unk_token":{},"continuing_subword_prefix":null,)"
      R"("end_of_word_suffix":null,"fuse_unk":true,"byte_fallback":true,"ignore_merges":false,)"
      R"("vocab":{{{}}},"merges":[{}]}}}})",
      added, bos, unk, entries, merges);
}

Result<Vocab> LoadVocab(const VocabSpec& spec) {
  const std::string path = kTokenizerDir + spec.path;
  switch (spec.source) {
    case Source::kHfJsonFromGguf: {
      YZ_ASSIGN_OR_RETURN(GgufFile gguf, GgufFile::Open(path));
      YZ_ASSIGN_OR_RETURN(Vocab from_gguf, VocabFromGguf(gguf));
      return VocabFromHfJson(HfJsonFromGguf(from_gguf));
    }
    case Source::kGguf: {
      YZ_ASSIGN_OR_RETURN(GgufFile gguf, GgufFile::Open(path));
      return VocabFromGguf(gguf);
    }
    case Source::kTiktoken:
      return VocabFromTiktokenFile(path);
    case Source::kHfDir:
      return VocabFromHfDir(path);
  }
  return InternalError("unreachable");
}

// Loading the big vocabs takes a moment: each is loaded once per test program.
const Tokenizer& GetTokenizer(const VocabSpec& spec) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& slot = cache[spec.name];
  if (!slot) {
    auto vocab = LoadVocab(spec);
    if (!vocab) ADD_FAILURE() << spec.name << ": " << vocab.error().ToString();
    YZ_CHECK(vocab.has_value());
    auto tokenizer = Tokenizer::Create(std::move(*vocab));
    if (!tokenizer) ADD_FAILURE() << spec.name << ": " << tokenizer.error().ToString();
    YZ_CHECK(tokenizer.has_value());
    slot = std::make_unique<Tokenizer>(std::move(*tokenizer));
  }
  return *slot;
}

struct Case {
  std::string input;
  std::vector<int32_t> expected;
};

// Parses X.inp / X.out as testdata/README.md describes: inputs separated by
// "\n__ggml_vocab_test__\n" (a trailing empty piece dropped), one line of ids per input (stripped;
// empty = no tokens); a repeated input keeps its last expectation.
std::vector<Case> LoadCases(const std::string& base) {
  const std::string inp = ReadFile(kTokenizerDir + base + ".inp");
  const std::string out = ReadFile(kTokenizerDir + base + ".out");
  constexpr std::string_view kSeparator = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  for (size_t pos = 0;;) {
    const size_t hit = inp.find(kSeparator, pos);
    if (hit == std::string::npos) {
      if (pos < inp.size()) inputs.push_back(inp.substr(pos));
      break;
    }
    inputs.push_back(inp.substr(pos, hit - pos));
    pos = hit + kSeparator.size();
  }
  std::vector<std::string> lines;
  std::istringstream out_stream(out);
  for (std::string line; std::getline(out_stream, line);) lines.push_back(line);
  EXPECT_GE(lines.size(), inputs.size()) << base;

  std::map<std::string, std::vector<int32_t>> by_input;
  std::vector<std::string> order;
  for (size_t i = 0; i < inputs.size() && i < lines.size(); ++i) {
    std::vector<int32_t> ids;
    std::istringstream ids_stream(lines[i]);
    for (int32_t id; ids_stream >> id;) ids.push_back(id);
    if (!by_input.contains(inputs[i])) order.push_back(inputs[i]);
    by_input[inputs[i]] = std::move(ids);
  }
  std::vector<Case> cases;
  for (const std::string& input : order) cases.push_back({input, by_input[input]});
  return cases;
}

std::string Escape(std::string_view s) {
  std::string out;
  for (const char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += c;
    }
  }
  return out;
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<uint8_t>(s[i]);
    size_t n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? b : n == 2 ? (b & 0x1F) : n == 3 ? (b & 0x0F) : (b & 0x07);
    for (size_t k = 1; k < n; ++k) {
      const auto c = static_cast<uint8_t>(s[i + k]);
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

std::vector<VocabSpec> VocabsWithCases() {
  std::vector<VocabSpec> out;
  for (const VocabSpec& spec : AllVocabs()) {
    if (!spec.cases.empty()) out.push_back(spec);
  }
  return out;
}

class ReferenceCasesTest : public testing::TestWithParam<VocabSpec> {};

TEST_P(ReferenceCasesTest, MatchesReferenceTokenizations) {
  const VocabSpec& spec = GetParam();
  const Tokenizer& tokenizer = GetTokenizer(spec);
  const std::vector<Case> cases = LoadCases(spec.cases);
  ASSERT_FALSE(cases.empty());
  size_t n_passed = 0;
  for (const Case& c : cases) {
    const std::vector<int32_t> actual = tokenizer.Encode(c.input);
    if (actual == c.expected) {
      ++n_passed;
    } else {
      ADD_FAILURE() << spec.name << ": '" << Escape(c.input)
                    << "'\n  expected: " << fmt::format("{}", fmt::join(c.expected, " "))
                    << "\n  actual:   " << fmt::format("{}", fmt::join(actual, " "));
    }
  }
  std::cout << fmt::format("[ vocab    ] {}: {}/{} cases pass ({}.inp)\n", spec.name, n_passed,
                           cases.size(), spec.cases);
  EXPECT_EQ(n_passed, cases.size());
}

// The UTF-8 documents in testdata/docs (txt and md; the UTF-16/32 ones are not UTF-8).
const std::vector<std::string>& Documents() {
  static const std::vector<std::string> docs = {
      "txt/chatchat-test-zh.txt",
      "txt/tika-testTXT.txt",
      "txt/tika-testTXTNonASCIIUTF8.txt",
      "txt/unstructured-book-war-and-peace-1p.txt",
      "txt/unstructured-norwich-city.txt",
      "md/chatchat-distributed-training-zh.md",
      "md/chatchat-llm-inference-opt-zh.md",
      "md/chatchat-llm-stack-algorithms-zh.md",
      "md/docling-nested.md",
      "md/docling-wiki.md",
      "md/unstructured-codeblock.md",
      "md/unstructured-simple-table.md",
  };
  return docs;
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, ReferenceCasesTest, testing::ValuesIn(VocabsWithCases()),
                         [](const auto& info) { return info.param.name; });

class DocumentsTest : public testing::TestWithParam<VocabSpec> {};

TEST_P(DocumentsTest, RoundTripAndStream) {
  const Tokenizer& tokenizer = GetTokenizer(GetParam());
  for (const std::string& doc : Documents()) {
    const std::string text = ReadFile(kTestdata + "/docs/" + doc);
    ASSERT_FALSE(text.empty()) << doc;
    ASSERT_TRUE(IsValidUtf8(text)) << doc;
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tokenizer.Encode(text);
    const auto elapsed_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::steady_clock::now() - start)
                                .count();
    if (text.size() > 30000) {
      std::cout << fmt::format("[ timing   ] {} {}: {} bytes -> {} tokens in {:.2f} ms\n",
                               GetParam().name, doc, text.size(), ids.size(), elapsed_us / 1000.0);
    }
    ASSERT_FALSE(ids.empty());
    const std::string decoded = tokenizer.Decode(ids);
    EXPECT_TRUE(decoded == text) << GetParam().name << " " << doc << ": round trip differs";

    StreamingDecoder stream(tokenizer);
    std::string streamed;
    for (const int32_t id : ids) {
      const std::string part = stream.Push(id);
      ASSERT_TRUE(IsValidUtf8(part)) << doc << ": invalid UTF-8 after token " << id;
      streamed += part;
    }
    streamed += stream.Flush();
    EXPECT_TRUE(streamed == decoded) << GetParam().name << " " << doc << ": stream differs";
  }
}

std::vector<VocabSpec> VocabsForDocuments() {
  std::vector<VocabSpec> out;
  for (const VocabSpec& spec : AllVocabs()) {
    if (!spec.cases_only && spec.lossless) out.push_back(spec);
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, DocumentsTest, testing::ValuesIn(VocabsForDocuments()),
                         [](const auto& info) { return info.param.name; });

// Any bytes, valid UTF-8 or not: Encode never fails, the stream stays valid UTF-8, and the round
// trip is exact except for what the model itself cannot represent: SentencePiece decodes a
// literal "▁" as a space; byte-level BPE drops bytes its vocab has no token for (many vocabs lack
// the bytes that never occur in UTF-8, e.g. 0xFF; Falcon also lacks 0x0B), as HF does.
TEST_P(DocumentsTest, ArbitraryBytesRoundTrip) {
  const Tokenizer& tokenizer = GetTokenizer(GetParam());
  const Vocab& vocab = tokenizer.vocab();
  std::vector<bool> has_byte(256);
  for (const VocabToken& t : vocab.tokens) {
    if (vocab.model == TokenizerModel::kByteLevelBpe && t.type == TokenType::kNormal &&
        t.text.size() == 1) {
      has_byte[static_cast<uint8_t>(t.text[0])] = true;
    }
    if (vocab.model == TokenizerModel::kSentencePiece && t.type == TokenType::kByte) {
      has_byte[std::stoi(t.text.substr(3, 2), nullptr, 16)] = true;
    }
  }
  const auto n_missing = std::count(has_byte.begin(), has_byte.end(), false);
  std::cout << fmt::format("[ bytes    ] {}: {} of 256 bytes have no token\n", GetParam().name,
                           n_missing);
  std::mt19937 rng(1234);
  const std::vector<std::string> fragments = {"a",
                                              " ",
                                              "中",
                                              "é",
                                              "\n",
                                              "1",
                                              "'s",
                                              "😀",
                                              "\xFF",
                                              "\x80",
                                              "\xE4\xB8",
                                              "\xC0\xAF",
                                              "\xED\xA0\x80",
                                              std::string(1, '\0'),
                                              "\x0B",
                                              "\t",
                                              "<|im_end|>",
                                              "▁"};
  for (int trial = 0; trial < 300; ++trial) {
    std::string text;
    const int n = static_cast<int>(rng() % 25);
    for (int i = 0; i < n; ++i) text += fragments[rng() % fragments.size()];
    const std::vector<int32_t> ids = tokenizer.Encode(text);
    for (const int32_t id : ids) ASSERT_TRUE(tokenizer.IsValid(id));
    std::string expected;
    for (size_t i = 0; i < text.size(); ++i) {
      if (vocab.model == TokenizerModel::kSentencePiece && text.compare(i, 3, "▁") == 0) {
        expected += ' ';
        i += 2;
      } else if (has_byte[static_cast<uint8_t>(text[i])]) {
        expected += text[i];
      }
    }
    const std::string decoded = tokenizer.Decode(ids);
    ASSERT_TRUE(decoded == expected) << GetParam().name << ": '" << Escape(text) << "'";
    StreamingDecoder stream(tokenizer);
    std::string streamed;
    for (const int32_t id : ids) {
      const std::string part = stream.Push(id);
      ASSERT_TRUE(IsValidUtf8(part));
      streamed += part;
    }
    const std::string tail = stream.Flush();
    ASSERT_TRUE(IsValidUtf8(tail));
    streamed += tail;
    if (IsValidUtf8(decoded)) {
      ASSERT_TRUE(streamed == decoded);
    }
  }
}

TEST(RealVocabs, QwenTiktokenRanksAndHfMergesAgreeOnDocuments) {
  const Tokenizer& tiktoken = GetTokenizer(FindSpec("qwen2_tiktoken"));
  const Tokenizer& hf = GetTokenizer(FindSpec("qwen2_hf"));
  for (const std::string& doc : Documents()) {
    const std::string text = ReadFile(kTestdata + "/docs/" + doc);
    EXPECT_TRUE(tiktoken.Encode(text) == hf.Encode(text)) << doc;
  }
}

TEST(RealVocabs, SpecialTokensOfLlama3AndQwen2) {
  const Tokenizer& llama3 = GetTokenizer(FindSpec("llama3_hf"));
  EXPECT_EQ(llama3.vocab().bos_id, 128000);
  EXPECT_EQ(llama3.vocab().eos_id, 128009);  // <|eot_id|> per tokenizer_config.json
  EXPECT_TRUE(llama3.vocab().add_bos);
  EXPECT_TRUE(llama3.IsEndOfGeneration(128009));
  EXPECT_TRUE(llama3.IsEndOfGeneration(128001));  // <|end_of_text|>: base models end with it
  EXPECT_FALSE(llama3.IsEndOfGeneration(128000));
  EXPECT_FALSE(llama3.IsEndOfGeneration(*llama3.FindAddedToken("<|start_header_id|>")));
  const std::string chat = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
  const auto parsed = llama3.Encode(chat, {.add_special = true, .parse_special = true});
  ASSERT_GE(parsed.size(), 5u);
  EXPECT_EQ(parsed[0], 128000);
  EXPECT_EQ(parsed[1], *llama3.FindAddedToken("<|start_header_id|>"));
  EXPECT_EQ(parsed.back(), 128009);
  EXPECT_EQ(llama3.Decode(parsed), "<|begin_of_text|>" + chat);
  EXPECT_EQ(llama3.Decode(parsed, /*skip_special=*/true), "user\n\nHi");
  // Untrusted text: the markers stay text.
  const auto plain = llama3.Encode(chat);
  for (const int32_t id : plain) EXPECT_LT(id, 128000);
  EXPECT_EQ(llama3.Decode(plain), chat);

  for (const char* index : {"qwen2_tiktoken", "qwen2_hf"}) {
    const Tokenizer& qwen = GetTokenizer(FindSpec(index));
    EXPECT_EQ(qwen.FindAddedToken("<|im_start|>"), 151644) << index;
    EXPECT_EQ(qwen.FindAddedToken("<|im_end|>"), 151645) << index;
    EXPECT_TRUE(qwen.IsEndOfGeneration(151645)) << index;
    EXPECT_FALSE(qwen.vocab().add_bos) << index;
    EXPECT_EQ(qwen.Encode("<|im_start|>user", {.parse_special = true})[0], 151644) << index;
  }
}

TEST(RealVocabs, ManyThreadsShareOneTokenizer) {
  const Tokenizer& tokenizer = GetTokenizer(FindSpec("llama3_hf"));
  const std::string text = ReadFile(kTestdata + "/docs/txt/chatchat-test-zh.txt");
  const std::vector<int32_t> expected = tokenizer.Encode(text);
  std::vector<std::thread> threads;
  std::vector<int> n_same(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) n_same[t] += tokenizer.Encode(text) == expected ? 1 : 0;
    });
  }
  for (auto& thread : threads) thread.join();
  for (const int n : n_same) EXPECT_EQ(n, 10);
}

TEST(RealVocabs, HfSentencePieceJsonMatchesTheGgufVocabOnDocuments) {
  const Tokenizer& gguf = GetTokenizer(FindSpec("llama_spm"));
  const Tokenizer& hf = GetTokenizer(FindSpec("llama_spm_hf"));
  EXPECT_EQ(hf.vocab().model, TokenizerModel::kSentencePiece);
  EXPECT_EQ(hf.vocab().bos_id, 1);
  EXPECT_TRUE(hf.vocab().add_bos);
  EXPECT_EQ(hf.GetType(0), TokenType::kUnknown);
  EXPECT_EQ(hf.GetType(13), TokenType::kByte);  // <0x0A>
  for (const std::string& doc : Documents()) {
    const std::string text = ReadFile(kTestdata + "/docs/" + doc);
    EXPECT_TRUE(gguf.Encode(text, {.add_special = true}) == hf.Encode(text, {.add_special = true}))
        << doc;
  }
}

TEST(RealVocabs, BertAddsClsAndSepAndDecodesWords) {
  for (const char* name : {"bert_bge", "bert_bge_hf"}) {
    const Tokenizer& bert = GetTokenizer(FindSpec(name));
    EXPECT_EQ(bert.vocab().model, TokenizerModel::kWordPiece) << name;
    EXPECT_EQ(bert.vocab().bos_id, 101) << name;  // [CLS]
    EXPECT_EQ(bert.vocab().eos_id, 102) << name;  // [SEP]
    EXPECT_EQ(bert.vocab().unk_id, 100) << name;
    const std::vector<int32_t> ids = bert.Encode("Hello, WORLD!  Äpfel\t", {.add_special = true});
    ASSERT_GE(ids.size(), 3u) << name;
    EXPECT_EQ(ids.front(), 101) << name;
    EXPECT_EQ(ids.back(), 102) << name;
    EXPECT_EQ(bert.Decode(ids), "[CLS] hello , world ! apfel [SEP]") << name;
    EXPECT_EQ(bert.Decode(ids, /*skip_special=*/true), "hello , world ! apfel") << name;
    // Streaming gives the same text.
    StreamingDecoder stream(bert);
    std::string streamed;
    for (const int32_t id : ids) streamed += stream.Push(id);
    EXPECT_EQ(streamed + stream.Flush(), bert.Decode(ids)) << name;
    // Special-token text is only recognised when asked to.
    EXPECT_EQ(bert.Encode("[SEP]", {.parse_special = true}), std::vector<int32_t>{102}) << name;
    EXPECT_NE(bert.Encode("[SEP]"), std::vector<int32_t>{102}) << name;
    // A word longer than max_input_chars_per_word (100) is one unknown token.
    EXPECT_EQ(bert.Encode(std::string(101, 'a')), std::vector<int32_t>{100}) << name;
    EXPECT_NE(bert.Encode(std::string(100, 'a')), std::vector<int32_t>{100}) << name;
  }
}

TEST(RealVocabs, BertTokenizesDocumentsWithFewUnknownTokens) {
  const Tokenizer& gguf = GetTokenizer(FindSpec("bert_bge"));
  const Tokenizer& hf = GetTokenizer(FindSpec("bert_bge_hf"));
  for (const std::string& doc : Documents()) {
    const std::string text = ReadFile(kTestdata + "/docs/" + doc);
    const std::vector<int32_t> ids = gguf.Encode(text);
    EXPECT_TRUE(ids == hf.Encode(text)) << doc;
    // An English model: the Chinese documents are mostly [UNK] (as with HF's tokenizer).
    if (doc.find("-zh.") != std::string::npos) continue;
    const auto n_unknown = std::count(ids.begin(), ids.end(), 100);
    EXPECT_LT(n_unknown * 100, static_cast<std::ptrdiff_t>(ids.size())) << doc;
  }
}

// The normalisation a tokenizer.json asks for is applied: NFC composes "e" + U+0301 into "é";
// NFKC also folds compatibility characters ("ﬁ" -> "fi", full-width "Ａ" -> "A").
TEST(RealVocabs, AppliesNfcAndNfkcNormalizers) {
  const Tokenizer& qwen = GetTokenizer(FindSpec("qwen2_hf"));
  EXPECT_EQ(qwen.vocab().normalization, UnicodeNormalization::kNfc);
  EXPECT_EQ(qwen.Encode("caf"
                        "e\xCC\x81"),
            qwen.Encode("caf\xC3\xA9"));
  EXPECT_NE(qwen.Encode("\xEF\xAC\x81"), qwen.Encode("fi"));
  // Invalid bytes around the composed character stay as they are.
  EXPECT_EQ(qwen.Decode(qwen.Encode("\xFF"
                                    "e\xCC\x81\xFF")),
            "\xFF\xC3\xA9\xFF");

  Vocab nfkc = qwen.vocab();
  nfkc.normalization = UnicodeNormalization::kNfkc;
  auto tokenizer = Tokenizer::Create(std::move(nfkc));
  ASSERT_TRUE(tokenizer.has_value()) << tokenizer.error().ToString();
  EXPECT_EQ(tokenizer->Encode("\xEF\xAC\x81 \xEF\xBC\xA1"), qwen.Encode("fi A"));
}

}  // namespace
}  // namespace yunzhi::engine
