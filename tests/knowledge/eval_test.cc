#include "yunzhi/knowledge/eval.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace yunzhi::knowledge {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("yunzhi_eval_test_" + std::to_string(::getpid()) + "_" +
                                         std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  fs::path Write(const std::string& name, const std::string& content) const {
    fs::path p = path_ / name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

BeirDataset Handmade() {
  BeirDataset d;
  d.qrels["q1"] = {{"d1", 2}, {"d2", 1}, {"d3", 0}};
  d.qrels["q2"] = {{"d4", 1}};
  d.qrels["q3"] = {{"d5", 0}};  // no relevant document: skipped
  return d;
}

TEST(Evaluate, MatchesHandComputedGradedMetrics) {
  std::map<std::string, std::vector<std::string>> run;
  run["q1"] = {"d3", "d1", "dx", "d2"};
  run["q2"] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "d4"};  // relevant at rank 11
  run["q3"] = {"d5"};
  const double latencies[] = {5, 1, 3, 2, 4};
  RetrievalMetrics m = Evaluate(Handmade(), run, latencies);
  // q1: DCG = 2/log2(3) + 1/log2(5); IDCG = 2/log2(2) + 1/log2(3).
  const double dcg = 2 / std::log2(3.0) + 1 / std::log2(5.0);
  const double idcg = 2.0 + 1 / std::log2(3.0);
  EXPECT_EQ(m.n_queries, 2u);
  EXPECT_NEAR(m.ndcg_at_10, (dcg / idcg + 0) / 2, 1e-12);
  EXPECT_NEAR(m.ndcg_at_10, 0.3216612, 1e-6);  // (1.692537 / 2.630930) / 2
  EXPECT_NEAR(m.recall_at_10, (1.0 + 0.0) / 2, 1e-12);
  EXPECT_NEAR(m.recall_at_100, (1.0 + 1.0) / 2, 1e-12);
  EXPECT_NEAR(m.mrr_at_10, (0.5 + 0) / 2, 1e-12);
  EXPECT_DOUBLE_EQ(m.latency_p50_ms, 3);
  EXPECT_DOUBLE_EQ(m.latency_p99_ms, 5);
}

TEST(Evaluate, PerfectRunScoresOneAndDuplicatesCountOnce) {
  std::map<std::string, std::vector<std::string>> run;
  run["q1"] = {"d1", "d1", "d2"};
  run["q2"] = {"d4"};
  RetrievalMetrics m = Evaluate(Handmade(), run, {});
  EXPECT_NEAR(m.ndcg_at_10, 1.0, 1e-12);
  EXPECT_NEAR(m.mrr_at_10, 1.0, 1e-12);
  EXPECT_NEAR(m.recall_at_10, 1.0, 1e-12);
  EXPECT_EQ(m.latency_p50_ms, 0);
  // Swapping the grade-2 and grade-1 documents costs nDCG but not recall.
  run["q1"] = {"d2", "d1"};
  m = Evaluate(Handmade(), run, {});
  const double q1 = (1.0 + 2 / std::log2(3.0)) / (2.0 + 1 / std::log2(3.0));
  EXPECT_NEAR(m.ndcg_at_10, (q1 + 1) / 2, 1e-12);
  EXPECT_NEAR(m.recall_at_10, 1.0, 1e-12);
}

TEST(Evaluate, MissingRunScoresZero) {
  RetrievalMetrics m = Evaluate(Handmade(), {}, {});
  EXPECT_EQ(m.n_queries, 2u);
  EXPECT_EQ(m.ndcg_at_10, 0);
  EXPECT_EQ(m.recall_at_100, 0);
}

TEST(LoadBeir, ReadsJsonlAndQrelsWithOrWithoutHeader) {
  TempDir dir;
  auto corpus = dir.Write("corpus.jsonl",
                          "{\"_id\": \"1\", \"title\": \"T1\", \"text\": \"first\"}\n\n"
                          "{\"_id\": 2, \"text\": \"second\"}\r\n");
  auto queries = dir.Write("queries.jsonl", "{\"_id\": \"q\", \"text\": \"what\", \"extra\": 1}\n");
  auto with_header = dir.Write("qrels.tsv", "query-id\tcorpus-id\tscore\nq\t1\t2\nq\t2\t-1\n");
  auto bare = dir.Write("qrels2.tsv", "q\t2\t1\n");
  auto d = LoadBeir(corpus, queries, with_header);
  ASSERT_TRUE(d.has_value()) << d.error().ToString();
  ASSERT_EQ(d->corpus.size(), 2u);
  EXPECT_EQ(d->corpus[0].title, "T1");
  EXPECT_EQ(d->corpus[1].id, "2");
  EXPECT_EQ(d->corpus[1].title, "");
  ASSERT_EQ(d->queries.size(), 1u);
  EXPECT_EQ(d->queries[0].text, "what");
  EXPECT_EQ(d->qrels["q"]["1"], 2);
  EXPECT_EQ(d->qrels["q"]["2"], -1);
  auto d2 = LoadBeir(corpus, queries, bare);
  ASSERT_TRUE(d2.has_value());
  EXPECT_EQ(d2->qrels["q"]["2"], 1);
}

