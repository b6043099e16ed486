#include "yunzhi/knowledge/chunker.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "yunzhi/knowledge/text_analysis.h"

namespace yunzhi::knowledge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Block Heading(int level, std::string text, std::vector<std::string> path = {}) {
  Block b;
  b.kind = BlockKind::kHeading;
  b.level = level;
  b.text = std::move(text);
  b.section_path = std::move(path);
  return b;
}

Block Para(std::string text, std::vector<std::string> path = {}, int page = 0) {
  Block b;
  b.text = std::move(text);
  b.section_path = std::move(path);
  b.page = page;
  return b;
}

Block Table(std::vector<std::vector<std::string>> rows, std::vector<std::string> path = {}) {
  Block b;
  b.kind = BlockKind::kTable;
  b.rows = std::move(rows);
  b.has_header_row = true;
  for (auto& r : b.rows) {
    for (auto& c : r) b.text += c + " ";
    b.text += "\n";
  }
  b.section_path = std::move(path);
  return b;
}

bool ValidUtf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    if (c >= 0xF0 && c < 0xF8) n = 3;
    else if (c >= 0xE0) n = 2;
    else if (c >= 0xC0) n = 1;
    else if (c >= 0x80) return false;  // a continuation byte where a character should start
    if (c >= 0xF8 || i + n >= s.size() + (n == 0 ? 1 : 0) || (n > 0 && i + n > s.size() - 1)) return false;
    for (size_t k = 1; k <= n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += n + 1;
  }
  return true;
}

std::string Sentence(int i) {
  return "Sentence number " + std::to_string(i) + " talks about aerodynamic boundary layers at length.";
}

std::vector<Chunk> MustChunk(const ExtractedDocument& doc, int max_tokens, int overlap) {
  auto r = ChunkDocument(doc, ChunkOptions{max_tokens, overlap});
  EXPECT_TRUE(r.has_value()) << r.error().ToString();
  return r.has_value() ? *r : std::vector<Chunk>{};
}

// The rules every chunk of a document without tables obeys.
void ExpectExactSpans(const ExtractedDocument& doc, const std::vector<Chunk>& chunks, int max_tokens) {
  const std::string md = doc.ToMarkdown();
  for (const Chunk& c : chunks) {
    ASSERT_LE(c.char_start, c.char_end);
    ASSERT_LE(c.char_end, md.size());
    EXPECT_EQ(c.text, md.substr(c.char_start, c.char_end - c.char_start));
    EXPECT_EQ(c.n_tokens, static_cast<int>(CountTokens(c.text)));
    EXPECT_LE(c.n_tokens, max_tokens);
    EXPECT_GT(c.n_tokens, 0);
    EXPECT_TRUE(ValidUtf8(c.text));
    EXPECT_EQ(c.text.find('#'), std::string::npos) << "a heading leaked into " << c.text;
  }
}

TEST(ChunkDocument, RejectsBadOptions) {
  ExtractedDocument doc;
  for (auto [max, overlap] : {std::pair{15, 0}, std::pair{100, 100}, std::pair{100, 150}, std::pair{100, -1}}) {
    auto r = ChunkDocument(doc, ChunkOptions{max, overlap});
    ASSERT_FALSE(r.has_value()) << max << " " << overlap;
    EXPECT_EQ(r.error().code, Code::kInvalidArgument);
  }
  EXPECT_TRUE(ChunkDocument(doc, ChunkOptions{16, 15}).has_value());
}

TEST(ChunkDocument, EmptyDocumentGivesNoChunks) {
  ExtractedDocument doc;
  EXPECT_TRUE(MustChunk(doc, 400, 50).empty());
  doc.blocks.push_back(Heading(1, "Only a title"));
  doc.blocks.push_back(Para("   "));
  EXPECT_TRUE(MustChunk(doc, 400, 50).empty());
}

TEST(ToMarkdown, BlockSpansCoverEachBlocksRendering) {
  ExtractedDocument doc;
  doc.blocks = {Heading(2, "Intro"), Para("Hello world.", {"Intro"}), Table({{"a", "b"}, {"1", "2"}}, {"Intro"})};
  std::vector<std::pair<size_t, size_t>> spans;
  const std::string md = doc.ToMarkdown(&spans);
  EXPECT_EQ(md, doc.ToMarkdown());
  ASSERT_EQ(spans.size(), 3u);
  EXPECT_EQ(md.substr(spans[0].first, spans[0].second - spans[0].first), "## Intro");
  EXPECT_EQ(md.substr(spans[1].first, spans[1].second - spans[1].first), "Hello world.");
  EXPECT_EQ(md.substr(spans[2].first, spans[2].second - spans[2].first), "| a | b |\n| --- | --- |\n| 1 | 2 |");
}

