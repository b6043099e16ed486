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
enum class Source { kGguf, kTiktoken, kHfDir };

struct VocabSpec {
  std::string name;  // test parameter name
  Source source;
  std::string path;         // relative to testdata/tokenizer/
  std::string cases;        // the .inp/.out base name, "" when there are none
  bool cases_only = false;  // an extra set of cases for a vocab already in the list
};

// gtest prints parameters in test names and failures: show the name, not the bytes.
void PrintTo(const VocabSpec& spec, std::ostream* os) { *os << spec.name; }

const std::vector<VocabSpec>& AllVocabs() {
  static const std::vector<VocabSpec> specs = {
      {"llama_spm", Source::kGguf, "ggml-vocab-llama-spm.gguf", "ggml-vocab-llama-spm.gguf"},
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

Result<Vocab> LoadVocab(const VocabSpec& spec) {
  const std::string path = kTokenizerDir + spec.path;
  switch (spec.source) {
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
    if (!spec.cases_only) out.push_back(spec);
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

// bert-bge is a WordPiece ("bert") vocab: not a model this tokenizer implements.
TEST(VocabFromGguf, RejectsWordPieceVocabWithUnimplemented) {
  auto gguf = GgufFile::Open(kTokenizerDir + "ggml-vocab-bert-bge.gguf");
  ASSERT_TRUE(gguf.has_value()) << gguf.error().ToString();
  auto vocab = VocabFromGguf(*gguf);
  ASSERT_FALSE(vocab.has_value());
  EXPECT_EQ(vocab.error().code, Code::kUnimplemented);
  EXPECT_NE(vocab.error().message.find("bert"), std::string::npos) << vocab.error().message;
}

}  // namespace
}  // namespace yunzhi::engine
