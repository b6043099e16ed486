// Llama 2 / 3 / 3.x and Mistral: pre-norm blocks of grouped-query attention and a SwiGLU
// feed-forward, RMSNorm, RoPE, no biases. Llama 3.1's frequency-dependent RoPE scaling is part of
// the inverse frequencies (model.cc); Mistral v0.1's sliding window (config.sliding_window) is
// applied by the shared attention in layers.cc.
#include "engine/arch/arch.h"
#include "engine/arch/layers.h"

namespace yunzhi::engine::arch {
namespace {

void FinishConfig(ModelConfig& config, bool from_gguf) {
  // GGUF converters permute the Q and K rows of llama-layout models into the interleaved order;
  // HF checkpoints keep the rotate-half order.
  config.rope.layout = from_gguf ? RopeLayout::kNormal : RopeLayout::kNeox;
  config.qk_norm = false;
  // qkv_bias stays as read: Q/K/V biases only for checkpoints with attention_bias (fine-tunes).
}

}  // namespace

const ArchDef& LlamaArch() {
  static const ArchDef def{Architecture::kLlama, &FinishConfig, &PreNormBlock};
  return def;
}

const ArchDef& MistralArch() {
  static const ArchDef def{Architecture::kMistral, &FinishConfig, &PreNormBlock};
  return def;
}

}  // namespace yunzhi::engine::arch