TEST(ChunkDocument, PacksSmallBlocksOfASectionAndSplitsAtHeadings) {
  ExtractedDocument doc;
  doc.blocks = {
      Heading(1, "Guide"),
      Para("First paragraph.", {"Guide"}, 1),
      Para("Second paragraph.", {"Guide"}, 2),
      Heading(2, "Setup", {"Guide"}),
      Para("Install it.", {"Guide", "Setup"}, 2),
      Heading(1, "Other"),
      Para("Unrelated.", {"Other"}, 3),
  };
  auto chunks = MustChunk(doc, 400, 50);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].text, "First paragraph.\n\nSecond paragraph.");
  EXPECT_THAT(chunks[0].section_path, ElementsAre("Guide"));
  EXPECT_EQ(chunks[0].page, 1);
  EXPECT_EQ(chunks[1].text, "Install it.");
  EXPECT_THAT(chunks[1].section_path, ElementsAre("Guide", "Setup"));
  EXPECT_EQ(chunks[1].page, 2);
  EXPECT_EQ(chunks[2].text, "Unrelated.");
  EXPECT_EQ(chunks[2].page, 3);
  ExpectExactSpans(doc, chunks, 400);
}

TEST(ChunkDocument, SplitsLongParagraphsAtSentenceEndsWithOverlap) {
  std::string text;
  for (int i = 0; i < 60; ++i) text += Sentence(i) + " ";
  ExtractedDocument doc;
  doc.blocks = {Heading(1, "Long"), Para(text, {"Long"})};
  const int max = 64, overlap = 16;
  auto chunks = MustChunk(doc, max, overlap);
  ASSERT_GT(chunks.size(), 5u);
  ExpectExactSpans(doc, chunks, max);
  for (size_t i = 0; i < chunks.size(); ++i) {
    // Every chunk holds whole sentences: it starts with "Sentence" and ends with a period.
    EXPECT_TRUE(chunks[i].text.starts_with("Sentence")) << chunks[i].text;
    EXPECT_TRUE(chunks[i].text.ends_with(".")) << chunks[i].text;
    if (i == 0) continue;
    // Overlap: the chunk starts before the previous one ends, and the shared text is whole
    // sentences of at most `overlap` tokens.
    ASSERT_LT(chunks[i].char_start, chunks[i - 1].char_end);
    EXPECT_GT(chunks[i].char_start, chunks[i - 1].char_start);
    const std::string shared = doc.ToMarkdown().substr(chunks[i].char_start, chunks[i - 1].char_end - chunks[i].char_start);
    EXPECT_LE(CountTokens(shared), static_cast<size_t>(overlap));
    EXPECT_TRUE(chunks[i - 1].text.ends_with(shared));
  }
  // Without overlap, chunks tile the paragraph.
  auto tiles = MustChunk(doc, max, 0);
  for (size_t i = 1; i < tiles.size(); ++i) EXPECT_GE(tiles[i].char_start, tiles[i - 1].char_end);
  EXPECT_LT(tiles.size(), chunks.size());
}

TEST(ChunkDocument, ABlockThatFitsAloneIsNotCutAcrossChunks) {
  std::string para1, para2;
  for (int i = 0; i < 5; ++i) para1 += Sentence(i) + " ";
  for (int i = 5; i < 10; ++i) para2 += Sentence(i) + " ";
  ExtractedDocument doc;
  doc.blocks = {Para(para1), Para(para2)};
  const size_t one = CountTokens(para1);
  auto chunks = MustChunk(doc, static_cast<int>(one + 10), 0);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].text + " ", para1);
  EXPECT_EQ(chunks[1].text + " ", para2);
}

TEST(ChunkDocument, ChineseWithoutPunctuationSplitsBetweenCharacters) {
  std::string text;
  for (int i = 0; i < 300; ++i) text += "模型训练";  // 1200 CJK characters, no sentence end
  ExtractedDocument doc;
  doc.blocks = {Para(text)};
  auto chunks = MustChunk(doc, 100, 10);
  ExpectExactSpans(doc, chunks, 100);
  ASSERT_GE(chunks.size(), 12u);
  for (size_t i = 0; i + 1 < chunks.size(); ++i) {
    EXPECT_GE(chunks[i].n_tokens, 90) << i;  // filled up, not tiny pieces
  }
  // Chinese sentences end at 。！？ and are kept whole.
  std::string sentences;
  for (int i = 0; i < 40; ++i) sentences += "今天我们讨论第" + std::to_string(i) + "个问题。";
  doc.blocks = {Para(sentences)};
  chunks = MustChunk(doc, 50, 0);
  ExpectExactSpans(doc, chunks, 50);
  for (const Chunk& c : chunks) EXPECT_TRUE(c.text.ends_with("。")) << c.text;
}

