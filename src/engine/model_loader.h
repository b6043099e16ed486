// Loading models (private to the engine): the GGUF and Hugging Face front ends read the
// hyper-parameters and expose their tensors under the internal (GGUF) names through a
// WeightSource; BindWeights then checks and binds every tensor the same way for both.
#pragma once

#include <boost/json/object.hpp>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/model.h"

#include "engine/model_state.h"

namespace yunzhi::engine::internal {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // The tensor stored under the internal name `name` ("blk.0.attn_q.weight"), nullopt when the
  // file has no such tensor. Errors: the tensor exists but its type cannot be run.
  virtual Result<std::optional<TensorView>> Find(const std::string& name) const = 0;
  // The name as stored in the file ("model.layers.0.self_attn.q_proj.weight" for HF).
  virtual std::string StoredName(const std::string& name) const = 0;
  // The file (or shard) that holds `name`, or the model's main path when it is absent.
  virtual std::string FileOf(const std::string& name) const = 0;
  // Whether the format writes shapes row-major (safetensors) rather than in GGML order.
  virtual bool row_major_shapes() const = 0;
};

// Checks the hyper-parameters in state->config (except what depends on tensors) for
// consistency. Errors: kInvalidArgument naming `file`.
Status ValidateConfig(const std::string& file, const ModelConfig& config);

// Binds and checks every tensor the architecture needs (presence, shape, type), fills
// n_vocab-dependent checks, n_params, weight_bytes, weight_type, tied_output and inv_freq.
// Precondition: state->config holds the hyper-parameters and n_vocab.
Status BindWeights(const WeightSource& source, ModelState* state);

// Repacks the matrices whose type the active ISA multiplies faster as panels (kernels.h
// WeightLayout) into state->panels, releasing the file pages they came from; the matrices then
// point there. Called by BindWeights.
void RepackForKernels(ModelState* state);

// A small text file (config.json, tokenizer.json) whole. Errors: kNotFound, kUnavailable.
Result<std::string> ReadText(const std::string& path);
// A JSON file whose top level is an object. Errors: those of ReadText; kInvalidArgument.
Result<boost::json::object> ReadJsonObject(const std::string& path);

Result<std::unique_ptr<ModelState>> LoadGguf(const std::string& path,
                                             const ModelLoadOptions& options);
Result<std::unique_ptr<ModelState>> LoadHfDirectory(const std::string& dir,
                                                    const ModelLoadOptions& options);

}  // namespace yunzhi::engine::internal
