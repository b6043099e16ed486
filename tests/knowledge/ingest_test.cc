// knowledge::Extract on the real documents in ../shared/testdata/docs: every text-family file is
// extracted; where another tool's rendering exists, most of its tokens must appear in ours.
#include "yunzhi/knowledge/ingest.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "knowledge/ingest_test_util.h"

namespace yunzhi::knowledge {
namespace {

namespace fs = std::filesystem;

using testing::Docs;
using testing::ReadFile;
using testing::Recall;
using testing::Tokens;

ExtractedDocument MustExtract(const fs::path& p) {
  std::string bytes = ReadFile(p);
  auto doc = Extract(bytes, p.filename().string());
  EXPECT_TRUE(doc.has_value()) << p << ": " << (doc ? "" : doc.error().ToString());
  return doc ? *doc : ExtractedDocument{};
}

const Block* FindTable(const ExtractedDocument& doc) {
  for (auto& b : doc.blocks) {
    if (b.kind == BlockKind::kTable) return &b;
  }
  return nullptr;
}

// True when some row of `table` holds all of `cells` (in any column order).
bool RowHas(const Block& table, std::vector<std::string> cells) {
  for (auto& row : table.rows) {
    if (std::all_of(cells.begin(), cells.end(), [&](auto& c) {
          return std::find(row.begin(), row.end(), c) != row.end();
        })) {
      return true;
    }
  }
  return false;
}

TEST(Ingest, ExtractsEveryTextFamilyFile) {
  int n_files = 0;
  for (const char* dir : {"txt", "md", "html", "csv", "json"}) {
    if (!fs::exists(Docs() / dir)) continue;
    for (auto& entry : fs::directory_iterator(Docs() / dir)) {
      ExtractedDocument doc = MustExtract(entry.path());
      EXPECT_FALSE(doc.blocks.empty()) << entry.path();
      EXPECT_FALSE(doc.ToMarkdown().empty()) << entry.path();
      ++n_files;
    }
  }
  EXPECT_GE(n_files, 27);
}

struct Expectation {
  const char* file;
  const char* expected;
  double min_recall;
};

TEST(Ingest, MatchesOtherToolsRenderingsByTokenRecall) {
  // The cp1252 rendering was itself decoded with the wrong code page (it has "trčs", "nińo"), so
  // its bar is lower: those mangled words cannot match a correct decoding.
  const Expectation cases[] = {
      {"csv/docling-csv-comma.csv", "docling/csv-comma.csv.md", 0.95},
      {"csv/docling-csv-comma-in-cell.csv", "docling/csv-comma-in-cell.csv.md", 0.95},
      {"csv/docling-csv-semicolon.csv", "docling/csv-semicolon.csv.md", 0.95},
      {"csv/docling-csv-tab.csv", "docling/csv-tab.csv.md", 0.95},
      {"md/docling-nested.md", "docling/nested.md.md", 0.9},
      {"md/docling-wiki.md", "docling/wiki.md.md", 0.9},
      {"html/docling-table_01.html", "docling/table_01.html.md", 0.9},
      {"html/unstructured-fake-html-cp1252.html", "unstructured/fake-html-cp1252.html.md", 0.85},
  };
  for (const auto& c : cases) {
    ExtractedDocument doc = MustExtract(Docs() / c.file);
    double recall = Recall(ReadFile(Docs() / "expected" / c.expected), doc.ToMarkdown());
    std::printf("recall %-45s %.3f\n", c.file, recall);
    EXPECT_GE(recall, c.min_recall) << c.file;
  }
}

TEST(Ingest, CsvDelimitersAndQuotedCellsStayInTheirRows) {
  ExtractedDocument semi = MustExtract(Docs() / "csv/docling-csv-semicolon.csv");
  const Block* t = FindTable(semi);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->has_header_row);
  EXPECT_EQ(t->rows[0][1], "Customer Id");
  EXPECT_TRUE(RowHas(*t, {"Sheryl", "Baxter", "Rasmussen Group", "Chile"}));

  ExtractedDocument escaped = MustExtract(Docs() / "csv/unstructured-csv-with-escaped-commas.csv");
  t = FindTable(escaped);
  ASSERT_NE(t, nullptr);
  ASSERT_GE(t->rows.size(), 2u);
  EXPECT_EQ(t->rows[1].size(), 5u);
  EXPECT_EQ(t->rows[1][3], "A,A");

