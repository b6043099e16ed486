// A plain in-memory Okapi BM25 ranker: the reference the FTS5 index is compared against in
// retrieval_quality_test.cc. Deliberately simple and independent of SQLite.
//
// Scoring (Lucene / Anserini "BM25" as used by the BEIR baselines):
//   score(q, d) = sum over distinct query terms t in d of
//                 idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))
//   idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))
// k1 = 0.9, b = 0.4 by default (Anserini's defaults, the BEIR BM25 baseline setting); the test
// also runs k1 = 1.2, b = 0.75 (FTS5's fixed values). Ties are broken by insertion order so
// results are deterministic.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace yunzhi::knowledge::testing {

class Bm25Index {
 public:
  explicit Bm25Index(double k1 = 0.9, double b = 0.4) : k1_(k1), b_(b) {}

  void Add(std::string id, const std::vector<std::string>& terms) {
    const auto doc = static_cast<uint32_t>(ids_.size());
    ids_.push_back(std::move(id));
    lengths_.push_back(static_cast<double>(terms.size()));
    std::unordered_map<std::string, uint32_t> tf;
    for (const auto& t : terms) ++tf[t];
    for (auto& [t, n] : tf) postings_[t].emplace_back(doc, n);
    total_length_ += static_cast<double>(terms.size());
  }

  // The ids of the best `k` documents for the distinct terms of `query`, best first.
  std::vector<std::string> Search(const std::vector<std::string>& query, size_t k) const {
    const double n_docs = static_cast<double>(ids_.size());
    const double avgdl = ids_.empty() ? 1 : total_length_ / n_docs;
    std::unordered_map<uint32_t, double> scores;
    std::unordered_set<std::string> seen;
    for (const auto& t : query) {
      if (!seen.insert(t).second) continue;
      auto it = postings_.find(t);
      if (it == postings_.end()) continue;
      const double df = static_cast<double>(it->second.size());
      const double idf = std::log(1 + (n_docs - df + 0.5) / (df + 0.5));
      for (const auto& [doc, tf_count] : it->second) {
        const double tf = tf_count;
        const double norm = k1_ * (1 - b_ + b_ * lengths_[doc] / avgdl);
        scores[doc] += idf * tf * (k1_ + 1) / (tf + norm);
      }
    }
    std::vector<std::pair<double, uint32_t>> ranked;
    ranked.reserve(scores.size());
    for (const auto& [doc, s] : scores) ranked.emplace_back(s, doc);
    auto better = [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    };
    const size_t n = std::min(k, ranked.size());
    std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(n), ranked.end(), better);
    std::vector<std::string> out;
    for (size_t i = 0; i < n; ++i) out.push_back(ids_[ranked[i].second]);
    return out;
  }

 private:
  double k1_, b_;
  std::vector<std::string> ids_;
  std::vector<double> lengths_;
  double total_length_ = 0;
  std::unordered_map<std::string, std::vector<std::pair<uint32_t, uint32_t>>> postings_;
};

}  // namespace yunzhi::knowledge::testing
