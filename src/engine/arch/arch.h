// Model families (private to the engine). Each family lives in its own file (llama.cc, qwen2.cc,
// qwen3.cc) and consists of two small things: the hyper-parameter quirks it adds to the common
// ones, and its transformer block written with the shared layers of layers.h (so far every family
// uses PreNormBlock, its variants selected by config flags). Adding a family is one more file
// like those plus a line in FindArch (arch_registry.cc).
#pragma once

#include <cstdint>

#include "yunzhi/engine/model.h"

namespace yunzhi::engine {
namespace internal {
struct LayerWeights;
}  // namespace internal

namespace arch {

struct ForwardContext;

struct ArchDef {
  Architecture architecture;
  // Completes `config` after the common hyper-parameters were read: sets the family's fixed
  // traits (QKV bias, Q/K norm) and the RoPE layout. `from_gguf` matters for the layout: the
  // llama converters permute Q/K rows so that GGUF files use the normal (interleaved) layout,
  // while HF checkpoints use NeoX "rotate half".
  void (*finish_config)(ModelConfig& config, bool from_gguf);
  // One transformer block over all tokens of the batch: reads and updates ctx.x (the residual).
  void (*block)(ForwardContext& ctx, const internal::LayerWeights& w, int64_t layer);
};

const ArchDef& LlamaArch();    // llama.cc (also mistral)
const ArchDef& MistralArch();  // llama.cc
const ArchDef& Qwen2Arch();    // qwen2.cc
const ArchDef& Qwen3Arch();    // qwen3.cc

// The definition for `architecture`.
const ArchDef& FindArch(Architecture architecture);

}  // namespace arch
}  // namespace yunzhi::engine
