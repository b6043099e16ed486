// Quantising a model into a GGUF file: what `yunzhi quantize IN OUT --type q4_k_m` runs.
//
// Input: a GGUF file (any supported tensor types; already-quantised weights are dequantised and
// quantised again), or a Hugging Face model directory (config.json, *.safetensors single or
// sharded, tokenizer.json, tokenizer_config.json) of the llama, mistral, qwen2 or qwen3 family.
// Output: a GGUF v3 file, written tensor by tensor (one row of floats in memory at a time, never
// the whole model) to a temporary file that is renamed over OUT only when complete: on any error
// (bad input, disk full, ...) no file is left at OUT and an existing OUT is untouched.
//
// Which type each tensor gets (the recipe, after llama.cpp's llama_tensor_get_type; L is the
// block count, "more bits" layers are N < L/8, N >= 7L/8 and (N - L/8) % 3 == 2, about half of
// them, weighted to the first and last ones; n_gqa is head_count / head_count_kv):
//  - Tensors with fewer than 2 dimensions (norms, biases, rope_freqs) are stored as F32.
//  - The output (output.weight, or token_embd.weight when the output is tied to it, i.e. there
//    is no output.weight) gets Q6_K for every target but q8_0 (Q8_0).
//  - Every other 2-D weight gets the target's type, except:
//
//    | target | bulk   | attn_v                         | ffn_down                          |
//    attn_output |
//    |--------|--------|--------------------------------|-----------------------------------|-------------|
//    | q8_0   | Q8_0   |                                |                                   | | |
//    q6_k   | Q6_K   |                                |                                   | | |
//    q5_k_m | Q5_K   | Q6_K in more-bits layers       | Q6_K in more-bits layers          | | |
//    q5_k_s | Q5_K   |                                |                                   | | |
//    q5_1   | Q5_1   |                                |                                   | | |
//    q5_0   | Q5_0   |                                |                                   | | |
//    q4_k_m | Q4_K   | Q6_K in more-bits layers       | Q6_K in more-bits layers          | | |
//    q4_k_s | Q4_K   | Q5_K for N < 4                 | Q5_K for N < L/8                  | | |
//    q4_0   | Q4_0   |                                |                                   | | |
//    iq4_xs | IQ4_XS | Q5_K if n_gqa >= 4             | Q5_K for N < L/8                  | | |
//    q3_k_l | Q3_K   | Q5_K                           | Q5_K                              | Q5_K |
//    | q3_k_m | Q3_K   | Q5_K for N < 2, else Q4_K      | Q5_K for N < L/16, else Q4_K      | Q4_K
//    | | q3_k_s | Q3_K   |                                |                                   | |
//    | q2_k   | Q2_K   | Q4_K if n_gqa >= 4, else Q3_K  | Q3_K                              | Q3_K
//    |
//
//    (llama.cpp also promotes some tensors for MoE, Falcon and 70B models, and for files made
//    with an importance matrix; this build has none of those, so those rules do not apply.)
//  - Fallbacks when a row length is not a multiple of the chosen type's block, as llama.cpp's:
//    Q2_K, Q3_K and IQ4_XS -> IQ4_NL, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0 when the row is a
//    multiple of 32 (so most of a Qwen2.5-0.5B q4_k_m file, with its 896-element rows, is Q5_0,
//    and most of a q3_k_m one IQ4_NL); otherwise F16.
// The quantisers are the scalar references of tensor_type.h (Quantize), so the output is
// bit-identical to quantising each row with them.
//
// Metadata: a GGUF input's metadata is copied entry by entry in order, except general.alignment
// (the output uses 32), and general.file_type (llama.cpp's llama_ftype: see
// QuantizeTargetFileType) and general.quantization_version (2) are set. A Hugging
// Face input gets the metadata llama.cpp's converter writes: general.*, <arch>.context_length,
// embedding_length, block_count, feed_forward_length, attention.head_count, head_count_kv,
// layer_norm_rms_epsilon, rope.freq_base, rope.dimension_count, attention.key_length/value_length
// (when config.json has head_dim), rope.scaling.* (linear/yarn), and the tokenizer:
// tokenizer.ggml.model "gpt2" with tokens (GPT-2 byte-to-unicode spelling), token types, merges,
// pre ("qwen2" for qwen2/qwen3, "llama-bpe" for llama), special token ids, add_bos/add_eos, and
// tokenizer.chat_template. Mistral checkpoints are written as architecture "llama" (as llama.cpp
// does). llama3 RoPE scaling becomes a `rope_freqs.weight` tensor of per-frequency divisors (as
// llama.cpp does).
//
// HF tensor names map to GGUF names (model.embed_tokens -> token_embd, model.layers.N.self_attn.
// q_proj -> blk.N.attn_q, mlp.down_proj -> blk.N.ffn_down, lm_head -> output, ...); llama and
// mistral Q/K weights (and biases) are permuted from Hugging Face's rotate-half RoPE layout to
// GGUF's interleaved one; qwen2/qwen3 stay as they are (NeoX RoPE in GGUF).
//
// Limitations: Hugging Face tokenizers other than byte-level BPE (SentencePiece tokenizer.model
// checkpoints such as Llama 2 / Mistral v0.1) are rejected with kUnimplemented; convert those
// with another tool first, then quantise the GGUF here.
//
// Memory: one chunk of about 8 MiB of output rows (plus one row of floats per thread) besides the
// read-only mapping of the input, whatever the model size.
//
// Thread safety: QuantizeModel is reentrant; the callback runs on the calling thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/tensor_type.h"

