// Retrieval evaluation: BEIR-format and SQuAD-format (CMRC2018) datasets and the standard
// ranking metrics (nDCG@10, recall@10/100, MRR@10), for tests and `yunzhi bench`.
//
// Metric conventions (trec_eval / BEIR): the gain of a document is its qrels grade (grades <= 0
// and unjudged documents gain 0), discount log2(rank + 1) with rank 1-based, the ideal ranking is
// the query's judged grades sorted descending. Recall@k = relevant documents (grade > 0) in the
// top k / all relevant documents. MRR@10 = 1 / rank of the first relevant document in the top
// 10, else 0. A document id repeated in a run counts only at its first rank. Queries with no
// relevant document are skipped; a query with relevant documents but no run scores 0. All
// figures are means over the evaluated queries.
//
// Errors: LoadBeir / LoadSquadAsBeir return kNotFound for a missing file and kInvalidArgument
// for malformed content; the message names the file and, for line formats, the 1-based line.
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "yunzhi/base/status.h"

namespace yunzhi::knowledge {

struct BeirDocument {
  std::string id, title, text;
};
struct BeirQuery {
  std::string id, text;
};
struct BeirDataset {
  std::vector<BeirDocument> corpus;
  std::vector<BeirQuery> queries;
  std::map<std::string, std::map<std::string, int>> qrels;  // query id -> doc id -> grade
};

// corpus.jsonl lines {"_id","title","text"} (title optional), queries.jsonl lines {"_id","text"},
// qrels.tsv lines "query-id<TAB>corpus-id<TAB>score" with or without a header line. Blank lines
// are ignored; numeric ids are accepted and kept as their decimal text.
Result<BeirDataset> LoadBeir(const std::filesystem::path& corpus, const std::filesystem::path& queries,
                             const std::filesystem::path& qrels);

// SQuAD-layout JSON ({"data":[{"title","paragraphs":[{"id","context","qas":[{"id","question"}]}]}]}):
// each paragraph is a document (id: its "id", else "<article>-<paragraph index>"; title: the
// article title), each question a query whose one relevant document (grade 1) is its paragraph.
Result<BeirDataset> LoadSquadAsBeir(const std::filesystem::path& squad_json);

struct RetrievalMetrics {
  double ndcg_at_10 = 0, recall_at_10 = 0, recall_at_100 = 0, mrr_at_10 = 0;
  size_t n_queries = 0;
  // Nearest-rank percentiles of `latencies_ms` (0 when empty).
  double latency_p50_ms = 0, latency_p99_ms = 0;
};

// run: query id -> ranked doc ids, best first.
RetrievalMetrics Evaluate(const BeirDataset& data,
                          const std::map<std::string, std::vector<std::string>>& run,
                          std::span<const double> latencies_ms);

}  // namespace yunzhi::knowledge
