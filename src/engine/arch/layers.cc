#include "engine/arch/layers.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "engine/model_state.h"

namespace yunzhi::engine::arch {
namespace {

// Runs fn(i, ith) for i in [0, n) over the pool's threads (ith: the calling thread's index, for
// per-thread scratch). Items are handed out one at a time from a shared counter (RunShared): a
// decode step's attention is only tens of microseconds of work, so a fixed split would make the
// caller wait for a worker that the other processes on a shared core have descheduled, where
// the caller can simply do the worker's items itself.
template <typename Fn>
void ParallelFor(ComputePool* pool, int64_t n, const Fn& fn) {
  if (pool == nullptr || pool->n_threads() < 2 || n < 2) {
    for (int64_t i = 0; i < n; ++i) fn(i, 0);
    return;
  }
  alignas(64) std::atomic<int64_t> next{0};
  pool->RunShared([&](int ith, int) {
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i, ith);
  });
}

}  // namespace

void NormRows(ForwardContext& ctx, const float* x, const std::vector<float>& weight, int64_t n,
              float* y) {
  const float eps = ctx.config->norm_eps;
  auto row = [&](int64_t t, int) { kernels::RmsNorm(x + t * n, weight.data(), eps, n, y + t * n); };
  // Prompts over the pool; a decoding step's few rows are not worth a fork-join.
  if (ctx.n_tokens >= 4) {
    ParallelFor(ctx.pool, ctx.n_tokens, row);
  } else {
    for (int64_t t = 0; t < ctx.n_tokens; ++t) row(t, 0);
  }
}

void Linear(ForwardContext& ctx, const internal::Matrix& w, const float* x, float* y) {
  kernels::MatMul(ctx.pool, w.type, w.data, w.ne[1], w.ne[0], x, ctx.n_tokens, y, w.layout);
}

void AddBias(ForwardContext& ctx, float* y, const std::vector<float>& bias) {
  const int64_t n = static_cast<int64_t>(bias.size());
  for (int64_t t = 0; t < ctx.n_tokens; ++t) kernels::AddInPlace(y + t * n, bias.data(), n);
}

void NormHeads(ForwardContext& ctx, float* x, int64_t n_heads, const std::vector<float>& weight) {
  const int64_t hd = ctx.config->head_dim;
  const float eps = ctx.config->norm_eps;
  for (int64_t i = 0; i < ctx.n_tokens * n_heads; ++i) {
    kernels::RmsNorm(x + i * hd, weight.data(), eps, hd, x + i * hd);
  }
}

kernels::RopeStyle StyleOf(const ModelConfig& c) {
  return c.rope.layout == RopeLayout::kNeox ? kernels::RopeStyle::kNeox
                                            : kernels::RopeStyle::kNormal;
}

void EnsureRopeAngles(ForwardContext& ctx) {
  if (ctx.rope_ready) return;
  const ModelConfig& c = *ctx.config;
  for (int64_t t = 0; t < ctx.n_tokens; ++t) {
    kernels::RopeAngles(c.head_dim, ctx.token_pos[t], ctx.model->inv_freq.data(),
                        ctx.rope + t * c.head_dim);
  }
  ctx.rope_ready = true;
}

void StoreKvHead(ForwardContext& ctx, int64_t layer, int64_t t, int64_t h) {
  const ModelConfig& c = *ctx.config;
  const int64_t hd = c.head_dim;
  const Sequence& seq = *ctx.slices[ctx.token_slice[t]].sequence;
  const int64_t pos = ctx.token_pos[t];
  const float* k = ctx.k + (t * c.n_head_kv + h) * hd;
  const float* v = ctx.v + (t * c.n_head_kv + h) * hd;
  void* k_dst = ctx.cache->KeyRow(seq, layer, pos, h);
  void* v_dst = ctx.cache->ValueRow(seq, layer, pos, h);
  if (ctx.cache->type() == KvCacheType::kF16) {
    kernels::FloatToHalf(k, static_cast<uint16_t*>(k_dst), hd);
    kernels::FloatToHalf(v, static_cast<uint16_t*>(v_dst), hd);
  } else {
    std::memcpy(k_dst, k, static_cast<size_t>(hd) * sizeof(float));
    std::memcpy(v_dst, v, static_cast<size_t>(hd) * sizeof(float));
  }
}

