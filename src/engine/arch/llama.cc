// Llama 2 / 3 / 3.x and Mistral: pre-norm blocks of grouped-query attention and a SwiGLU
// feed-forward, RMSNorm, RoPE, no biases. Llama 3.1's frequency-dependent RoPE scaling is part of
// the inverse frequencies (model.cc); Mistral's sliding window is not applied (its published
// models use a window no shorter than their context).
#include "engine/arch/arch.h"
#include "engine/arch/layers.h"
#include "engine/model_state.h"

namespace yunzhi::engine::arch {
namespace {

void FinishConfig(ModelConfig& config, bool from_gguf) {
  // GGUF converters permute the Q and K rows of llama-layout models into the interleaved order;
  // HF checkpoints keep the rotate-half order.
  config.rope.layout = from_gguf ? RopeLayout::kNormal : RopeLayout::kNeox;
  config.qk_norm = false;
}

void Block(ForwardContext& ctx, const internal::LayerWeights& w, int64_t layer) {
  const ModelConfig& c = *ctx.config;
  NormRows(ctx, ctx.x, w.attn_norm, c.n_embd, ctx.xn);
  Linear(ctx, w.wq, ctx.xn, ctx.q);
  Linear(ctx, w.wk, ctx.xn, ctx.k);
  Linear(ctx, w.wv, ctx.xn, ctx.v);
  if (c.qkv_bias) {  // Llama-architecture checkpoints with attention_bias (e.g. some fine-tunes)
    AddBias(ctx, ctx.q, w.bq);
    AddBias(ctx, ctx.k, w.bk);
    AddBias(ctx, ctx.v, w.bv);
  }
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

const ArchDef& LlamaArch() {
  static const ArchDef def{Architecture::kLlama, &FinishConfig, &Block};
  return def;
}

const ArchDef& MistralArch() {
  static const ArchDef def{Architecture::kMistral, &FinishConfig, &Block};
  return def;
}

}  // namespace yunzhi::engine::arch
