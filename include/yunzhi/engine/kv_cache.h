// The paged key/value cache: attention state of many sequences in one pool of fixed-size blocks.
//
// The cache holds, for every layer, a pool of `n_blocks` blocks; a block stores the keys and
// values of `block_tokens` consecutive positions of one sequence (all KV heads), as F16 or F32.
// A `Sequence` is a block table (which blocks hold positions 0..block_tokens-1, the next
// block_tokens, ...) plus its length. Blocks are reference-counted so that sequences can share
// a common prefix (Fork) without copying it; a shared block is never written: positions are
// only appended after the last one, and Fork/Truncate copy a shared partially filled block first.
//
// Memory: 2 (K and V) x n_layer x n_blocks x block_tokens x n_head_kv x head_dim x (2 or 4) bytes,
// allocated once by Create. Layout: for each layer, K and V, and KV head, one plane of n_blocks
// blocks of block_tokens rows (head_dim elements each), so that attention over one KV head reads
// its rows contiguously, one block after the next (blocks are handed out lowest id first). With
// the heads of a position side by side instead, one head's rows read from DRAM took 3x as long
// (docs/benchmarks.md, AttentionDram).
//
// Thread safety: a KvCache and its Sequences are used by one thread at a time (the thread that
// runs the ModelRunner that owns the cache).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "yunzhi/base/status.h"

namespace yunzhi::engine {

struct ModelConfig;

enum class KvCacheType { kF32, kF16 };

struct KvCacheOptions {
  KvCacheType type = KvCacheType::kF16;
  // Positions per block.
  int64_t block_tokens = 16;
  // Blocks in the pool (shared by all sequences). 0 = enough for one sequence of the runner's
  // full context.
  int64_t n_blocks = 0;
};

class KvCache;

// The cache state of one sequence: its block table and how many positions are filled.
// Created empty; a moved-from Sequence is empty. Give it back with KvCache::Release before
// dropping it, or its blocks stay allocated until the cache is destroyed.
class Sequence {
 public:
  Sequence() = default;
  Sequence(Sequence&& other) noexcept { *this = std::move(other); }
  Sequence& operator=(Sequence&& other) noexcept {
    blocks_ = std::move(other.blocks_);
    n_tokens_ = other.n_tokens_;
    other.blocks_.clear();
    other.n_tokens_ = 0;
    return *this;
  }
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  // Positions whose keys and values are in the cache.
  int64_t n_tokens() const { return n_tokens_; }
  // The block ids, in position order (may hold reserved blocks beyond n_tokens).
  const std::vector<int32_t>& blocks() const { return blocks_; }

 private:
  friend class KvCache;
  std::vector<int32_t> blocks_;
  int64_t n_tokens_ = 0;
};

class KvCache {
 public:
  // A cache for a model of this shape. Errors: kInvalidArgument for block_tokens < 1 or
  // n_blocks < 1 (after the default is applied by the runner); kResourceExhausted when the
  // allocation fails.
  static Result<std::unique_ptr<KvCache>> Create(const ModelConfig& config,
                                                 const KvCacheOptions& options);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  KvCacheType type() const { return type_; }
  int64_t block_tokens() const { return block_tokens_; }
  int64_t n_blocks() const { return static_cast<int64_t>(ref_counts_.size()); }
  int64_t n_free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t size_bytes() const;
  // Blocks needed to hold `n_tokens` positions.
  int64_t BlocksFor(int64_t n_tokens) const {
    return (n_tokens + block_tokens_ - 1) / block_tokens_;
  }
  // Blocks `seq` would need to take from the pool to grow to `n_tokens` positions.
  int64_t ExtraBlocksFor(const Sequence& seq, int64_t n_tokens) const;

