// Prefix caching: reusing the KV blocks of prompt prefixes that earlier requests computed.
//
// Requests often share their beginning: the system prompt, retrieved context, the earlier turns
// of a conversation, the n choices of one request. The keys and values of position p depend on
// tokens 0..p only, so a full block of a sequence can be reused by any later sequence whose
// tokens agree up to the end of that block. The cache names each full block by a hash chain
//   h(block i) = mix(h(block i-1), the block_tokens token ids of block i)
// and keeps, per entry, the token ids themselves (a lookup compares them: a hash collision can
// never hand out wrong KV), the block id and one reference on the block (KvCache::Retain).
//
// Lookup walks a prompt block by block and returns the longest cached run of whole blocks; the
// caller adopts them into a new sequence (KvCache::Adopt) and prefills only the rest. Insert
// registers blocks as a sequence fills them. Blocks that only the cache still references are
// evictable; Evict frees them least recently used first (deeper blocks of a chain before their
// parents, so a chain shrinks from its end and never leaves unreachable entries behind).
//
// Thread safety: used by the one thread that runs the scheduler and its KvCache.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <unordered_map>
#include <vector>

#include "yunzhi/engine/kv_cache.h"

namespace yunzhi::engine {

class PrefixCache {
 public:
  // Hash of the empty prefix (the parent of a sequence's first block).
  static constexpr uint64_t kRootHash = 0x9e3779b97f4a7c15ull;

  // `cache` must outlive this object. Its block_tokens() fixes the granularity.
  explicit PrefixCache(KvCache* cache);
  // Drops the cache's references (blocks in use by sequences stay allocated to them).
  ~PrefixCache();
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  struct Match {
    std::vector<int32_t> blocks;  // the cached blocks, in position order
    uint64_t last_hash = kRootHash;  // chain hash of the last matched block
    // A cached block after `blocks` whose first `partial_tokens` positions (0 = none) also
    // match: the caller copies that part (KvCache::AppendCopy) instead of recomputing it.
    int32_t partial_block = -1;
    int64_t partial_tokens = 0;
  };
  // The longest run of cached whole blocks that starts `tokens`, then the longest partial
  // match among the next blocks, covering at most `max_tokens` tokens in all. Touches the
  // matched entries (they become most recently used).
  Match Lookup(std::span<const int32_t> tokens, int64_t max_tokens);

  // Registers the block holding `block_tokens` (exactly block_tokens() ids) after the prefix
  // whose chain hash is `parent_hash`; returns this block's chain hash. If the same content is
  // already cached (another sequence computed it), the existing entry is kept and touched.
  uint64_t Insert(uint64_t parent_hash, std::span<const int32_t> block_tokens, int32_t block);

  // Returns up to `n_blocks` evictable blocks to the pool; returns how many were freed.
  int64_t Evict(int64_t n_blocks);
  // Blocks held only by the cache (what Evict could free right now).
  int64_t n_evictable() const;
  // Entries (blocks referenced by the cache).
  int64_t n_entries() const { return static_cast<int64_t>(entries_.size()); }
  // Drops every entry (the blocks still used by sequences stay with them).
  void Clear();

 private:
  struct Entry {
    uint64_t parent = kRootHash;
    std::vector<int32_t> tokens;
    int32_t block = -1;
    int32_t depth = 0;  // 0 for a sequence's first block
    int32_t children = 0;
    uint64_t tick = 0;
  };
  // Eviction order: least recently used first; among equals, the deepest first.
  struct LruKey {
    uint64_t tick;
    int32_t neg_depth;
    uint64_t hash;
    bool operator<(const LruKey& o) const {
      if (tick != o.tick) return tick < o.tick;
      if (neg_depth != o.neg_depth) return neg_depth < o.neg_depth;
      return hash < o.hash;
    }
  };
  static uint64_t Chain(uint64_t parent, std::span<const int32_t> tokens);
  void Touch(uint64_t hash, Entry& entry);
  void Remove(std::unordered_map<uint64_t, Entry>::iterator it);

  KvCache* cache_;
  std::unordered_map<uint64_t, Entry> entries_;
  std::unordered_multimap<uint64_t, uint64_t> children_;  // parent hash -> child hashes
  std::map<LruKey, uint64_t> lru_;  // only leaves (entries without cached children) are here
  uint64_t clock_ = 0;
};

}  // namespace yunzhi::engine
