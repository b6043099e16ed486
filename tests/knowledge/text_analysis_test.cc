#include "yunzhi/knowledge/text_analysis.h"

#include <sqlite3.h>

#include <atomic>
#include <cmath>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace yunzhi::knowledge {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<std::string> Texts(std::string_view s, const AnalyzerOptions& o = {}) {
  std::vector<std::string> out;
  for (const Term& t : Analyze(s, o)) out.push_back(t.text);
  return out;
}

TEST(PorterStem, KnownPairsFromTheAlgorithm) {
  const std::pair<const char*, const char*> kPairs[] = {
      {"caresses", "caress"}, {"ponies", "poni"},       {"ties", "ti"},
      {"caress", "caress"},   {"cats", "cat"},          {"feed", "feed"},
      {"agreed", "agre"},     {"plastered", "plaster"}, {"motoring", "motor"},
      {"sing", "sing"},       {"conflated", "conflat"}, {"troubled", "troubl"},
      {"sized", "size"},      {"hopping", "hop"},       {"tanned", "tan"},
      {"falling", "fall"},    {"hissing", "hiss"},      {"fizzed", "fizz"},
      {"failing", "fail"},    {"filing", "file"},       {"happy", "happi"},
      {"sky", "sky"},         {"relational", "relat"},  {"conditional", "condit"},
      {"rational", "ration"}, {"generalization", "gener"}, {"electricity", "electr"},
      {"adjustment", "adjust"}, {"adoption", "adopt"},  {"controlling", "control"},
      {"roll", "roll"},       {"hopeful", "hope"},      {"goodness", "good"},
      {"formalize", "formal"}, {"triplicate", "triplic"}, {"effective", "effect"},
      {"aerodynamic", "aerodynam"}, {"boundary", "boundari"}, {"layers", "layer"},
      {"probate", "probat"},  {"rate", "rate"},         {"cease", "ceas"},
  };
  for (const auto& [word, stem] : kPairs) EXPECT_EQ(PorterStem(word), stem) << word;
}

TEST(PorterStem, LeavesShortAndNonLowercaseInputAlone) {
  EXPECT_EQ(PorterStem("is"), "is");
  EXPECT_EQ(PorterStem(""), "");
  EXPECT_EQ(PorterStem("Running"), "Running");
  EXPECT_EQ(PorterStem("gpt4"), "gpt4");
}

TEST(Analyze, EnglishIsCaseFoldedAndStemmedWithExactOffsets) {
  const std::string text = "The Relational DATABASES, running fast!";
  auto terms = Analyze(text);
  ASSERT_EQ(terms.size(), 5u);
  EXPECT_EQ(terms[0].text, "the");
  EXPECT_EQ(terms[1].text, "relat");
  EXPECT_EQ(text.substr(terms[1].start, terms[1].end - terms[1].start), "Relational");
  EXPECT_EQ(terms[2].text, "databas");
  EXPECT_EQ(text.substr(terms[2].start, terms[2].end - terms[2].start), "DATABASES");
  EXPECT_EQ(terms[3].text, "run");
  EXPECT_EQ(terms[4].text, "fast");
}

TEST(Analyze, StemmingAndStopwordsAreOptional) {
  AnalyzerOptions o;
  o.stem = false;
  EXPECT_THAT(Texts("the running dogs", o), ElementsAre("the", "running", "dogs"));
  o.stem = true;
  o.stopwords = true;
  EXPECT_THAT(Texts("the running of the dogs", o), ElementsAre("run", "dog"));
}

TEST(Analyze, ChineseIsSegmentedIntoDictionaryWords) {
  const std::string text = "阿里云发布了通义千问大模型";
  auto words = Texts(text);
  // ICU's dictionary: real words such as 发布 and 模型 come out whole.
  EXPECT_THAT(words, ::testing::Contains("发布"));
  EXPECT_THAT(words, ::testing::Contains("模型"));
  std::string joined;
  for (const Term& t : Analyze(text)) {
    EXPECT_EQ(text.substr(t.start, t.end - t.start), t.text);
    joined += t.text;
  }
  EXPECT_EQ(joined, text);  // nothing lost: every character is in some term
}

