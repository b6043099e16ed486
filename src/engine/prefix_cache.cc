#include "yunzhi/engine/prefix_cache.h"

#include <algorithm>

namespace yunzhi::engine {

PrefixCache::PrefixCache(KvCache* cache) : cache_(cache) {}

PrefixCache::~PrefixCache() { Clear(); }

void PrefixCache::Clear() {
  for (auto& [hash, entry] : entries_) cache_->Unref(entry.block);
  entries_.clear();
  children_.clear();
  lru_.clear();
}

uint64_t PrefixCache::Chain(uint64_t parent, std::span<const int32_t> tokens) {
  // splitmix64-style mixing of each token into the running state: cheap, and every bit of the
  // parent hash and of each token id reaches every bit of the result.
  uint64_t h = parent;
  for (int32_t t : tokens) {
    h ^= static_cast<uint32_t>(t) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
  }
  return h;
}

void PrefixCache::Touch(uint64_t hash, Entry& entry) {
  if (entry.children == 0) lru_.erase(LruKey{entry.tick, -entry.depth, hash});
  entry.tick = ++clock_;
  if (entry.children == 0) lru_.emplace(LruKey{entry.tick, -entry.depth, hash}, hash);
}

PrefixCache::Match PrefixCache::Lookup(std::span<const int32_t> tokens, int64_t max_tokens) {
  Match match;
  const int64_t bt = cache_->block_tokens();
  const int64_t limit = std::min<int64_t>(max_tokens, static_cast<int64_t>(tokens.size()));
  for (int64_t start = 0; start + bt <= limit; start += bt) {
    auto block = tokens.subspan(static_cast<size_t>(start), static_cast<size_t>(bt));
    const uint64_t hash = Chain(match.last_hash, block);
    auto it = entries_.find(hash);
    if (it == entries_.end() || it->second.parent != match.last_hash ||
        !std::equal(block.begin(), block.end(), it->second.tokens.begin())) {
      break;
    }
    Touch(hash, it->second);
    match.blocks.push_back(it->second.block);
    match.last_hash = hash;
  }
  // The next block may still match in part (a prompt that shares a prefix ending mid-block).
  const int64_t start = static_cast<int64_t>(match.blocks.size()) * bt;
  const int64_t room = std::min<int64_t>(bt, limit - start);
  if (room > 0) {
    auto [first, last] = children_.equal_range(match.last_hash);
    uint64_t best_hash = 0;
    for (auto c = first; c != last; ++c) {
      const Entry& e = entries_.at(c->second);
      int64_t k = 0;
      while (k < room && e.tokens[static_cast<size_t>(k)] == tokens[static_cast<size_t>(start + k)]) ++k;
      if (k > match.partial_tokens) {
        match.partial_tokens = k;
        match.partial_block = e.block;
        best_hash = c->second;
      }
    }
    if (match.partial_tokens > 0) Touch(best_hash, entries_.at(best_hash));
  }
  return match;
}

uint64_t PrefixCache::Insert(uint64_t parent_hash, std::span<const int32_t> block_tokens,
                             int32_t block) {
  const uint64_t hash = Chain(parent_hash, block_tokens);
  auto it = entries_.find(hash);
  if (it != entries_.end()) {
    // Same content already cached (or, astronomically rarely, a collision: then the newcomer is
    // simply not cached; lookups compare tokens, so nothing wrong is ever served).
    Touch(hash, it->second);
    return hash;
  }
  auto parent = entries_.find(parent_hash);
  if (parent_hash != kRootHash && parent == entries_.end()) {
    // The parent was evicted meanwhile: an entry under it could never be found. Not cached.
    return hash;
  }
  Entry entry;
  entry.parent = parent_hash;
  entry.tokens.assign(block_tokens.begin(), block_tokens.end());
  entry.block = block;
  if (parent != entries_.end()) {
    entry.depth = parent->second.depth + 1;
    if (parent->second.children++ == 0) {
      lru_.erase(LruKey{parent->second.tick, -parent->second.depth, parent_hash});
    }
  }
  entry.tick = ++clock_;
  cache_->Retain(block);
  children_.emplace(parent_hash, hash);
  lru_.emplace(LruKey{entry.tick, -entry.depth, hash}, hash);
  entries_.emplace(hash, std::move(entry));
  return hash;
}

void PrefixCache::Remove(std::unordered_map<uint64_t, Entry>::iterator it) {
  Entry& entry = it->second;
  lru_.erase(LruKey{entry.tick, -entry.depth, it->first});
  cache_->Unref(entry.block);
  for (auto [c, end] = children_.equal_range(entry.parent); c != end; ++c) {
    if (c->second == it->first) {
      children_.erase(c);
      break;
    }
  }
  if (auto parent = entries_.find(entry.parent); parent != entries_.end()) {
    if (--parent->second.children == 0) {
      lru_.emplace(LruKey{parent->second.tick, -parent->second.depth, parent->first},
                   parent->first);
    }
  }
  entries_.erase(it);
}

int64_t PrefixCache::Evict(int64_t n_blocks) {
  int64_t freed = 0;
  // Leaves only: removing one may turn its parent into a leaf, which then competes by its own
  // (older) tick, so the scan restarts from the oldest after each removal.
  while (freed < n_blocks) {
    bool removed = false;
    for (auto lru = lru_.begin(); lru != lru_.end(); ++lru) {
      auto it = entries_.find(lru->second);
      if (cache_->ref_count(it->second.block) != 1) continue;  // a sequence still uses it
      Remove(it);
      ++freed;
      removed = true;
      break;
    }
    if (!removed) break;
  }
  return freed;
}

int64_t PrefixCache::n_evictable() const {
  int64_t n = 0;
  for (const auto& [hash, entry] : entries_) n += cache_->ref_count(entry.block) == 1 ? 1 : 0;
  return n;
}

}  // namespace yunzhi::engine