TEST(LoadBeir, ErrorsNameTheFileAndLine) {
  TempDir dir;
  auto good_q = dir.Write("q.jsonl", "{\"_id\": \"q\", \"text\": \"x\"}\n");
  auto good_r = dir.Write("r.tsv", "q\t1\t1\n");
  auto bad_corpus = dir.Write("c.jsonl", "{\"_id\": \"1\", \"text\": \"a\"}\n{\"_id\": \"2\", \"text\": \n");
  auto r = LoadBeir(bad_corpus, good_q, good_r);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Code::kInvalidArgument);
  EXPECT_THAT(r.error().message, ::testing::HasSubstr("c.jsonl:2"));

  auto no_id = dir.Write("c2.jsonl", "{\"text\": \"a\"}\n");
  r = LoadBeir(no_id, good_q, good_r);
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().message, ::testing::HasSubstr("c2.jsonl:1: missing \"_id\""));

  auto good_c = dir.Write("c3.jsonl", "{\"_id\": \"1\", \"text\": \"a\"}\n");
  auto bad_r = dir.Write("r2.tsv", "q\t1\t1\nq\t2\tmany\n");
  r = LoadBeir(good_c, good_q, bad_r);
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().message, ::testing::HasSubstr("r2.tsv:2"));
  auto short_r = dir.Write("r3.tsv", "q 1 1\n");
  r = LoadBeir(good_c, good_q, short_r);
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().message, ::testing::HasSubstr("r3.tsv:1"));

  r = LoadBeir(dir.Write("x", "") .parent_path() / "missing.jsonl", good_q, good_r);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Code::kNotFound);
  EXPECT_THAT(r.error().message, ::testing::HasSubstr("missing.jsonl"));
}

TEST(LoadSquadAsBeir, EachParagraphIsADocumentAndEachQuestionAQuery) {
  TempDir dir;
  auto p = dir.Write("s.json", R"({"version": "v1", "data": [
    {"title": "A", "paragraphs": [
      {"id": "P1", "context": "第一段", "qas": [{"id": "Q1", "question": "问一", "answers": []},
                                               {"id": "Q2", "question": "问二"}]},
      {"context": "second", "qas": [{"question": "q three"}]}]},
    {"title": "B", "paragraphs": [{"id": "P3", "context": "third", "qas": []}]}]})");
  auto d = LoadSquadAsBeir(p);
  ASSERT_TRUE(d.has_value()) << d.error().ToString();
  ASSERT_EQ(d->corpus.size(), 3u);
  EXPECT_EQ(d->corpus[0].id, "P1");
  EXPECT_EQ(d->corpus[0].title, "A");
  EXPECT_EQ(d->corpus[1].id, "0-1");
  EXPECT_EQ(d->corpus[2].title, "B");
  ASSERT_EQ(d->queries.size(), 3u);
  EXPECT_EQ(d->queries[1].text, "问二");
  EXPECT_EQ(d->qrels["Q2"].size(), 1u);
  EXPECT_EQ(d->qrels["Q2"]["P1"], 1);
  EXPECT_EQ(d->qrels[d->queries[2].id]["0-1"], 1);
}

TEST(LoadSquadAsBeir, MalformedInputIsInvalidArgument) {
  TempDir dir;
  for (const char* bad : {"", "[]", "{\"data\": 3}", "{\"data\": [{\"paragraphs\": [{\"qas\": []}]}]}",
                          "{\"data\": [{\"paragraphs\": [{\"context\": \"x\", \"qas\": [{\"id\": 1}]}]}]}"}) {
    auto d = LoadSquadAsBeir(dir.Write("bad.json", bad));
    ASSERT_FALSE(d.has_value()) << bad;
    EXPECT_EQ(d.error().code, Code::kInvalidArgument) << bad;
    EXPECT_THAT(d.error().message, ::testing::HasSubstr("bad.json"));
  }
}

TEST(LoadSquadAsBeir, ReadsTheCmrc2018TrialSet) {
  auto d = LoadSquadAsBeir(YUNZHI_TESTDATA_DIR "/retrieval/cmrc2018/cmrc2018_trial.squad.json");
  ASSERT_TRUE(d.has_value()) << d.error().ToString();
  EXPECT_EQ(d->corpus.size(), 256u);
  EXPECT_EQ(d->queries.size(), 1002u);
  EXPECT_EQ(d->qrels.size(), 1002u);
}

}  // namespace
}  // namespace yunzhi::knowledge