TEST(ChunkDocument, HugeWordsAreCutAtCodePointBoundaries) {
  ExtractedDocument doc;
  std::string blob(5000, 'x');
  std::string accented;
  for (int i = 0; i < 2000; ++i) accented += "é";
  doc.blocks = {Para(blob), Para(accented)};
  auto chunks = MustChunk(doc, 16, 0);
  ExpectExactSpans(doc, chunks, 16);
  size_t covered = 0;  // no overlap: every character once (blocks may share a chunk)
  for (const Chunk& c : chunks) covered += c.text.size() - static_cast<size_t>(std::count(c.text.begin(), c.text.end(), '\n'));
  EXPECT_EQ(covered, blob.size() + accented.size());
}

TEST(ChunkDocument, TablesSplitByRowsAndRepeatTheHeader) {
  std::vector<std::vector<std::string>> rows = {{"Model", "Params", "Notes"}};
  for (int i = 0; i < 40; ++i) {
    rows.push_back({"model-" + std::to_string(i), std::to_string(i) + "B", "row " + std::to_string(i) + " notes"});
  }
  ExtractedDocument doc;
  doc.blocks = {Heading(1, "Models"), Para("Intro text.", {"Models"}), Table(rows, {"Models"}),
                Para("After the table.", {"Models"})};
  const std::string md = doc.ToMarkdown();
  auto chunks = MustChunk(doc, 60, 10);
  ASSERT_GE(chunks.size(), 5u);
  EXPECT_EQ(chunks.front().text, "Intro text.");
  EXPECT_EQ(chunks.back().text, "After the table.");
  const std::string header = "| Model | Params | Notes |\n| --- | --- | --- |\n";
  int n_rows = 0;
  for (size_t i = 1; i + 1 < chunks.size(); ++i) {
    const Chunk& c = chunks[i];
    ASSERT_TRUE(c.text.starts_with(header)) << c.text;
    EXPECT_LE(c.n_tokens, 60);
    EXPECT_THAT(c.section_path, ElementsAre("Models"));
    // The body rows are exactly the span's tail; whole rows only.
    const std::string body = c.text.substr(header.size());
    const std::string span = md.substr(c.char_start, c.char_end - c.char_start);
    EXPECT_TRUE(span.ends_with(body)) << span;
    EXPECT_TRUE(i == 1 ? span == c.text : span == body);
    for (size_t pos = 0; pos < body.size();) {
      size_t nl = body.find('\n', pos);
      std::string line = body.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      EXPECT_TRUE(line.starts_with("| model-") && line.ends_with(" notes |")) << line;
      ++n_rows;
      if (nl == std::string::npos) break;
      pos = nl + 1;
    }
  }
  EXPECT_EQ(n_rows, 40);  // every row exactly once: no overlap between table chunks
}

TEST(ChunkDocument, AnOversizedRowIsSplitWithTheHeaderRepeated) {
  std::string big;
  for (int i = 0; i < 100; ++i) big += "word" + std::to_string(i) + " ";
  ExtractedDocument doc;
  doc.blocks = {Table({{"Key", "Value"}, {"k1", "small"}, {"k2", big}, {"k3", "small"}})};
  auto chunks = MustChunk(doc, 40, 0);
  ASSERT_GE(chunks.size(), 4u);
  for (const Chunk& c : chunks) {
    EXPECT_TRUE(c.text.starts_with("| Key | Value |\n| --- | --- |\n")) << c.text;
    EXPECT_LE(c.n_tokens, 40);
  }
  EXPECT_THAT(chunks.front().text, HasSubstr("| k1 | small |"));
  EXPECT_THAT(chunks.back().text, HasSubstr("| k3 | small |"));
}