namespace yunzhi::engine {

// Largest to smallest file.
enum class QuantizeTarget {
  kQ8_0,
  kQ6_K,
  kQ5_K_M,
  kQ5_K_S,
  kQ5_1,
  kQ5_0,
  kQ4_K_M,
  kQ4_K_S,
  kQ4_0,
  kIQ4_XS,
  kQ3_K_L,
  kQ3_K_M,
  kQ3_K_S,
  kQ2_K
};

// "q8_0", "q6_k", "q5_k_m", ..., "q2_k": the enumerators' names in lower case (case-insensitive).
// Errors: kInvalidArgument listing the choices.
Result<QuantizeTarget> ParseQuantizeTarget(std::string_view name);
std::string_view QuantizeTargetName(QuantizeTarget target);  // "q8_0", ...
// "q8_0, q6_k, ...": every target, for help texts and messages.
std::string QuantizeTargetNames();
// The llama_ftype number stored in general.file_type: q8_0 7, q6_k 18, q5_k_m 17, q5_k_s 16,
// q5_1 9, q5_0 8, q4_k_m 15, q4_k_s 14, q4_0 2, iq4_xs 30, q3_k_l 13, q3_k_m 12, q3_k_s 11,
// q2_k 10.
uint32_t QuantizeTargetFileType(QuantizeTarget target);

// Reported once before the first tensor (n_done_tensors == 0, tensor_name empty) and after each
// tensor is written.
struct QuantizeProgress {
  int64_t n_done_tensors = 0;
  int64_t n_tensors = 0;
  std::string_view tensor_name;  // the tensor just written; valid during the callback only
  TensorType from_type = TensorType::kF32;
  TensorType to_type = TensorType::kF32;
  uint64_t in_bytes_done = 0;    // tensor bytes read so far
  uint64_t out_bytes_done = 0;   // tensor bytes written so far
  uint64_t out_bytes_total = 0;  // tensor bytes the output will hold
};

struct QuantizeOptions {
  QuantizeTarget target = QuantizeTarget::kQ4_K_M;
  // Called on the calling thread; returning false cancels (kCancelled, no output left behind).
  std::function<bool(const QuantizeProgress&)> progress;
  // Threads converting rows (the calling thread is one of them); <= 0: one per core. The output
  // is byte-identical for any thread count.
  int n_threads = 0;
};

struct QuantizeStats {
  int64_t n_tensors = 0;
  int64_t n_quantized_tensors = 0;  // tensors stored in a block type
  uint64_t in_tensor_bytes = 0;
  uint64_t out_tensor_bytes = 0;
  uint64_t out_file_bytes = 0;
};

// Quantises the model at `in_path` (GGUF file or HF directory) into the GGUF file `out_path`.
// Errors (messages name the file and, where there is one, the tensor):
//   kNotFound         input missing, or an HF directory without config.json / tokenizer.json
//   kInvalidArgument  malformed or truncated input, a tensor shape that does not fit the
//                     config, out_path equal to in_path, a 2-D tensor whose type cannot be read
//   kUnimplemented    unknown architecture or HF tensor name, a tensor type or tokenizer this
//                     build cannot convert
//   kUnavailable      I/O errors, disk full (naming the output path)
//   kCancelled        the progress callback returned false
// On error no file is created at out_path.
Result<QuantizeStats> QuantizeModel(const std::string& in_path, const std::string& out_path,
                                    const QuantizeOptions& options);

// The type llama.cpp's quantiser writes instead of `type` for a row that is not whole blocks of
// it: Q2_K, Q3_K and IQ4_XS -> IQ4_NL, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0; `type` itself for
// every other type. (The recipe falls back further, to F16, where that does not fit either.)
TensorType RowFallbackType(TensorType type);

// What the recipe needs to know of the model besides a tensor's own name and shape.
struct RecipeModel {
  int64_t n_layer = 0;     // block count
  bool has_output = true;  // whether an output.weight exists (false: tied to token_embd.weight)
  int64_t n_gqa = 1;       // attention heads per KV head (head_count / head_count_kv)
};

// The type the recipe above gives a tensor (exposed for tests and `--dry-run` style listings).
// `n_dims`/`row_length` describe the tensor (ne[0]).
TensorType QuantizedTypeFor(QuantizeTarget target, std::string_view gguf_name, int n_dims,
                            int64_t row_length, const RecipeModel& model);

}  // namespace yunzhi::engine