TEST(Analyze, CharacterModeGivesOneTermPerCjkCharacterAndKeepsLatinWords) {
  AnalyzerOptions o;
  o.cjk = CjkSegmentation::kCharacters;
  EXPECT_THAT(Texts("大模型 Models", o), ElementsAre("大", "模", "型", "model"));
  EXPECT_EQ(Texts("ひらがなカタカナ한국어", o).size(), 11u);
}

TEST(Analyze, FullWidthFormsAreNormalised) {
  // Ｆｕｌｌ－ｗｉｄｔｈ ＧＰＴ４ -> ASCII after NFKC + case folding.
  const std::string text = "ＧＰＴ４ ＡＢＣ";
  auto terms = Analyze(text);
  ASSERT_EQ(terms.size(), 2u);
  EXPECT_EQ(terms[0].text, "gpt4");
  EXPECT_EQ(terms[1].text, "abc");
  EXPECT_EQ(text.substr(terms[1].start, terms[1].end - terms[1].start), "ＡＢＣ");
  EXPECT_THAT(Texts("Straße"), ElementsAre("strass"));  // full case folding, then stemmed
}

TEST(Analyze, MixedProductNamesGiveSensibleTerms) {
  EXPECT_THAT(Texts("GPT-4"), ElementsAre("gpt", "4"));
  EXPECT_THAT(Texts("Qwen2.5 is here"), ElementsAre("qwen2.5", "is", "here"));
  EXPECT_THAT(Texts("用Qwen2.5写代码"), ::testing::Contains("qwen2.5"));
  EXPECT_THAT(Texts("version 3.14"), ElementsAre("version", "3.14"));
}

TEST(Analyze, PunctuationSymbolsAndEmptyInputGiveNoTerms) {
  EXPECT_THAT(Texts(""), IsEmpty());
  EXPECT_THAT(Texts("  ,.;!? —— 。，、 😀 "), IsEmpty());
}

TEST(Analyze, InvalidUtf8NeverCrashesAndOffsetsStayInRange) {
  std::string bad = "ok \xff\xfe wor\xc3 d \xe4\xb8 end \xf0\x9f";
  for (const Term& t : Analyze(bad)) {
    EXPECT_FALSE(t.text.empty());
    EXPECT_LE(t.start, t.end);
    EXPECT_LE(t.end, bad.size());
  }
  EXPECT_THAT(Texts(bad), ::testing::Contains("end"));
}

TEST(Analyze, VeryLongWordsAreCutToAPrefix) {
  std::string blob;
  for (int i = 0; i < 1000; ++i) blob += "é";
  auto terms = Analyze("x " + blob + " y");
  ASSERT_EQ(terms.size(), 3u);
  EXPECT_EQ(terms[1].text.size(), 256u);
  EXPECT_EQ(terms[1].text, blob.substr(0, 256));
  EXPECT_EQ(terms[1].end - terms[1].start, blob.size());  // the surface is the whole word
}

