// The only file that includes hnswlib: its headers define non-inline globals.
#include "knowledge/vector_index.h"

#include <hnswlib/hnswlib.h>

#include <algorithm>
#include <exception>

#include <fmt/format.h>

namespace yunzhi::knowledge {

namespace {
constexpr size_t kM = 16;
constexpr size_t kEfConstruction = 100;
constexpr size_t kInitialCapacity = 1024;
}  // namespace

struct VectorIndex::Graph {
  size_t dim = 0;
  std::unique_ptr<hnswlib::InnerProductSpace> space;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> hnsw;
  size_t live = 0;
  int64_t max_id = 0;
};

VectorIndex::VectorIndex() = default;
VectorIndex::~VectorIndex() = default;

Status VectorIndex::Add(int64_t id, std::span<const float> vector) {
  if (vector.empty()) return InvalidArgumentError("empty vector");
  std::lock_guard lock(mutex_);
  try {
    if (!graph_) {
      graph_ = std::make_unique<Graph>();
      graph_->dim = vector.size();
      graph_->space = std::make_unique<hnswlib::InnerProductSpace>(vector.size());
      graph_->hnsw = std::make_unique<hnswlib::HierarchicalNSW<float>>(
          graph_->space.get(), kInitialCapacity, kM, kEfConstruction);
    }
    if (vector.size() != graph_->dim) {
      return InvalidArgumentError(fmt::format("vector of dimension {} in an index of dimension {}",
                                              vector.size(), graph_->dim));
    }
    auto& h = *graph_->hnsw;
    if (h.cur_element_count >= h.max_elements_) h.resizeIndex(h.max_elements_ * 2);
    h.addPoint(vector.data(), static_cast<hnswlib::labeltype>(id));
    ++graph_->live;
    graph_->max_id = std::max(graph_->max_id, id);
  } catch (const std::exception& e) {
    return InternalError(fmt::format("vector index: {}", e.what()));
  }
  return OkStatus();
}

void VectorIndex::Remove(int64_t id) {
  std::lock_guard lock(mutex_);
  if (!graph_) return;
  try {
    graph_->hnsw->markDelete(static_cast<hnswlib::labeltype>(id));
    if (graph_->live > 0) --graph_->live;
  } catch (const std::exception&) {
    // Not in the index: nothing to remove.
  }
}

Result<std::vector<std::pair<int64_t, double>>> VectorIndex::Search(std::span<const float> query,
                                                                    size_t k) const {
  std::vector<std::pair<int64_t, double>> out;
  std::lock_guard lock(mutex_);
  if (!graph_ || graph_->live == 0 || k == 0) return out;
  if (query.size() != graph_->dim) {
    return InvalidArgumentError(fmt::format("query vector of dimension {} for an index of "
                                            "dimension {}",
                                            query.size(), graph_->dim));
  }
  try {
    graph_->hnsw->setEf(std::max<size_t>(k * 2, 64));
    auto heap = graph_->hnsw->searchKnn(query.data(), std::min(k, graph_->live));
    while (!heap.empty()) {
      // Inner-product distance is 1 - <a, b>.
      out.emplace_back(static_cast<int64_t>(heap.top().second), 1.0 - heap.top().first);
      heap.pop();
    }
  } catch (const std::exception& e) {
    return InternalError(fmt::format("vector search: {}", e.what()));
  }
  std::reverse(out.begin(), out.end());
  return out;
}

size_t VectorIndex::size() const {
  std::lock_guard lock(mutex_);
  return graph_ ? graph_->live : 0;
}

int64_t VectorIndex::max_id() const {
  std::lock_guard lock(mutex_);
  return graph_ ? graph_->max_id : 0;
}

}  // namespace yunzhi::knowledge
