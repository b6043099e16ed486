// One space's dense vectors in an HNSW graph (hnswlib), searched by inner product (cosine on
// unit vectors). Built in memory from the vectors stored with the chunks; labels are chunk ids.
// Private to knowledge/.
//
// Thread safety: every method is safe from any thread (one mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include "yunzhi/base/status.h"

namespace yunzhi::knowledge {

class VectorIndex {
 public:
  VectorIndex();
  ~VectorIndex();
  VectorIndex(const VectorIndex&) = delete;
  VectorIndex& operator=(const VectorIndex&) = delete;

  // Adds (or replaces) a vector. The first vector fixes the dimension.
  // Errors: kInvalidArgument for an empty vector or one of another dimension.
  Status Add(int64_t id, std::span<const float> vector);
  // Removes `id` from results (a no-op when absent).
  void Remove(int64_t id);
  // The `k` nearest ids with their similarity, best first. An empty index finds nothing.
  // Errors: kInvalidArgument for a query of another dimension.
  Result<std::vector<std::pair<int64_t, double>>> Search(std::span<const float> query, size_t k) const;
  size_t size() const;
  // The largest id ever added (0 when none): what a caller has loaded so far.
  int64_t max_id() const;

 private:
  struct Graph;
  mutable std::mutex mutex_;
  std::unique_ptr<Graph> graph_;
};

}  // namespace yunzhi::knowledge