TEST(Analyze, IsSafeFromSeveralThreads) {
  const std::string text = "人工智能 models are evaluated 在 CMRC 数据集上";
  const auto expected = Texts(text);
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 200; ++k) {
        if (Texts(text) != expected) ++mismatches;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(CountTokens, FollowsTheDocumentedRule) {
  EXPECT_EQ(CountTokens(""), 0u);
  EXPECT_EQ(CountTokens("   \n\t"), 0u);
  EXPECT_EQ(CountTokens("hello"), 1u);                 // 1.3
  EXPECT_EQ(CountTokens("hello world"), 3u);           // 2.6
  EXPECT_EQ(CountTokens("hello, world."), 4u);         // 2.6 + 1.0 = 3.6
  EXPECT_EQ(CountTokens("你好世界"), 4u);               // 4 CJK characters
  EXPECT_EQ(CountTokens("你好，世界。"), 5u);           // 4 + 2 * 0.5
  EXPECT_EQ(CountTokens("internationalization"), 3u);  // 20 chars: 2 * 1.3
  EXPECT_EQ(CountTokens("Qwen2"), 1u);
  // Ten words of ten-ish letters: 13 tokens.
  EXPECT_EQ(CountTokens("alpha beta gamma delta epsilon zeta eta theta iota kappa"), 13u);
}

TEST(BuildMatchQuery, QuotesSurfaceFormsJoinsWithOrAndDropsDuplicates) {
  EXPECT_EQ(BuildMatchQuery("Running dogs, running!"), "\"Running\" OR \"dogs\"");
  EXPECT_EQ(BuildMatchQuery(""), "");
  EXPECT_EQ(BuildMatchQuery("?? ... !!"), "");
  // FTS5 syntax is never let through: operators become plain quoted terms.
  EXPECT_EQ(BuildMatchQuery("a NEAR(b) AND c*"), "\"a\" OR \"NEAR\" OR \"b\" OR \"AND\" OR \"c\"");
  EXPECT_EQ(BuildMatchQuery("x\"y"), "\"x\" OR \"y\"");
  // Chinese: one quoted word per ICU word.
  EXPECT_EQ(BuildMatchQuery("大模型"), "\"大\" OR \"模型\"");
}

class Fts5Test : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(sqlite3_open(":memory:", &db_), SQLITE_OK);
    ASSERT_TRUE(RegisterFts5Tokenizers(db_).has_value());
  }
  void TearDown() override { sqlite3_close(db_); }

  void Exec(const std::string& sql) {
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  }
  void Insert(const std::string& table, int64_t rowid, const std::string& text) {
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db_, ("INSERT INTO " + table + "(rowid, body) VALUES (?, ?)").c_str(), -1,
                                 &st, nullptr),
              SQLITE_OK);
    sqlite3_bind_int64(st, 1, rowid);
    sqlite3_bind_text(st, 2, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
  }
  // Rowids matching the free-text query, best bm25 first.
  std::vector<int64_t> Search(const std::string& table, const std::string& query,
                              const AnalyzerOptions& o = {}) {
    std::vector<int64_t> out;
    std::string match = BuildMatchQuery(query, o);
    if (match.empty()) return out;
    sqlite3_stmt* st = nullptr;
    std::string sql = "SELECT rowid FROM " + table + " WHERE " + table + " MATCH ? ORDER BY bm25(" + table + ")";
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db_);
    sqlite3_bind_text(st, 1, match.data(), static_cast<int>(match.size()), SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) out.push_back(sqlite3_column_int64(st, 0));
    EXPECT_EQ(rc, SQLITE_DONE) << sqlite3_errmsg(db_);
    sqlite3_finalize(st);
    return out;
  }
  std::string Highlight(const std::string& table, const std::string& query) {
    std::string match = BuildMatchQuery(query);
    sqlite3_stmt* st = nullptr;
    std::string sql = "SELECT highlight(" + table + ", 0, '[', ']') FROM " + table + " WHERE " + table +
                      " MATCH ? ORDER BY rank LIMIT 1";
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr), SQLITE_OK);
    sqlite3_bind_text(st, 1, match.data(), static_cast<int>(match.size()), SQLITE_TRANSIENT);
    std::string out;
    if (sqlite3_step(st) == SQLITE_ROW) out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out;
  }

  sqlite3* db_ = nullptr;
};

TEST_F(Fts5Test, StemmedEnglishMatchesOtherWordForms) {
  Exec("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='yunzhi')");
  Insert("t", 1, "Relational databases store tables.");
  Insert("t", 2, "Cats are running in the garden.");
  EXPECT_THAT(Search("t", "relation database"), ElementsAre(1));
  EXPECT_THAT(Search("t", "RUNS cat"), ElementsAre(2));
  EXPECT_THAT(Search("t", "airplane"), IsEmpty());
}

TEST_F(Fts5Test, ChineseWordsMatchAndHighlightUsesByteOffsets) {
  Exec("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='yunzhi')");
  Insert("t", 1, "阿里云发布了通义千问大模型。");
  Insert("t", 2, "今天天气很好，我们去公园散步。");
  EXPECT_THAT(Search("t", "大模型发布"), ElementsAre(1));
  EXPECT_THAT(Search("t", "公园"), ElementsAre(2));
  EXPECT_EQ(Highlight("t", "公园"), "今天天气很好，我们去[公园]散步。");
}

TEST_F(Fts5Test, CharacterTokenizerMatchesSingleCharacters) {
  Exec("CREATE VIRTUAL TABLE c USING fts5(body, tokenize='yunzhi_chars')");
  Exec("CREATE VIRTUAL TABLE w USING fts5(body, tokenize='yunzhi')");
  for (const char* table : {"c", "w"}) {
    Insert(table, 1, "模型训练需要大量数据");
    Insert(table, 2, "型号不同");
  }
  AnalyzerOptions chars;
  chars.cjk = CjkSegmentation::kCharacters;
  // 型 alone matches both documents character-wise; the word 模型 only the first.
  EXPECT_EQ(Search("c", "型", chars).size(), 2u);
  EXPECT_THAT(Search("w", "模型"), ElementsAre(1));
}

