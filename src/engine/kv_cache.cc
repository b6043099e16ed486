#include "yunzhi/engine/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <new>

#include <fmt/format.h>

#include "yunzhi/engine/model.h"

namespace yunzhi::engine {

Result<std::unique_ptr<KvCache>> KvCache::Create(const ModelConfig& config,
                                                 const KvCacheOptions& options) {
  if (options.block_tokens < 1 || options.n_blocks < 1) {
    return InvalidArgumentError(
        fmt::format("KV cache: block_tokens ({}) and n_blocks ({}) must be at least 1",
                    options.block_tokens, options.n_blocks));
  }
  if (options.n_blocks > INT32_MAX) {
    return InvalidArgumentError(fmt::format("KV cache: too many blocks ({})", options.n_blocks));
  }
  std::unique_ptr<KvCache> cache(new KvCache());
  cache->type_ = options.type;
  cache->block_tokens_ = options.block_tokens;
  cache->n_layer_ = config.n_layer;
  cache->n_head_kv_ = config.n_head_kv;
  cache->head_dim_ = config.head_dim;
  cache->elem_bytes_ = options.type == KvCacheType::kF16 ? 2 : 4;
  cache->row_bytes_ = config.head_dim * cache->elem_bytes_;
  cache->head_block_bytes_ = options.block_tokens * cache->row_bytes_;
  cache->head_plane_bytes_ = cache->head_block_bytes_ * options.n_blocks;
  cache->block_bytes_ = cache->head_block_bytes_ * config.n_head_kv;
  const int64_t layer_bytes = cache->block_bytes_ * options.n_blocks;
  const int64_t total = 2 * layer_bytes * config.n_layer;
  cache->storage_.reset(new (std::nothrow) uint8_t[static_cast<size_t>(total)]);
  if (!cache->storage_) {
    return Error(Code::kResourceExhausted,
                 fmt::format("KV cache: cannot allocate {} bytes", total));
  }
  for (int64_t l = 0; l < config.n_layer; ++l) {
    cache->keys_.push_back(cache->storage_.get() + (2 * l) * layer_bytes);
    cache->values_.push_back(cache->storage_.get() + (2 * l + 1) * layer_bytes);
  }
  cache->ref_counts_.assign(static_cast<size_t>(options.n_blocks), 0);
  cache->free_.reserve(static_cast<size_t>(options.n_blocks));
  // A stack: hand out low block ids first.
  for (int64_t b = options.n_blocks - 1; b >= 0; --b) {
    cache->free_.push_back(static_cast<int32_t>(b));
  }
  return cache;
}

KvCache::~KvCache() = default;

int64_t KvCache::size_bytes() const { return 2 * block_bytes_ * n_blocks() * n_layer_; }

int64_t KvCache::ExtraBlocksFor(const Sequence& seq, int64_t n_tokens) const {
  const int64_t have = static_cast<int64_t>(seq.blocks_.size());
  const int64_t need = BlocksFor(n_tokens);
  return need > have ? need - have : 0;
}

int32_t KvCache::TakeBlock() {
  const int32_t b = free_.back();
  free_.pop_back();
  ref_counts_[static_cast<size_t>(b)] = 1;
  return b;
}

void KvCache::DropBlock(int32_t block) {
  int32_t& rc = ref_counts_[static_cast<size_t>(block)];
  if (--rc == 0) free_.push_back(block);
}

void KvCache::CopyBlock(int32_t from, int32_t to) {
  for (int64_t l = 0; l < n_layer_; ++l) {
    for (uint8_t* layer : {keys_[static_cast<size_t>(l)], values_[static_cast<size_t>(l)]}) {
      for (int64_t h = 0; h < n_head_kv_; ++h) {
        uint8_t* plane = layer + h * head_plane_bytes_;
        std::memcpy(plane + to * head_block_bytes_, plane + from * head_block_bytes_,
                    static_cast<size_t>(head_block_bytes_));
      }
    }
  }
}

Status KvCache::Reserve(Sequence* seq, int64_t n_tokens) {
  const int64_t extra = ExtraBlocksFor(*seq, n_tokens);
  if (extra > n_free_blocks()) {
    return Error(Code::kResourceExhausted,
                 fmt::format("KV cache full: need {} more blocks of {} tokens, {} free of {}",
                             extra, block_tokens_, n_free_blocks(), n_blocks()));
  }
  for (int64_t i = 0; i < extra; ++i) seq->blocks_.push_back(TakeBlock());
  return OkStatus();
}

void KvCache::Release(Sequence* seq) {
  for (int32_t b : seq->blocks_) DropBlock(b);
  seq->blocks_.clear();
  seq->n_tokens_ = 0;
}

Status KvCache::Truncate(Sequence* seq, int64_t n_tokens) {
  if (n_tokens < 0 || n_tokens > seq->n_tokens_) {
    return InvalidArgumentError(fmt::format(
        "KV cache: cannot truncate a sequence of {} tokens to {}", seq->n_tokens_, n_tokens));
  }
  const size_t keep = static_cast<size_t>(BlocksFor(n_tokens));
  const bool partial = n_tokens % block_tokens_ != 0;
  const bool copy_last = partial && ref_counts_[static_cast<size_t>(seq->blocks_[keep - 1])] > 1;
  if (copy_last && free_.empty()) {
    return Error(Code::kResourceExhausted,
                 "KV cache full: no free block to copy a shared block when truncating");
  }
  for (size_t i = keep; i < seq->blocks_.size(); ++i) DropBlock(seq->blocks_[i]);
  seq->blocks_.resize(keep);
  if (copy_last) {
    const int32_t fresh = TakeBlock();
    CopyBlock(seq->blocks_[keep - 1], fresh);
    DropBlock(seq->blocks_[keep - 1]);
    seq->blocks_[keep - 1] = fresh;
  }
  seq->n_tokens_ = n_tokens;
  return OkStatus();
}

Status KvCache::Fork(const Sequence& src, Sequence* dst) {
  if (!dst->blocks_.empty() || dst->n_tokens_ != 0) {
    return InvalidArgumentError("KV cache: Fork needs an empty destination sequence");
  }
  const size_t n_full = static_cast<size_t>(src.n_tokens_ / block_tokens_);
  const bool partial = src.n_tokens_ % block_tokens_ != 0;
  if (partial && free_.empty()) {
    return Error(Code::kResourceExhausted, "KV cache full: no free block to fork a sequence");
  }
  for (size_t i = 0; i < n_full; ++i) {
    ++ref_counts_[static_cast<size_t>(src.blocks_[i])];
    dst->blocks_.push_back(src.blocks_[i]);
  }
  if (partial) {
    const int32_t fresh = TakeBlock();
    CopyBlock(src.blocks_[n_full], fresh);
    dst->blocks_.push_back(fresh);
  }
  dst->n_tokens_ = src.n_tokens_;
  return OkStatus();
}

Status KvCache::Adopt(Sequence* seq, std::span<const int32_t> blocks) {
  if (!seq->blocks_.empty() || seq->n_tokens_ != 0) {
    return InvalidArgumentError("KV cache: Adopt needs an empty sequence");
  }
  for (int32_t b : blocks) {
    if (b < 0 || b >= n_blocks() || ref_counts_[static_cast<size_t>(b)] <= 0) {
      return InvalidArgumentError(fmt::format("KV cache: cannot adopt block {}: not in use", b));
    }
  }
  for (int32_t b : blocks) {
    ++ref_counts_[static_cast<size_t>(b)];
    seq->blocks_.push_back(b);
  }
  seq->n_tokens_ = static_cast<int64_t>(blocks.size()) * block_tokens_;
  return OkStatus();
}

Status KvCache::AppendCopy(Sequence* seq, int32_t block, int64_t n_tokens) {
  if (seq->n_tokens_ % block_tokens_ != 0 ||
      static_cast<int64_t>(seq->blocks_.size()) != seq->n_tokens_ / block_tokens_) {
    return InvalidArgumentError("KV cache: AppendCopy needs a sequence of whole blocks");
  }
  if (block < 0 || block >= n_blocks() || ref_counts_[static_cast<size_t>(block)] <= 0 ||
      n_tokens < 1 || n_tokens > block_tokens_) {
    return InvalidArgumentError(
        fmt::format("KV cache: cannot copy {} positions of block {}", n_tokens, block));
  }
  if (free_.empty()) return Error(Code::kResourceExhausted, "KV cache full: no block to copy into");
  const int32_t fresh = TakeBlock();
  CopyBlock(block, fresh);
  seq->blocks_.push_back(fresh);
  seq->n_tokens_ += n_tokens;
  return OkStatus();
}

void* KvCache::Row(bool value, const Sequence& seq, int64_t layer, int64_t pos,
                   int64_t head) const {
  const int32_t block = seq.blocks_[static_cast<size_t>(pos / block_tokens_)];
  uint8_t* base = value ? values_[static_cast<size_t>(layer)] : keys_[static_cast<size_t>(layer)];
  return base + head * head_plane_bytes_ + block * head_block_bytes_ +
         (pos % block_tokens_) * row_bytes_;
}

void* KvCache::KeyRow(const Sequence& seq, int64_t layer, int64_t pos, int64_t head) const {
  return Row(false, seq, layer, pos, head);
}

void* KvCache::ValueRow(const Sequence& seq, int64_t layer, int64_t pos, int64_t head) const {
  return Row(true, seq, layer, pos, head);
}

void KvCache::HeadRows(const Sequence& seq, int64_t layer, int64_t head, int64_t first, int64_t n,
                       const void** k_rows, const void** v_rows) const {
  const uint8_t* keys = keys_[static_cast<size_t>(layer)] + head * head_plane_bytes_;
  const uint8_t* values = values_[static_cast<size_t>(layer)] + head * head_plane_bytes_;
  for (int64_t j = 0; j < n;) {
    const int64_t pos = first + j;
    const int64_t in_block = pos % block_tokens_;
    const int64_t run = std::min(n - j, block_tokens_ - in_block);
    const int64_t block = seq.blocks_[static_cast<size_t>(pos / block_tokens_)];
    const int64_t base = block * head_block_bytes_ + in_block * row_bytes_;
    for (int64_t r = 0; r < run; ++r) {
      k_rows[j + r] = keys + base + r * row_bytes_;
      v_rows[j + r] = values + base + r * row_bytes_;
    }
    j += run;
  }
}

}  // namespace yunzhi::engine