  ExtractedDocument in_cell = MustExtract(Docs() / "csv/docling-csv-comma-in-cell.csv");
  t = FindTable(in_cell);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(RowHas(*t, {"a", ",", "c", "d"}));
  EXPECT_NE(in_cell.ToMarkdown().find("| --- |"), std::string::npos);
}

TEST(Ingest, Utf16CsvDecodesToUtf8Table) {
  ExtractedDocument doc = MustExtract(Docs() / "csv/unstructured-stanley-cups-utf-16.csv");
  EXPECT_EQ(doc.charset.substr(0, 6), "UTF-16");
  const Block* t = FindTable(doc);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(RowHas(*t, {"Team", "Location"}));
  EXPECT_NE(doc.ToMarkdown().find("Stanley Cups"), std::string::npos);
}

TEST(Ingest, Utf16LeHtmlDecodesAndDropsHead) {
  ExtractedDocument doc = MustExtract(Docs() / "html/tika-testHTML_charset_utf16le.html");
  EXPECT_EQ(doc.charset, "UTF-16LE");
  EXPECT_EQ(doc.mime_type, "text/html");
  std::string md = doc.ToMarkdown();
  EXPECT_NE(md.find("This is a sample text"), std::string::npos) << md;
  EXPECT_EQ(md.find("<html>"), std::string::npos) << md;
}

TEST(Ingest, Cp1252HtmlComesOutAsUtf8) {
  ExtractedDocument doc = MustExtract(Docs() / "html/unstructured-fake-html-cp1252.html");
  std::string md = doc.ToMarkdown();
  for (const char* word : {"schöne", "köstlich", "très", "niño", "señora", "€", "köttbullar"}) {
    EXPECT_NE(md.find(word), std::string::npos) << word;
  }
  ASSERT_FALSE(doc.blocks.empty());
  EXPECT_EQ(doc.blocks[0].kind, BlockKind::kHeading);
  EXPECT_EQ(doc.blocks[0].text, "My First Heading");
  EXPECT_EQ(doc.blocks[1].section_path, std::vector<std::string>{"My First Heading"});
}

TEST(Ingest, WideAndNonAsciiPlainText) {
  for (const char* f : {"txt/unstructured-fake-text-utf-16-be.txt",
                        "txt/unstructured-fake-text-utf-32.txt"}) {
    ExtractedDocument doc = MustExtract(Docs() / f);
    EXPECT_EQ(doc.mime_type, "text/plain") << f;
    std::string md = doc.ToMarkdown();
    EXPECT_EQ(md.find('\0'), std::string::npos) << f;
    EXPECT_GT(Tokens(md).size(), 5u) << f;
  }
  ExtractedDocument zh = MustExtract(Docs() / "txt/chatchat-test-zh.txt");
  std::string zh_md = zh.ToMarkdown();
  EXPECT_TRUE(std::any_of(zh_md.begin(), zh_md.end(), [](char c) { return (c & 0x80) != 0; }));
}

TEST(Ingest, Gb18030TextIsDecoded) {
  // "中文测试，" in GBK/GB18030 bytes, repeated: legacy Chinese text that is not valid UTF-8.
  const std::string gbk = "\xD6\xD0\xCE\xC4\xB2\xE2\xCA\xD4\xA3\xAC";
  std::string bytes;
  for (int i = 0; i < 20; ++i) bytes += gbk;
  auto doc = Extract(bytes, "legacy.txt");
  ASSERT_TRUE(doc.has_value()) << doc.error().ToString();
  EXPECT_EQ(doc->charset, "GB18030");
  EXPECT_NE(doc->ToMarkdown().find("中文测试，"), std::string::npos) << doc->charset;
}

TEST(Ingest, MarkdownKeepsStructure) {
  ExtractedDocument doc = MustExtract(Docs() / "md/unstructured-simple-table.md");
  EXPECT_NE(FindTable(doc), nullptr);
  ExtractedDocument code = MustExtract(Docs() / "md/unstructured-codeblock.md");
  EXPECT_TRUE(std::any_of(code.blocks.begin(), code.blocks.end(),
                          [](auto& b) { return b.kind == BlockKind::kCode; }));
  ExtractedDocument nested = MustExtract(Docs() / "md/docling-nested.md");
  EXPECT_TRUE(std::any_of(nested.blocks.begin(), nested.blocks.end(),
                          [](auto& b) { return b.kind == BlockKind::kListItem && b.level > 0; }));
}

TEST(Ingest, HtmlTableKeepsRows) {
  ExtractedDocument doc = MustExtract(Docs() / "html/docling-table_01.html");
  const Block* t = FindTable(doc);
  ASSERT_NE(t, nullptr);
  EXPECT_GE(t->rows.size(), 2u);
  EXPECT_NE(doc.ToMarkdown().find("| --- |"), std::string::npos);
}

TEST(Ingest, JsonRendersAsReadableText) {
  auto doc = Extract(R"({"name": "Yunzhi", "tags": ["maas", "rag"], "owner": {"team": "core"}})",
                     "x.json");
  ASSERT_TRUE(doc.has_value()) << doc.error().ToString();
  std::string md = doc->ToMarkdown();
  EXPECT_NE(md.find("name: Yunzhi"), std::string::npos) << md;
  EXPECT_NE(md.find("rag"), std::string::npos) << md;
  EXPECT_NE(md.find("team: core"), std::string::npos) << md;
  auto bad = Extract("{\"a\": [1, 2", "x.json");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, Code::kInvalidArgument);
}