TEST(ChunkDocument, RandomDocumentsKeepTheInvariants) {
  std::mt19937 rng(42);
  const std::vector<std::string> pieces = {"Hello world. ", "模型训练需要数据。", "x", "\n", "  ",
                                           "Qwen2.5 is fast! ", "é", "长句子没有标点", "end? ", "- "};
  for (int round = 0; round < 50; ++round) {
    ExtractedDocument doc;
    std::vector<std::string> path;
    const int n_blocks = 1 + static_cast<int>(rng() % 12);
    for (int b = 0; b < n_blocks; ++b) {
      if (rng() % 5 == 0) {
        path = {"H" + std::to_string(b)};
        doc.blocks.push_back(Heading(1, path[0]));
        continue;
      }
      std::string text;
      const int n = static_cast<int>(rng() % 80);
      for (int k = 0; k < n; ++k) text += pieces[rng() % pieces.size()];
      Block blk = Para(text, path, b);
      if (rng() % 4 == 0) blk.kind = BlockKind::kListItem;
      if (rng() % 7 == 0) blk.kind = BlockKind::kCode;
      doc.blocks.push_back(blk);
    }
    const int max = 16 + static_cast<int>(rng() % 100);
    const int overlap = static_cast<int>(rng() % static_cast<unsigned>(max));
    auto chunks = MustChunk(doc, max, overlap);
    ExpectExactSpans(doc, chunks, max);
    // Coverage: every visible character of a non-heading block is in some chunk.
    std::vector<std::pair<size_t, size_t>> spans;
    const std::string md = doc.ToMarkdown(&spans);
    std::vector<bool> covered(md.size(), false);
    for (const Chunk& c : chunks) {
      for (size_t i = c.char_start; i < c.char_end; ++i) covered[i] = true;
    }
    for (size_t b = 0; b < doc.blocks.size(); ++b) {
      if (doc.blocks[b].kind == BlockKind::kHeading) continue;
      for (size_t i = spans[b].first; i < spans[b].second; ++i) {
        const char ch = md[i];
        if (ch == ' ' || ch == '\n' || ch == '\t') continue;
        if (!covered[i]) {
          ADD_FAILURE() << "round " << round << ": byte " << i << " of block " << b << " not covered";
          break;
        }
      }
    }
  }
}

// Real documents from ../shared/testdata/docs (text and Office formats, no OCR): every chunk is
// within the limit, non-table chunks are exact spans, table chunks end with their span's rows,
// and every visible character of every non-heading block is in some chunk.
TEST(ChunkDocument, RealDocumentsKeepTheInvariants) {
  namespace fs = std::filesystem;
  size_t n_docs = 0, n_chunks = 0;
  for (const char* sub : {"md", "txt", "html", "csv", "docx", "xlsx"}) {
    for (const auto& entry : fs::directory_iterator(fs::path(YUNZHI_TESTDATA_DIR) / "docs" / sub)) {
      std::ifstream in(entry.path(), std::ios::binary);
      std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      ExtractOptions eo;
      eo.ocr = false;
      auto doc = Extract(bytes, entry.path().filename().string(), eo);
      if (!doc) continue;  // refusing a file is the ingest tests' business
      ++n_docs;
      std::vector<std::pair<size_t, size_t>> spans;
      const std::string md = doc->ToMarkdown(&spans);
      auto in_table = [&](size_t pos) {
        for (size_t b = 0; b < spans.size(); ++b) {
          if (doc->blocks[b].kind == BlockKind::kTable && pos >= spans[b].first && pos < spans[b].second) return true;
        }
        return false;
      };
      for (int max : {64, 400}) {
        auto chunks = MustChunk(*doc, max, max / 8);
        n_chunks += chunks.size();
        std::vector<bool> covered(md.size(), false);
        for (const Chunk& c : chunks) {
          ASSERT_LE(c.char_end, md.size()) << entry.path();
          for (size_t i = c.char_start; i < c.char_end; ++i) covered[i] = true;
          EXPECT_TRUE(ValidUtf8(c.text)) << entry.path();
          EXPECT_EQ(c.n_tokens, static_cast<int>(CountTokens(c.text)));
          const std::string span = md.substr(c.char_start, c.char_end - c.char_start);
          if (in_table(c.char_start)) {
            // Header line, separator line, then the rows that end the span.
            const size_t body_at = c.text.find('\n', c.text.find('\n') + 1) + 1;
            EXPECT_TRUE(span == c.text || (body_at > 0 && span == c.text.substr(body_at)))
                << entry.path() << ": " << c.text;
            const size_t header_tokens = CountTokens(c.text.substr(0, body_at));
            if (header_tokens + 10 < static_cast<size_t>(max)) {
              EXPECT_LE(c.n_tokens, max) << entry.path();
            }
          } else {
            EXPECT_EQ(c.text, span) << entry.path();
            EXPECT_LE(c.n_tokens, max) << entry.path();
          }
        }
        for (size_t b = 0; b < doc->blocks.size(); ++b) {
          if (doc->blocks[b].kind == BlockKind::kHeading) continue;
          for (size_t i = spans[b].first; i < spans[b].second; ++i) {
            if (md[i] == ' ' || md[i] == '\n' || md[i] == '\t' || md[i] == '\r') continue;
            if (!covered[i]) {
              ADD_FAILURE() << entry.path() << ": byte " << i << " of block " << b << " is in no chunk";
              break;
            }
          }
        }
      }
    }
  }
  std::printf("chunked %zu real documents into %zu chunks (max 64 and 400 tokens)\n", n_docs, n_chunks);
  EXPECT_GE(n_docs, 30u);
}

}  // namespace
}  // namespace yunzhi::knowledge
