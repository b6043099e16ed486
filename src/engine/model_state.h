// The loaded form of a Model (private to the engine): hyper-parameters, the tokenizer, and views
// of every weight inside the mapped files, bound to the internal (GGUF) tensor names.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "yunzhi/engine/gguf.h"
#include "yunzhi/engine/model.h"
#include "yunzhi/engine/safetensors.h"
#include "yunzhi/engine/tensor_type.h"
#include "yunzhi/engine/tokenizer.h"

#include "engine/kernels/kernels.h"

namespace yunzhi::engine {

namespace arch {
struct ArchDef;
}  // namespace arch

namespace internal {

// A weight matrix as the kernels take it: a view into the mapped file (layout kRows), or, for the
// types the CPU multiplies faster in the panel layout (kernels::PanelsPreferred), a view of the
// same tensor repacked at load into ModelState::panels (layout kPanels, `data` pointing there).
struct Matrix : TensorView {
  kernels::WeightLayout layout = kernels::WeightLayout::kRows;
  Matrix& operator=(const TensorView& view) {
    TensorView::operator=(view);
    layout = kernels::WeightLayout::kRows;
    return *this;
  }
};

// One transformer block. Matrices are views into the mapping or the panel arena (never copied
// twice); the small 1-D tensors (norm weights, biases) are converted to float once at load because
// the kernels take them as float and files store them as F16/BF16 as often as F32. Empty vectors
// mean "absent".
struct LayerWeights {
  std::vector<float> attn_norm;
  Matrix wq, wk, wv, wo;
  std::vector<float> bq, bk, bv;      // qkv_bias
  std::vector<float> q_norm, k_norm;  // qk_norm: head_dim each
  std::vector<float> ffn_norm;
  Matrix w_gate, w_up, w_down;
};

struct ModelState {
  std::string path;
  ModelConfig config;
  std::optional<Tokenizer> tokenizer;
  std::string chat_template;
  GenerationDefaults generation;
  bool vocab_only = false;

  // The files the views point into; kept open for the model's lifetime.
  std::optional<GgufFile> gguf;
  std::optional<SafetensorsModel> safetensors;

  const arch::ArchDef* arch = nullptr;
  Matrix tok_embd;
  Matrix output;                       // == tok_embd when the output is tied
  // The repacked matrices (null when none is); the file pages they came from are released as
  // packing goes, so the weights are resident once.
  std::unique_ptr<kernels::LargePageBuffer> panels;
  std::vector<float> output_norm;
  std::vector<LayerWeights> layers;
  // RoPE inverse frequencies (head_dim / 2), with any scaling applied.
  std::vector<float> inv_freq;
};

// RoPE inverse frequencies for `config` (theta, scaling, freq_factors).
std::vector<float> ComputeInvFreq(const ModelConfig& config);

}  // namespace internal
}  // namespace yunzhi::engine