TEST(Ingest, LegacyFormatsGiveAClearError) {
  struct Case {
    const char* file;
    const char* mime;
  } cases[] = {
      {"unstructured-fake.doc", "application/msword"},
      {"unstructured-fake-power-point.ppt", "application/vnd.ms-powerpoint"},
      {"unstructured-tests-example.xls", "application/vnd.ms-excel"},
      {"unstructured-fake-doc.rtf", "rtf"},
      {"unstructured-fake.odt", "application/vnd.oasis.opendocument.text"},
  };
  for (const auto& c : cases) {
    auto doc = Extract(ReadFile(Docs() / "legacy" / c.file), c.file);
    ASSERT_FALSE(doc.has_value()) << c.file;
    EXPECT_EQ(doc.error().code, Code::kInvalidArgument) << c.file;
    EXPECT_NE(doc.error().message.find("unsupported format"), std::string::npos) << c.file;
    EXPECT_NE(doc.error().message.find(c.mime), std::string::npos) << doc.error().message;
  }
  auto empty = Extract("", "a.txt");
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().code, Code::kInvalidArgument);
}

TEST(Ingest, NameNeverOverridesContent) {
  // A Word 97 file renamed .txt is still refused as Word.
  auto doc = Extract(ReadFile(Docs() / "legacy/unstructured-fake.doc"), "notes.txt");
  ASSERT_FALSE(doc.has_value());
  EXPECT_NE(doc.error().message.find("application/msword"), std::string::npos);
}

TEST(Ingest, MutatedAndRandomInputsNeverCrash) {
  std::mt19937 rng(42);
  std::vector<std::pair<std::string, std::string>> seeds;
  for (const char* f : {"html/docling-table_01.html", "csv/docling-csv-comma-in-cell.csv",
                        "md/docling-wiki.md", "txt/unstructured-fake-text-utf-16-be.txt",
                        "html/tika-testHTML_charset_utf16le.html"}) {
    seeds.emplace_back(ReadFile(Docs() / f), fs::path(f).filename().string());
  }
  seeds.emplace_back(R"({"a": [1, {"b": "c"}]})", "x.json");
  int n_ok = 0;
  for (int round = 0; round < 300; ++round) {
    auto [bytes, name] = seeds[round % seeds.size()];
    if (bytes.size() > 4096) bytes.resize(4096);
    int n_flips = 1 + static_cast<int>(rng() % 16);
    for (int k = 0; k < n_flips && !bytes.empty(); ++k) {
      bytes[rng() % bytes.size()] = static_cast<char>(rng() & 0xFF);
    }
    if (round % 7 == 0) bytes.resize(rng() % (bytes.size() + 1));
    if (round % 11 == 0) {
      bytes.clear();
      for (int k = 0; k < 512; ++k) bytes.push_back(static_cast<char>(rng() & 0xFF));
    }
    auto doc = Extract(bytes, name);
    if (doc) {
      (void)doc->ToMarkdown();
      ++n_ok;
    } else {
      EXPECT_FALSE(doc.error().message.empty());
    }
  }
  EXPECT_GT(n_ok, 0);
}

TEST(Ingest, DeeplyNestedInputsNeverCrash) {
  const int n = 3000;
  std::string html = "<html><body>", md, json;
  for (int i = 0; i < n; ++i) html += "<div><b>";
  html += "deep";
  for (int i = 0; i < n; ++i) md += "> ";
  md += "deep\n";
  for (int i = 0; i < 200; ++i) md += std::string(static_cast<size_t>(i) * 2, ' ') + "- x\n";
  json = std::string(n, '[') + std::string(n, ']');
  EXPECT_TRUE(Extract(html, "deep.html").has_value());
  EXPECT_TRUE(Extract(md, "deep.md").has_value());
  auto j = Extract(json, "deep.json");
  if (!j) {
    EXPECT_EQ(j.error().code, Code::kInvalidArgument);
  }
}

}  // namespace
}  // namespace yunzhi::knowledge