  // Makes `seq`'s block table large enough for `n_tokens` positions in total (n_tokens() is not
  // changed; the runner advances it as it writes). Errors: kResourceExhausted "KV cache full:
  // need 3 more blocks, 1 free", with nothing changed.
  Status Reserve(Sequence* seq, int64_t n_tokens);
  // Returns all of `seq`'s blocks to the pool (shared ones when their last user lets go) and
  // empties it.
  void Release(Sequence* seq);
  // Forgets positions >= n_tokens (n_tokens <= seq->n_tokens()) and returns blocks no longer
  // needed. If the new last block is partially filled and shared, it is copied first.
  // Errors: kResourceExhausted when that copy finds no free block (nothing changed).
  Status Truncate(Sequence* seq, int64_t n_tokens);
  // Makes `dst` (which must be empty) a copy of `src` that shares src's full blocks; a
  // partially filled last block is copied. Errors: kResourceExhausted (nothing changed).
  Status Fork(const Sequence& src, Sequence* dst);
  // Makes `seq` (which must be empty) start with `blocks`, full blocks written by other
  // sequences (a cached prompt prefix): each gains a reference and the sequence holds
  // blocks.size() * block_tokens() positions. The blocks must be in use (ref_count > 0).
  // Errors: kInvalidArgument for a non-empty sequence or a free / out-of-range block.
  Status Adopt(Sequence* seq, std::span<const int32_t> blocks);
  // Appends to `seq` (which holds whole blocks only) a private copy of `block`'s first
  // `n_tokens` positions (1..block_tokens): a cached block that matches a prompt only in part.
  // Errors: kInvalidArgument for a sequence ending in a partial block, a free block or a bad
  // count; kResourceExhausted when no block is free (nothing changed).
  Status AppendCopy(Sequence* seq, int32_t block, int64_t n_tokens);
  // Takes / drops one reference on a block in use (the prefix cache holds blocks this way);
  // the last Unref returns the block to the pool. Precondition: ref_count(block) > 0.
  void Retain(int32_t block) { ++ref_counts_[static_cast<size_t>(block)]; }
  void Unref(int32_t block) { DropBlock(block); }
  // References held on `block` (0 = free).
  int32_t ref_count(int32_t block) const { return ref_counts_[static_cast<size_t>(block)]; }

  // ---- for the runner (src/engine): raw row access.
  // The key (value) row of `head` at position `pos` of `seq` in layer `layer`: head_dim elements
  // of type(). Precondition: the position is within the reserved blocks.
  void* KeyRow(const Sequence& seq, int64_t layer, int64_t pos, int64_t head) const;
  void* ValueRow(const Sequence& seq, int64_t layer, int64_t pos, int64_t head) const;
  // The key and value rows of `head` at positions [first, first + n) of `seq` in layer `layer`,
  // into k_rows[0..n) and v_rows[0..n): what attention reads, gathered a block at a time.
  void HeadRows(const Sequence& seq, int64_t layer, int64_t head, int64_t first, int64_t n,
                const void** k_rows, const void** v_rows) const;
  // Sets the filled length (after the runner wrote the rows). Precondition: reserved.
  void SetLength(Sequence* seq, int64_t n_tokens) const { seq->n_tokens_ = n_tokens; }

 private:
  KvCache() = default;
  void* Row(bool value, const Sequence& seq, int64_t layer, int64_t pos, int64_t head) const;
  void CopyBlock(int32_t from, int32_t to);
  int32_t TakeBlock();
  void DropBlock(int32_t block);

  KvCacheType type_ = KvCacheType::kF16;
  int64_t block_tokens_ = 16;
  int64_t n_layer_ = 0;
  int64_t n_head_kv_ = 0;
  int64_t head_dim_ = 0;
  int64_t elem_bytes_ = 2;
  int64_t row_bytes_ = 0;         // one position of one KV head
  int64_t head_block_bytes_ = 0;  // one block of one KV head: block_tokens rows
  int64_t head_plane_bytes_ = 0;  // one KV head's n_blocks blocks
  int64_t block_bytes_ = 0;       // one block of one layer (every KV head), K or V
  std::vector<uint8_t*> keys_;    // per layer: n_blocks blocks
  std::vector<uint8_t*> values_;  // per layer
  std::unique_ptr<uint8_t[]> storage_;
  std::vector<int32_t> ref_counts_;  // per block
  std::vector<int32_t> free_;        // free block ids (a stack)
};

}  // namespace yunzhi::engine