TEST_F(Fts5Test, QuerySyntaxInUserTextIsHarmless) {
  Exec("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='yunzhi')");
  Insert("t", 1, "near and or not");
  for (const char* q : {"\"unbalanced", "a AND", "NEAR(x y", "col:thing", "^start", "x*", "(((", "\"\"\""}) {
    Search("t", q);  // must run without an FTS5 syntax error (checked inside Search)
  }
  EXPECT_THAT(Search("t", "NOT near"), ElementsAre(1));
}

TEST_F(Fts5Test, NostemTokenizerAndArgumentsAreAccepted) {
  Exec("CREATE VIRTUAL TABLE n USING fts5(body, tokenize='yunzhi_nostem')");
  Insert("n", 1, "running");
  EXPECT_THAT(Search("n", "running"), ElementsAre(1));
  AnalyzerOptions nostem;
  nostem.stem = false;
  EXPECT_THAT(Search("n", "run", nostem), IsEmpty());
  Exec("CREATE VIRTUAL TABLE s USING fts5(body, tokenize='yunzhi stopwords')");
  char* err = nullptr;
  EXPECT_NE(sqlite3_exec(db_, "CREATE VIRTUAL TABLE bad USING fts5(body, tokenize='yunzhi bogus')", nullptr,
                         nullptr, &err),
            SQLITE_OK);
  sqlite3_free(err);
}

TEST_F(Fts5Test, YunzhiBm25MatchesAHandComputedScoreAndHonoursColumnWeights) {
  // Contentless, as the knowledge store uses it; two columns.
  Exec("CREATE VIRTUAL TABLE k USING fts5(heading, body, content='', tokenize='yunzhi')");
  Exec("INSERT INTO k(rowid, heading, body) VALUES (1, 'alpha', 'beta gamma delta')");
  Exec("INSERT INTO k(rowid, heading, body) VALUES (2, 'beta', 'beta beta')");
  Exec("INSERT INTO k(rowid, heading, body) VALUES (3, 'zeta', 'eta theta iota kappa lambda')");
  auto scores = [&](const std::string& weights) {
    std::map<int64_t, double> out;
    sqlite3_stmt* st = nullptr;
    const std::string sql = "SELECT rowid, yunzhi_bm25(k" + weights + ") FROM k WHERE k MATCH '\"beta\"'";
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sqlite3_errmsg(db_);
    while (sqlite3_step(st) == SQLITE_ROW) out[sqlite3_column_int64(st, 0)] = sqlite3_column_double(st, 1);
    sqlite3_finalize(st);
    return out;
  };
  // N = 3, df(beta) = 2, row lengths 4, 3, 6 (avg 13/3); k1 = 1.2, b = 0.75.
  const double idf = std::log(1 + (3 - 2 + 0.5) / (2 + 0.5));
  auto bm25 = [&](double tf, double len) {
    return idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / (13.0 / 3)));
  };
  auto plain = scores("");
  ASSERT_EQ(plain.size(), 2u);
  EXPECT_NEAR(plain[1], -bm25(1, 4), 1e-9);
  EXPECT_NEAR(plain[2], -bm25(3, 3), 1e-9);
  auto weighted = scores(", 5.0, 1.0");  // heading counts 5 times
  EXPECT_NEAR(weighted[2], -bm25(5 + 2, 3), 1e-9);
  EXPECT_NEAR(weighted[1], -bm25(1, 4), 1e-9);
  // As the table's default rank: `rank` then holds yunzhi_bm25(k, 5.0, 1.0).
  Exec("INSERT INTO k(k, rank) VALUES('rank', 'yunzhi_bm25(5.0, 1.0)')");
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db_, "SELECT rowid, rank FROM k WHERE k MATCH '\"beta\"' ORDER BY rank", -1, &st,
                               nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(st, 0), 2);
  EXPECT_NEAR(sqlite3_column_double(st, 1), weighted[2], 1e-9);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(st, 0), 1);
  sqlite3_finalize(st);
}

}  // namespace
}  // namespace yunzhi::knowledge
