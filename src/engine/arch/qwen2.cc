// Qwen2 / Qwen2.5: the Llama block with biases on the Q, K and V projections, and RoPE in the
// NeoX (rotate-half) layout in GGUF files as well as in HF checkpoints.
#include "engine/arch/arch.h"
#include "engine/arch/layers.h"
#include "engine/model_state.h"

namespace yunzhi::engine::arch {
namespace {

void FinishConfig(ModelConfig& config, bool /*from_gguf*/) {
  config.rope.layout = RopeLayout::kNeox;
  config.qkv_bias = true;
  config.qk_norm = false;
}

void Block(ForwardContext& ctx, const internal::LayerWeights& w, int64_t layer) {
  const ModelConfig& c = *ctx.config;
  NormRows(ctx, ctx.x, w.attn_norm, c.n_embd, ctx.xn);
  Linear(ctx, w.wq, ctx.xn, ctx.q);
  Linear(ctx, w.wk, ctx.xn, ctx.k);
  Linear(ctx, w.wv, ctx.xn, ctx.v);
  AddBias(ctx, ctx.q, w.bq);
  AddBias(ctx, ctx.k, w.bk);
  AddBias(ctx, ctx.v, w.bv);
  RopeRows(ctx, ctx.q, c.n_head);
  RopeRows(ctx, ctx.k, c.n_head_kv);
  StoreKv(ctx, layer);
  Attention(ctx, layer);
  Linear(ctx, w.wo, ctx.attn, ctx.out);
  AddResidual(ctx, ctx.out);

  NormRows(ctx, ctx.x, w.ffn_norm, c.n_embd, ctx.xn);
  FeedForwardSwiGlu(ctx, w);
  AddResidual(ctx, ctx.out);
}

}  // namespace

const ArchDef& Qwen2Arch() {
  static const ArchDef def{Architecture::kQwen2, &FinishConfig, &Block};
  return def;
}

}  // namespace yunzhi::engine::arch