void AttendKvHead(ForwardContext& ctx, int64_t layer, int64_t t, int64_t h_kv, int ith) {
  const ModelConfig& c = *ctx.config;
  const int64_t hd = c.head_dim;
  const int64_t group = c.n_head / c.n_head_kv;
  const Sequence& seq = *ctx.slices[ctx.token_slice[t]].sequence;
  // Causal: positions 0..pos, or the last sliding_window of them.
  const int64_t first =
      c.sliding_window > 0 ? std::max<int64_t>(0, ctx.token_pos[t] + 1 - c.sliding_window) : 0;
  const int64_t n_kv = ctx.token_pos[t] + 1 - first;
  std::vector<const void*>& rows = (*ctx.attn_rows)[static_cast<size_t>(ith)];
  std::vector<float>& scores = (*ctx.attn_scores)[static_cast<size_t>(ith)];
  const void** k_rows = rows.data();
  const void** v_rows = rows.data() + rows.size() / 2;
  ctx.cache->HeadRows(seq, layer, h_kv, first, n_kv, k_rows, v_rows);
  const kernels::KvType kv_type =
      ctx.cache->type() == KvCacheType::kF16 ? kernels::KvType::kF16 : kernels::KvType::kF32;
  const int64_t h = h_kv * group;
  kernels::AttendGroup(ctx.q + (t * c.n_head + h) * hd, group, k_rows, v_rows, kv_type, n_kv, hd,
                       1.0f / std::sqrt(static_cast<float>(hd)), scores.data(),
                       ctx.attn + (t * c.n_head + h) * hd);
}

void RopeRows(ForwardContext& ctx, float* x, int64_t n_heads) {
  const ModelConfig& c = *ctx.config;
  EnsureRopeAngles(ctx);
  for (int64_t t = 0; t < ctx.n_tokens; ++t) {
    kernels::RopeRotate(x + t * n_heads * c.head_dim, n_heads, c.head_dim,
                        ctx.rope + t * c.head_dim, StyleOf(c));
  }
}

void StoreKv(ForwardContext& ctx, int64_t layer) {
  for (int64_t t = 0; t < ctx.n_tokens; ++t) {
    for (int64_t h = 0; h < ctx.config->n_head_kv; ++h) StoreKvHead(ctx, layer, t, h);
  }
}

int64_t AttentionTokensPerCall(int64_t group, int64_t max_len) {
  const int64_t per_token = std::max<int64_t>(group * max_len, 1);
  return std::clamp<int64_t>(kAttentionScratchFloats / per_token, 1, kAttentionTokensPerCall);
}

void Attention(ForwardContext& ctx, int64_t layer) {
  const ModelConfig& c = *ctx.config;
  const int64_t n_head_kv = c.n_head_kv;
  if (ctx.n_tokens == 1 || c.sliding_window > 0) {
    ParallelFor(ctx.pool, ctx.n_tokens * n_head_kv, [&](int64_t item, int ith) {
      AttendKvHead(ctx, layer, item / n_head_kv, item % n_head_kv, ith);
    });
    return;
  }
  // Runs of consecutive tokens of one sequence, each attended in one call per KV head
  // (kernels::AttendGroupTokens reads and converts each K/V tile once for the whole run), as
  // many tokens as the per-thread scores buffer holds for the run's last position.
  const int64_t group = c.n_head / n_head_kv;
  const auto capacity = static_cast<int64_t>((*ctx.attn_scores)[0].size());
  std::vector<std::pair<int64_t, int64_t>> runs;  // [t0, t1)
  for (int64_t t = 0; t < ctx.n_tokens;) {
    int64_t t1 = t + 1;
    while (t1 < ctx.n_tokens && t1 - t < kAttentionTokensPerCall &&
           ctx.token_slice[t1] == ctx.token_slice[t] &&
           ctx.token_pos[t1] == ctx.token_pos[t1 - 1] + 1 &&
           (t1 + 1 - t) * group * (ctx.token_pos[t1] + 1) <= capacity) {
      ++t1;
    }
    runs.emplace_back(t, t1);
    t = t1;
  }
  const int64_t hd = c.head_dim;
  const kernels::KvType kv_type =
      ctx.cache->type() == KvCacheType::kF16 ? kernels::KvType::kF16 : kernels::KvType::kF32;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const auto n_runs = static_cast<int64_t>(runs.size());
  ParallelFor(ctx.pool, n_runs * n_head_kv, [&](int64_t item, int ith) {
    const auto [t0, t1] = runs[static_cast<size_t>(item / n_head_kv)];
    const int64_t h_kv = item % n_head_kv;
    if (t1 - t0 == 1) {
      AttendKvHead(ctx, layer, t0, h_kv, ith);
      return;
    }
    const Sequence& seq = *ctx.slices[ctx.token_slice[t0]].sequence;
    const int64_t n_kv = ctx.token_pos[t1 - 1] + 1;
    std::vector<const void*>& rows = (*ctx.attn_rows)[static_cast<size_t>(ith)];
    const void** k_rows = rows.data();
    const void** v_rows = rows.data() + rows.size() / 2;
    ctx.cache->HeadRows(seq, layer, h_kv, 0, n_kv, k_rows, v_rows);
    // The run's query vectors side by side, and their outputs (a few KiB per token).
    thread_local std::vector<float> q, out;
    const int64_t width = group * hd;
    q.resize(static_cast<size_t>((t1 - t0) * width));
    out.resize(q.size());
    for (int64_t t = t0; t < t1; ++t) {
      std::memcpy(q.data() + (t - t0) * width, ctx.q + (t * c.n_head + h_kv * group) * hd,
                  static_cast<size_t>(width) * sizeof(float));
    }
    kernels::AttendGroupTokens(q.data(), t1 - t0, group, k_rows, v_rows, kv_type,
                               ctx.token_pos[t0] + 1, hd, scale,
                               (*ctx.attn_scores)[static_cast<size_t>(ith)].data(), out.data());
    for (int64_t t = t0; t < t1; ++t) {
      std::memcpy(ctx.attn + (t * c.n_head + h_kv * group) * hd, out.data() + (t - t0) * width,
                  static_cast<size_t>(width) * sizeof(float));
    }
  });
}

void FeedForwardSwiGlu(ForwardContext& ctx, const internal::LayerWeights& w) {
  const int64_t n_ff = ctx.config->n_ff;
  // Gate and up read the same input: one parallel loop for both.
  const kernels::MatMulTarget targets[] = {
      {w.w_gate.type, w.w_gate.data, w.w_gate.ne[1], ctx.ff_gate, w.w_gate.layout},
      {w.w_up.type, w.w_up.data, w.w_up.ne[1], ctx.ff_up, w.w_up.layout}};
  kernels::MatMulMany(ctx.pool, targets, w.w_gate.ne[0], ctx.xn, ctx.n_tokens);
  // Token by token over the pool when a prompt is processed (512 tokens x 4864 values is
  // milliseconds of exp); a decoding step's few rows are not worth a fork-join.
  if (ctx.n_tokens >= 4) {
    ParallelFor(ctx.pool, ctx.n_tokens, [&](int64_t t, int) {
      kernels::SiluMul(ctx.ff_gate + t * n_ff, ctx.ff_up + t * n_ff, ctx.ff_gate + t * n_ff, n_ff);
    });
  } else {
    kernels::SiluMul(ctx.ff_gate, ctx.ff_up, ctx.ff_gate, ctx.n_tokens * n_ff);
  }
  Linear(ctx, w.w_down, ctx.ff_gate, ctx.out);
}

void AddResidual(ForwardContext& ctx, const float* y) {
  kernels::AddInPlace(ctx.x, y, ctx.n_tokens * ctx.config->n_embd);
}

namespace {

// q/k/v = the projections of ctx.xn, plus the biases (config.qkv_bias).
void ProjectQkv(ForwardContext& ctx, const internal::LayerWeights& w) {
  const ModelConfig& c = *ctx.config;
  // Q, K and V read the same input: one parallel loop for the three.
  const kernels::MatMulTarget targets[] = {{w.wq.type, w.wq.data, w.wq.ne[1], ctx.q, w.wq.layout},
                                           {w.wk.type, w.wk.data, w.wk.ne[1], ctx.k, w.wk.layout},
                                           {w.wv.type, w.wv.data, w.wv.ne[1], ctx.v, w.wv.layout}};
  kernels::MatMulMany(ctx.pool, targets, w.wq.ne[0], ctx.xn, ctx.n_tokens);
  if (c.qkv_bias) {
    AddBias(ctx, ctx.q, w.bq);
    AddBias(ctx, ctx.k, w.bk);
    AddBias(ctx, ctx.v, w.bv);
  }
}

}  // namespace

void SelfAttention(ForwardContext& ctx, const internal::LayerWeights& w, int64_t layer) {
  const ModelConfig& c = *ctx.config;
  NormRows(ctx, ctx.x, w.attn_norm, c.n_embd, ctx.xn);
  ProjectQkv(ctx, w);
  if (c.qk_norm) {
    NormHeads(ctx, ctx.q, c.n_head, w.q_norm);
    NormHeads(ctx, ctx.k, c.n_head_kv, w.k_norm);
  }
  RopeRows(ctx, ctx.q, c.n_head);
  RopeRows(ctx, ctx.k, c.n_head_kv);
  StoreKv(ctx, layer);
  Attention(ctx, layer);
}

void OutputAndFeedForward(ForwardContext& ctx, const internal::LayerWeights& w) {
  const ModelConfig& c = *ctx.config;
  Linear(ctx, w.wo, ctx.attn, ctx.out);
  AddResidual(ctx, ctx.out);
  NormRows(ctx, ctx.x, w.ffn_norm, c.n_embd, ctx.xn);
  FeedForwardSwiGlu(ctx, w);
  AddResidual(ctx, ctx.out);
}

void PreNormBlock(ForwardContext& ctx, const internal::LayerWeights& w, int64_t layer) {
  SelfAttention(ctx, w, layer);
  OutputAndFeedForward(ctx, w);
}

}  // namespace yunzhi::engine::arch
